package node

import (
	"context"
	"fmt"
	"mailarray/node/fault"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/member"
)

// loadDuring sends messages to alice round-robin through nodes until stop
// closes. count reports how many were acknowledged so far; finish waits
// for the load to stop and returns the acknowledged ones by body.
// A refusal (451 from a draining node) is not a failure: the message was
// not acknowledged, so nothing was promised.
func loadDuring(t *testing.T, nodes []*Node, stop <-chan struct{}) (count func() int, finish func() map[string][]byte) {
	acked := map[string][]byte{}
	var mu sync.Mutex
	var refused atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			msg := testMessage(fmt.Sprintf("during %04d", i), 900+i%7*100)
			if _, err := send(t, nodes[i%len(nodes)].Addr("smtp"), []string{"alice@example.com"}, msg); err != nil {
				assert.Equal(t, 451, smtpCode(err), "only a temporary refusal: %v", err)
				refused.Add(1)
				continue
			}
			mu.Lock()
			acked[string(msg)] = msg
			mu.Unlock()
		}
	}()
	count = func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	return count, func() map[string][]byte {
		<-done
		t.Logf("load: %d acknowledged during the drain, %d refused", len(acked), refused.Load())
		return acked
	}
}

// assertHeldOn checks every committed entry of alice's mailbox, as node
// lists it, against the stores: R distinct holders, all among nodes, each
// holding the copy intact; and that the mailbox has exactly want messages.
func assertHeldOn(t *testing.T, list *Node, nodes map[string]*Node, r, want int) {
	t.Helper()
	es := list.Catalog().List("alice@example.com")
	require.Len(t, es, want, "every acknowledged message is listed, once")
	for _, e := range es {
		require.Equal(t, catalog.Committed, e.State)
		require.Len(t, e.Locations, r, "message %s has R copies: %v", e.ID, e.Locations)
		for _, l := range e.Locations {
			nd, ok := nodes[l]
			require.True(t, ok, "message %s listed on %s, not one of the remaining nodes", e.ID, l)
			require.NoError(t, nd.Store().Verify(e.ID, e.Sum), "message %s: %s's store holds the copy intact", e.ID, l)
		}
	}
}

func TestDrainMovesEveryCopyThenLeaves(t *testing.T) {
	c := newTestCluster(t, 4, 2, 2)
	before := deliverMany(t, c, 60)
	c.waitConverged(10 * time.Second)
	n1, n4 := c.nodes["n1"], c.nodes["n4"]
	st4, err := n4.Store().Stats()
	require.NoError(t, err)
	require.Positive(t, st4.Copies, "n4 holds copies to drain")

	stop := make(chan struct{})
	count, during := loadDuring(t, []*Node{c.nodes["n1"], c.nodes["n2"], c.nodes["n3"], n4}, stop)
	require.Eventually(t, func() bool { return count() >= 8 }, 10*time.Second, 5*time.Millisecond, "load under way before the drain")

	// What n4 holds as the drain starts (and what lands on it until its
	// copies are refused) must be on two of n1..n3 when the drain is done.
	var held []string
	n4.Store().CopyIDs(func(id string) bool { held = append(held, id); return true })

	// Asked through another node, as `mailarray drain` may be.
	ctx := context.Background()
	st, err := n1.DrainNode(ctx, "n4", true)
	require.NoError(t, err)
	assert.Equal(t, DrainDraining, st.State)
	assert.True(t, n4.drain.draining())
	// n4 leaves every node's ring and every DNS answer at once.
	require.Eventually(t, func() bool {
		for _, n := range c.nodes {
			if n.members.Table().Version != n1.members.Table().Version || len(n.members.Table().Ring) != 3 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "n4 is off every ring")
	for _, m := range (*dnsSource)(n1).Nodes("smtp") {
		assert.NotEqual(t, "n4", m.Name, "a draining node is out of the MX answer")
	}
	asked, err := n1.DrainNode(ctx, "n4", true)
	require.NoError(t, err, "asking again is harmless")
	assert.NotEmpty(t, asked.State)

	require.Eventually(t, func() bool {
		st, err := n1.DrainNode(ctx, "n4", false)
		return err == nil && st.Done
	}, 30*time.Second, 50*time.Millisecond, "the drain completes")
	// Done means done: the copies are on the others' disks now, before
	// any further rebuild could make up for a drain that left early.
	for _, id := range held {
		e, ok := n4.Catalog().Get(id)
		if !ok || e.State == catalog.Deleted {
			continue
		}
		k := 0
		for _, name := range []string{"n1", "n2", "n3"} {
			if c.nodes[name].Store().Has(id) {
				k++
			}
		}
		assert.GreaterOrEqual(t, k, 2, "message %s has R copies on n1..n3 when the drain reports done", id)
	}
	close(stop)
	acked := during()
	require.Greater(t, len(acked), 8, "mail kept arriving during the drain")

	m, ok := n1.members.Get("n4")
	require.True(t, ok)
	assert.Equal(t, env.StatusLeft, m.Status, "n4 left the array")
	assert.Equal(t, DrainLeft, n4.drain.status().State)
	delete(c.nodes, "n4") // still running: closed by the cleanup
	t.Cleanup(func() { n4.Close() })

	c.waitConverged(20 * time.Second)
	rest := map[string]*Node{"n1": c.nodes["n1"], "n2": c.nodes["n2"], "n3": c.nodes["n3"]}
	for _, n := range rest {
		assertHeldOn(t, n, rest, 2, len(before)+len(acked))
	}
	all := map[string][]byte{}
	for k, v := range before {
		all[k] = v
	}
	for k, v := range acked {
		all[k] = v
	}
	assertMailbox(t, c.nodes["n2"], all)
}

func TestDrainResumesAfterRestart(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	sent := deliverMany(t, c, 30)
	c.waitConverged(10 * time.Second)
	_, err := c.nodes["n3"].Drain(true)
	require.NoError(t, err)
	// Interrupted at once: the decision is on n3's disk.
	c.nodes["n3"].Close()
	n3 := c.start("n3")
	assert.True(t, n3.drain.draining(), "a restarted node resumes its drain")
	assert.Equal(t, "1", n3.env.Membership.Local().Tags[env.TagDraining], "advertised from its first advertisement: no copy is placed on it meanwhile")
	assert.NotContains(t, n3.members.Table().Ring, "n3", "off its own ring from the start")
	require.Eventually(t, func() bool {
		st, err := c.nodes["n1"].DrainNode(context.Background(), "n3", false)
		return err == nil && st.Done
	}, 30*time.Second, 50*time.Millisecond, "the resumed drain completes")
	delete(c.nodes, "n3")
	t.Cleanup(func() { n3.Close() })
	c.waitConverged(20 * time.Second)
	rest := map[string]*Node{"n1": c.nodes["n1"], "n2": c.nodes["n2"]}
	for _, n := range rest {
		assertHeldOn(t, n, rest, 2, len(sent))
	}
}

func TestDrainRefusedWhenTheRestCannotHoldRCopies(t *testing.T) {
	c := newTestCluster(t, 3, 3, 2)
	deliverMany(t, c, 5)
	c.waitConverged(10 * time.Second)
	_, err := c.nodes["n1"].DrainNode(context.Background(), "n3", true)
	require.ErrorIs(t, err, ErrDrainRefused, "two other nodes cannot hold R=3 copies")
	assert.Contains(t, err.Error(), "R=3")
	assert.False(t, c.nodes["n3"].drain.draining(), "nothing changed on the node")
	assert.Empty(t, c.nodes["n3"].Store().GetMeta(drainMetaKey), "and nothing was recorded")
	assert.Len(t, c.nodes["n1"].members.Table().Ring, 3)
	_, err = send(t, c.nodes["n3"].Addr("smtp"), []string{"alice@example.com"}, testMessage("still here", 500))
	require.NoError(t, err, "the node still takes mail")

	// A failed node cannot drain: rebuild is what restores its copies.
	c.kill("n3")
	require.Eventually(t, func() bool { return !c.nodes["n1"].members.Alive("n3") }, 10*time.Second, 5*time.Millisecond)
	_, err = c.nodes["n1"].DrainNode(context.Background(), "n3", true)
	require.ErrorIs(t, err, errNoMember)
}

// blockRebuild fails every rebuild copy on its node while on.
type blockRebuild struct{ on atomic.Bool }

func (b *blockRebuild) Fault(point fault.Point) error {
	if point == fault.RebuildCopy && b.on.Load() {
		return fmt.Errorf("test: rebuild blocked")
	}
	return nil
}

// TestDrainHandsOnCopiesNoOtherNodeHolds: messages whose only live copy
// is on the draining node (their other holder failed, and the node had
// not rebuilt them yet) are copied out by the draining node itself; the
// drain waits for them.
func TestDrainHandsOnCopiesNoOtherNodeHolds(t *testing.T) {
	block := &blockRebuild{}
	c := &testCluster{t: t, group: member.NewGroup(), nodes: map[string]*Node{}, dirs: map[string]string{}, r: 2, w: 2, users: testUsers}
	c.env = func(name string, e *Env) {
		if name == "n4" {
			e.Fault = block
		}
	}
	for i := 1; i <= 4; i++ {
		c.start(fmt.Sprintf("n%d", i))
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.Close()
		}
	})
	c.waitRing()
	sent := deliverMany(t, c, 60)
	c.waitConverged(10 * time.Second)
	n4 := c.nodes["n4"]
	block.on.Store(true)
	c.kill("n3")
	// The messages n3 and n4 held: n4 alone holds them now and cannot
	// rebuild them.
	var alone int
	require.Eventually(t, func() bool {
		alone = 0
		t := n4.members.Table()
		n4.Catalog().ForEach(func(e *catalog.Entry) bool {
			if e.State == catalog.Committed && e.HasLocation("n4") && e.HasLocation("n3") && len(t.Ring) == 3 {
				alone++
			}
			return true
		})
		return alone > 0 && n4.UnderReplicated() > 0
	}, 10*time.Second, 10*time.Millisecond, "some messages are held by n4 alone")

	_, err := n4.Drain(true)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, _ := n4.Drain(false)
		return st.Left > 0
	}, 10*time.Second, 10*time.Millisecond, "the drain has scanned")
	st, _ := n4.Drain(false)
	assert.False(t, st.Done, "copies only n4 holds keep it from leaving")
	assert.GreaterOrEqual(t, st.Left, alone)

	block.on.Store(false)
	require.Eventually(t, func() bool {
		st, _ := n4.Drain(false)
		return st.Done
	}, 30*time.Second, 20*time.Millisecond, "n4 hands them on, then leaves")
	delete(c.nodes, "n4")
	t.Cleanup(func() { n4.Close() })
	c.waitConverged(20 * time.Second)
	rest := map[string]*Node{"n1": c.nodes["n1"], "n2": c.nodes["n2"]}
	for _, n := range rest {
		assertHeldOn(t, n, rest, 2, len(sent))
	}
}
