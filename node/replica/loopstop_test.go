package replica

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStoppedLoopsIgnoreAPendingWake: a node stopped (crashed, in the
// simulator) while its commit and push loops had a wake pending ends them
// the same way every time: the commit loop drains once, the push loop not
// at all. A select over both the context and the wake picked at random,
// so the loop settled once more one time in two, and the simulator turns
// each settle into a driver event: a simulated run with a crash did not
// replay (TestDiskFaultsReplay). 32 rounds: a random pick would show.
func TestStoppedLoopsIgnoreAPendingWake(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 32 {
		var mu sync.Mutex
		settles := map[string]int{}
		r := &Replicator{
			d: Deps{Settle: func(who string) {
				mu.Lock()
				settles[who]++
				mu.Unlock()
			}},
			commitWake: make(chan struct{}, 1),
		}
		r.commitIdle = sync.NewCond(&r.commitMu)
		r.commitWake <- struct{}{}
		r.commitLoop(ctx)
		q := &pushQueue{wake: make(chan struct{}, 1)}
		q.wake <- struct{}{}
		r.pushLoop(ctx, "n2", q)
		require.Equal(t, map[string]int{"commit": 1}, settles)
	}
}
