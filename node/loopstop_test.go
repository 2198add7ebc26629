package node

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// settleCounter is a Cost that counts Settle calls by caller, as the
// simulator turns each into a driver event that goes into the digest.
type settleCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *settleCounter) Disk(int) {}
func (c *settleCounter) CPU(int)  {}
func (c *settleCounter) Settle(who string) {
	c.mu.Lock()
	c.n[who]++
	c.mu.Unlock()
}

// TestStoppedLoopsIgnoreAPendingWake: a node stopped (crashed, in the
// simulator) while its commit and push loops had a wake pending ends them
// the same way every time: the commit loop drains once, the push loop not
// at all. A select over both the context and the wake picked at random,
// so the loop settled once more one time in two and a simulated run with
// a crash did not replay (TestDiskFaultsReplay). 32 rounds: a random pick
// would show.
func TestStoppedLoopsIgnoreAPendingWake(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 32 {
		cost := &settleCounter{n: map[string]int{}}
		r := &replicator{n: &Node{env: &Env{Cost: cost}}, commitWake: make(chan struct{}, 1)}
		r.commitIdle = sync.NewCond(&r.commitMu)
		r.commitWake <- struct{}{}
		r.commitLoop(ctx)
		q := &pushQueue{wake: make(chan struct{}, 1)}
		q.wake <- struct{}{}
		r.pushLoop(ctx, "n2", q)
		require.Equal(t, map[string]int{"commit": 1}, cost.n)
	}
}
