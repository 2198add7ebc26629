package node

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/fault"
	"mailarray/node/pop3"
)

// testFaults fails named Env.Inject points, per node or on every node
// (node ""), as the test switches them.
type testFaults struct {
	mu   sync.Mutex
	fail map[nodePoint]bool
}

var errTestFault = errors.New("test: injected fault")

type nodePoint struct {
	node  string
	point fault.Point
}

func newTestFaults() *testFaults { return &testFaults{fail: map[nodePoint]bool{}} }

func (f *testFaults) set(node string, point fault.Point, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[nodePoint{node, point}] = on
}

type nodeFaults struct {
	f    *testFaults
	node string
}

func (h nodeFaults) Fault(point fault.Point) error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if h.f.fail[nodePoint{h.node, point}] || h.f.fail[nodePoint{"", point}] {
		return errTestFault
	}
	return nil
}

// TestDeleteOKOnlyWhenEveryLiveNodeHasTheTombstone: a live node that
// cannot take the tombstones of a POP3 deletion keeps the QUIT from
// answering +OK (issue 16, bug 5: it answered +OK while n3 still listed
// the message); once it accepts again, the client's retried deletion gets
// +OK and the message is gone from every node's catalog.
func TestDeleteOKOnlyWhenEveryLiveNodeHasTheTombstone(t *testing.T) {
	faults := newTestFaults()
	c := newTestCluster(t, 0, 2, 2)
	c.env = func(name string, e *Env) { e.Fault = nodeFaults{faults, name} }
	c.mutate = func(cfg *Config) { cfg.Tuning.DeleteSyncTimeout = 300 * time.Millisecond }
	for _, name := range []string{"n1", "n2", "n3"} {
		c.start(name)
	}
	c.waitRing()
	deliverMany(t, c, 3)
	c.waitConverged(10 * time.Second)

	// From now on only the deletion's own push can carry a tombstone (no
	// anti-entropy anywhere), and n3 refuses pushed entries.
	faults.set("", fault.CatalogAntiEntropy, true)
	faults.set("n3", fault.PeerApply, true)

	cl, err := popLogin(t, c.nodes["n1"].Addr("pop3"), "alice@example.com", "secret")
	require.NoError(t, err)
	uids, err := cl.Uidl()
	require.NoError(t, err)
	require.Len(t, uids, 3)
	victim := uids[0].ID
	require.NoError(t, cl.Dele(uids[0].Num))
	err = cl.Quit()
	require.Error(t, err, "QUIT must not answer +OK while live n3 still lists %s", victim)
	assert.Equal(t, "SYS/TEMP", pop3.ErrorCode(err), "a temporary failure (RFC 2449 section 8): %v", err)

	state := func(node string) catalog.State {
		e, ok := c.nodes[node].Catalog().Get(victim)
		require.True(t, ok, "%s knows %s", node, victim)
		return e.State
	}
	assert.Equal(t, catalog.Deleted, state("n1"), "the tombstone stays applied on the session's node")
	assert.Equal(t, catalog.Deleted, state("n2"), "and reached the node that accepts")
	assert.Equal(t, catalog.Committed, state("n3"), "n3 refused it")

	// n3 accepts again. The client retries; the node that still lists the
	// message serves it, and this time the deletion is confirmed.
	faults.set("n3", fault.PeerApply, false)
	cl, err = popLogin(t, c.nodes["n3"].Addr("pop3"), "alice@example.com", "secret")
	require.NoError(t, err)
	uids, err = cl.Uidl()
	require.NoError(t, err)
	num := 0
	for _, u := range uids {
		if u.ID == victim {
			num = u.Num
		}
	}
	require.NotZero(t, num, "n3 still lists %s", victim)
	require.NoError(t, cl.Dele(num))
	require.NoError(t, cl.Quit(), "every live node takes the tombstone now")
	for _, name := range []string{"n1", "n2", "n3"} {
		assert.Equal(t, catalog.Deleted, state(name), "node %s", name)
		assert.Len(t, c.nodes[name].Catalog().List("alice@example.com"), 2, "node %s lists the rest", name)
	}
}

// A deletion on a node left alone (R=2 W=2, its two peers failed) is
// refused before anything is applied: confirmed there alone, it would be
// lost with that node, and the copies the others hold would come back when
// they return (found by the chaos suite's ring cells). Once a second node
// is live the same deletion is confirmed.
func TestDeleteRefusedWithoutWriteQuorum(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	deliverMany(t, c, 2)
	c.waitConverged(10 * time.Second)
	c.kill("n2")
	c.kill("n3")
	require.Eventually(t, func() bool { return len(c.nodes["n1"].members.Table().Ring) == 1 },
		10*time.Second, 5*time.Millisecond, "n1 sees itself alone")

	cl, err := popLogin(t, c.nodes["n1"].Addr("pop3"), "alice@example.com", "secret")
	require.NoError(t, err)
	uids, err := cl.Uidl()
	require.NoError(t, err)
	require.Len(t, uids, 2)
	victim := uids[0].ID
	require.NoError(t, cl.Dele(uids[0].Num))
	err = cl.Quit()
	require.Error(t, err, "QUIT must not answer +OK with one of W=2 nodes live")
	assert.Equal(t, "SYS/TEMP", pop3.ErrorCode(err), "a temporary failure (RFC 2449 section 8): %v", err)
	e, ok := c.nodes["n1"].Catalog().Get(victim)
	require.True(t, ok)
	assert.Equal(t, catalog.Committed, e.State, "nothing applied")

	c.start("n2")
	c.waitRing()
	cl, err = popLogin(t, c.nodes["n1"].Addr("pop3"), "alice@example.com", "secret")
	require.NoError(t, err)
	uids, err = cl.Uidl()
	require.NoError(t, err)
	require.Len(t, uids, 2)
	require.NoError(t, cl.Dele(uids[0].Num))
	require.NoError(t, cl.Quit(), "two of W=2 nodes live: confirmed")
	for _, name := range []string{"n1", "n2"} {
		e, _ := c.nodes[name].Catalog().Get(uids[0].ID)
		assert.Equal(t, catalog.Deleted, e.State, "node %s", name)
	}
}
