package node

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/fault"
	"mailarray/node/member"
	"mailarray/node/peer"
)

// stallHook is a fault hook that blocks the first point named point, once
// armed, until released: a disk that stalls longer than the pending
// timeout. Every other point passes.
type stallHook struct {
	point   fault.Point // "": none (the hook stalls the disk as a cost model)
	mu      sync.Mutex
	armed   bool
	entered chan struct{} // closed when the stall begins
	release chan struct{} // closed by the test
}

func newStallHook(point fault.Point) *stallHook {
	return &stallHook{point: point, entered: make(chan struct{}), release: make(chan struct{})}
}

func (h *stallHook) arm() {
	h.mu.Lock()
	h.armed = true
	h.mu.Unlock()
}

func (h *stallHook) Fault(point fault.Point) error {
	if point == h.point {
		h.stall()
	}
	return nil
}

// Disk and CPU make the hook a cost model (env.Cost) whose disk stalls:
// the store's group commit blocks inside its writer, as on a slow disk.
func (h *stallHook) Disk(int) { h.stall() }
func (h *stallHook) CPU(int)  {}

func (h *stallHook) stall() {
	h.mu.Lock()
	fire := h.armed
	h.armed = false
	h.mu.Unlock()
	if fire {
		close(h.entered)
		<-h.release
	}
}

// newFaultCluster is newTestCluster with each node's Env amended by
// setEnv (fault hooks, cost models) and a config mutation.
func newFaultCluster(t *testing.T, n, r, w int, setEnv func(name string, e *Env), mutate func(*Config)) *testCluster {
	c := &testCluster{t: t, group: member.NewGroup(), nodes: map[string]*Node{}, dirs: map[string]string{}, r: r, w: w, users: testUsers, mutate: mutate}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.Close()
		}
	})
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		cfg := c.config(name)
		if mutate != nil {
			mutate(&cfg)
		}
		view := c.group.View(env.Member{Name: name, Addr: net.IPv4(127, 0, 0, 1)})
		e := &Env{Net: &env.RealNet{}, Rand: env.NewRand(uint64(i) + 7), Membership: view, DataDir: cfg.DataDir, Log: testLogger(t)}
		if setEnv != nil {
			setEnv(name, e)
		}
		nd, err := New(cfg, e)
		require.NoError(t, err)
		require.NoError(t, nd.Start())
		c.nodes[name] = nd
	}
	c.waitRing()
	return c
}

// entriesOf returns every catalog entry of mailbox on nd, whatever its state.
func entriesOf(nd *Node, mailbox string) []catalog.Entry {
	var out []catalog.Entry
	nd.Catalog().ForEach(func(e *catalog.Entry) bool {
		if e.Mailbox == mailbox {
			out = append(out, *e)
		}
		return true
	})
	return out
}

// Issue 16 bug 1, "250, then deleted": the listener's own copy stalls
// longer than the pending timeout while the other copy is durable. The
// holder of that copy resolves the pending entry meanwhile. Whatever it
// decides, the client may not get a 250 for a message that is then
// deleted: either 250 and the message is readable on every node, or a
// failure and the message is visible nowhere.
func TestStalledListenerWriteIsNotAcknowledgedThenDeleted(t *testing.T) {
	stall := newStallHook(fault.StoreWrite)
	c := newFaultCluster(t, 3, 2, 2, func(name string, e *Env) {
		if name == "n1" {
			e.Fault = stall
		}
	}, func(cfg *Config) {
		cfg.Tuning.PendingTimeout = 200 * time.Millisecond
		cfg.Tuning.MaintainEvery = 50 * time.Millisecond
	})
	stall.arm()
	type result struct {
		text string
		err  error
	}
	done := make(chan result, 1)
	msg := testMessage("stalled listener", 2048)
	go func() {
		text, err := send(t, c.nodes["n1"].Addr("smtp"), []string{"alice@example.com"}, msg)
		done <- result{text, err}
	}()
	select {
	case <-stall.entered:
	case r := <-done:
		t.Fatalf("delivery ended before the listener's write stalled: %q %v", r.text, r.err)
	}
	// The peer holding the other copy resolves the entry: the listener's
	// catalog or a peer's records a decision (a tombstone, here, as the
	// listener has no copy yet).
	require.Eventually(t, func() bool {
		for _, nd := range c.nodes {
			for _, e := range entriesOf(nd, "alice@example.com") {
				if e.State != catalog.Pending {
					return true
				}
			}
		}
		return false
	}, 30*time.Second, 10*time.Millisecond, "a holder resolves the pending entry while the listener's write stalls")
	close(stall.release)
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("delivery did not end after the stall was released")
	}
	c.waitConverged(30 * time.Second)
	if r.err == nil {
		t.Logf("acknowledged: %s", r.text)
		for _, nd := range c.nodes {
			got := readAll(t, nd.Addr("pop3"), "alice@example.com", "secret")
			require.Len(t, got, 1, "the acknowledged message is readable via %s", nd.Name())
			for _, b := range got {
				assert.Equal(t, string(msg), string(body(t, b)))
			}
		}
		return
	}
	t.Logf("refused: %v", r.err)
	require.ErrorContains(t, r.err, "451", "a transient failure: the client retries")
	for _, nd := range c.nodes {
		assert.Empty(t, nd.Catalog().List("alice@example.com"), "a failed transaction leaves no visible message on %s", nd.Name())
		got := readAll(t, nd.Addr("pop3"), "alice@example.com", "secret")
		assert.Empty(t, got, "nothing to read via %s", nd.Name())
	}
}

// Staleness is measured on the resolving node's monotonic clock from when
// it first saw the entry pending, not from the listener's version stamp: a
// listener whose wall clock lags (or a holder whose clock runs ahead) made
// every pending entry stale on arrival.
func TestPendingStalenessIgnoresTheListenersClock(t *testing.T) {
	const timeout = 2 * time.Second
	c := newFaultCluster(t, 3, 2, 2, nil, func(cfg *Config) {
		cfg.Tuning.PendingTimeout = timeout
		cfg.Tuning.MaintainEvery = 50 * time.Millisecond
	})
	// A pending entry stamped by a listener whose clock is an hour behind
	// (and gone: no such member), held by n2 and n3 without copies.
	old := uint64(time.Now().Add(-time.Hour).UnixNano())
	e := catalog.Entry{ID: "skewed.0", Mailbox: "alice@example.com", Size: 3, Received: int64(old), Sum: storeChecksum([]byte("abc")),
		Locations: []string{"n2", "n3"}, State: catalog.Pending, Version: old}
	t0 := time.Now()
	_, err := c.nodes["n2"].Catalog().Apply(e)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		got, ok := c.nodes["n2"].Catalog().Get(e.ID)
		return ok && got.State != catalog.Pending
	}, time.Minute, 10*time.Millisecond, "the entry is resolved in the end")
	assert.GreaterOrEqual(t, time.Since(t0), timeout, "resolved no sooner than the pending timeout on the resolver's own clock")
	got, _ := c.nodes["n2"].Catalog().Get(e.ID)
	assert.Equal(t, catalog.Deleted, got.State, "no copy exists: dropped")
}

// A holder's catalog that already holds an id as a tombstone refuses a
// copy of it (409): a 204 would count the copy towards the quorum of a
// transaction that pending resolution already dropped.
func TestCopyPutRefusedForTombstonedID(t *testing.T) {
	c := newTestCluster(t, 2, 2, 2)
	n2 := c.nodes["n2"]
	data := []byte("a message resolved away")
	e := catalog.Entry{ID: "gone.0", Mailbox: "alice@example.com", Size: int64(len(data)), Sum: storeChecksum(data),
		Locations: []string{"n1", "n2"}, State: catalog.Pending, Version: n2.Catalog().Now()}
	tomb := e
	tomb.State, tomb.Version = catalog.Deleted, n2.Catalog().Now()
	_, err := n2.Catalog().Apply(tomb)
	require.NoError(t, err)

	err = peerHandler{n2}.StoreCopy(e, data)
	assert.ErrorIs(t, err, peer.ErrCopyDeleted, "refused (node/peer answers it 409)")
	assert.False(t, n2.Store().Has(e.ID), "no copy stored")
	got, _ := n2.Catalog().Get(e.ID)
	assert.Equal(t, catalog.Deleted, got.State)
}

// The listener's own copy is bounded by the delivery's deadlines: a disk
// that stalls inside its sync does not hold the transaction (and the
// client) until it recovers. The copy moves to another node, or the
// transaction fails; either way the outcome holds after the disk recovers.
func TestStalledLocalDiskDoesNotHoldTheDelivery(t *testing.T) {
	stall := newStallHook("")
	c := newFaultCluster(t, 3, 2, 2, func(name string, e *Env) {
		if name == "n1" {
			e.Cost = stall
		}
	}, nil)
	type result struct {
		text string
		err  error
	}
	done := make(chan result, 1)
	msg := testMessage("stalled disk", 2048)
	stall.arm()
	go func() {
		text, err := send(t, c.nodes["n1"].Addr("smtp"), []string{"alice@example.com"}, msg)
		done <- result{text, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(25 * time.Second): // the copy timeout is 3 s, the delivery deadline 30 s
		close(stall.release)
		t.Fatal("the delivery waited for the stalled disk")
	}
	select {
	case <-stall.entered:
	default:
		t.Fatal("the disk never stalled: the test proves nothing")
	}
	close(stall.release)
	c.waitConverged(30 * time.Second)
	if r.err != nil {
		t.Logf("refused: %v", r.err)
		require.ErrorContains(t, r.err, "451")
		for _, nd := range c.nodes {
			assert.Empty(t, nd.Catalog().List("alice@example.com"), "a failed transaction leaves no visible message on %s", nd.Name())
		}
		return
	}
	t.Logf("acknowledged: %s", r.text)
	for _, nd := range c.nodes {
		got := readAll(t, nd.Addr("pop3"), "alice@example.com", "secret")
		require.Len(t, got, 1, "the acknowledged message is readable via %s", nd.Name())
	}
}
