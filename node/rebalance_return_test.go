package node

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/replica"
)

// returnCluster is a three-node R=2 W=2 array with rebalance-after-return
// set to settle, holding messages delivered before n3 fails and while it
// is away, after n3 came back with its old disk: the state an operator
// finds after an outage. It returns the messages sent.
func returnCluster(t *testing.T, settle time.Duration) (*testCluster, map[string][]byte) {
	t.Helper()
	c := newClusterWith(t, 3, 2, 2, func(cfg *Config) {
		cfg.Tuning.RebalanceAfterReturn = settle
		cfg.Tuning.RebuildPerScan = 8 // the rebalance takes several throttled passes
	})
	sent := map[string][]byte{}
	deliverBatch(t, c, "before", 45, sent)
	c.waitConverged(10 * time.Second)
	before, _ := c.nodes["n3"].Store().Stats()
	require.Positive(t, before.Copies, "n3 holds its share before it fails")

	c.kill("n3")
	deliverBatch(t, c, "while away", 15, sent)
	c.waitConverged(20 * time.Second) // rebuild restored R copies on n1 and n2
	for _, e := range c.nodes["n1"].Catalog().List(alice) {
		require.NotContains(t, e.Locations, "n3", "rebuild moved %s off the failed node", e.ID)
	}

	c.start("n3")
	c.group.Revive("n3")
	c.waitRing()
	return c, sent
}

// copyHolders maps each committed entry of alice's mailbox (n1's catalog)
// to the live nodes whose store holds a valid copy, sorted.
func copyHolders(c *testCluster) map[string][]string {
	out := map[string][]string{}
	for _, e := range c.nodes["n1"].Catalog().List(alice) {
		var h []string
		for name, n := range c.nodes {
			if n.Store().Verify(e.ID, e.Sum) == nil {
				h = append(h, name)
			}
		}
		sort.Strings(h)
		out[e.ID] = h
	}
	return out
}

// atBalancedPlacement reports, for every committed entry, whether it lists
// exactly its rebalance placement and whether exactly those nodes' stores
// hold it; the first entry that does not, for the failure message.
func atBalancedPlacement(c *testCluster) (bool, string) {
	t := c.nodes["n1"].members.Table()
	if len(t.Ring) != 3 {
		return false, fmt.Sprintf("ring %v", t.Ring)
	}
	holders := copyHolders(c)
	for _, e := range c.nodes["n1"].Catalog().List(alice) {
		want := replica.Balanced(t, e.ID, 2)
		sort.Strings(want)
		listed := slices.Clone(e.Locations)
		sort.Strings(listed)
		if !slices.Equal(listed, want) || !slices.Equal(holders[e.ID], want) {
			return false, fmt.Sprintf("%s: listed %v, stored on %v, placement %v", e.ID, listed, holders[e.ID], want)
		}
	}
	return true, ""
}

// TestRebalanceAfterReturn: a node fails, rebuild restores R copies on the
// survivors, the node returns; with no operator command the array moves
// copies back to the rebalance placement (the returned node takes its
// share again), every message ends with exactly R copies on the nodes its
// entry lists, and nothing is lost. One node drove it: the lowest-named.
func TestRebalanceAfterReturn(t *testing.T) {
	c, sent := returnCluster(t, 500*time.Millisecond)
	var last string
	if !assert.Eventually(t, func() bool {
		ok, why := atBalancedPlacement(c)
		last = why
		return ok && c.converged()
	}, 30*time.Second, 50*time.Millisecond, "copies return to their placement without an operator") {
		t.Fatalf("still off placement: %s", last)
	}

	st, _ := c.nodes["n3"].Store().Stats()
	assert.GreaterOrEqual(t, st.Copies, 20, "the returned node holds its share again (60 messages, R=2, 3 nodes: about 40)")
	assert.Empty(t, c.phantoms())
	var moved, trimmed int64
	for name, n := range c.nodes {
		s := n.repl.Stats()
		moved += s.MovedCopies
		trimmed += s.TrimmedCopies
		if name == "n1" {
			assert.EqualValues(t, 1, s.AutoRebalances, "the lowest-named node drove one rebalance")
		} else {
			assert.Zero(t, s.AutoRebalances, "only the lowest-named node drives (%s)", name)
		}
	}
	assert.Positive(t, moved, "copies were moved")
	assert.Positive(t, trimmed, "the copies they replaced were trimmed")
	for _, n := range c.nodes {
		assertMailbox(t, n, sent)
	}
}

// TestRebalanceAfterReturnOff: with rebalance-after-return 0 the returned
// node's old copies are trimmed (rebuild re-homed them) and nothing moves
// back: the spread stays as rebuild left it until `mailarray rebalance`.
func TestRebalanceAfterReturnOff(t *testing.T) {
	c, sent := returnCluster(t, 0)
	require.Eventually(t, func() bool {
		st, _ := c.nodes["n3"].Store().Stats()
		return st.Copies == 0 && c.converged()
	}, 20*time.Second, 50*time.Millisecond, "the returned node's old copies, listed elsewhere now, are trimmed")
	// Several times the settle period TestRebalanceAfterReturn uses.
	require.Never(t, func() bool {
		st, _ := c.nodes["n3"].Store().Stats()
		return st.Copies > 0
	}, 3*time.Second, 50*time.Millisecond, "no copy moves back without an operator")
	for _, n := range c.nodes {
		assert.Zero(t, n.repl.Stats().AutoRebalances)
		assert.Zero(t, n.repl.Stats().MovedCopies)
	}
	for id, h := range copyHolders(c) {
		assert.Len(t, h, 2, "%s has R copies", id)
	}
	for _, n := range c.nodes {
		assertMailbox(t, n, sent)
	}
}
