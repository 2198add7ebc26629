package node

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/pop3"
)

// deliverMany sends k messages to alice round-robin through the live nodes
// and returns the bodies sent by subject.
func deliverMany(t *testing.T, c *testCluster, k int) map[string][]byte {
	t.Helper()
	var names []string
	for name := range c.nodes {
		names = append(names, name)
	}
	sent := map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < k; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			msg := testMessage(fmt.Sprintf("msg %04d", i), 1024+i*16)
			_, err := send(t, c.nodes[names[i%len(names)]].Addr("smtp"), []string{"alice@example.com"}, msg)
			assert.NoError(t, err)
			mu.Lock()
			sent[string(msg)] = msg
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	return sent
}

func assertMailbox(t *testing.T, n *Node, want map[string][]byte) {
	t.Helper()
	got := readAll(t, n.Addr("pop3"), "alice@example.com", "secret")
	require.Len(t, got, len(want), "every acknowledged message, once, via %s", n.Name())
	for _, b := range got {
		_, ok := want[string(body(t, b))]
		assert.True(t, ok, "message read via %s is one that was sent, intact", n.Name())
	}
}

func TestArrayReplicatesAndSurvivesTwoFailures(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	sent := deliverMany(t, c, 60)
	c.waitConverged(10 * time.Second)
	for _, n := range c.nodes {
		e := n.Catalog().List("alice@example.com")
		require.Len(t, e, 60, "every node lists the whole mailbox")
		for _, x := range e {
			assert.Len(t, x.Locations, 2, "R=2 copies")
			assert.NotEqual(t, x.Locations[0], x.Locations[1])
		}
	}
	c.kill("n1")
	// Reads go to mirrors at once.
	assertMailbox(t, c.nodes["n2"], sent)
	c.waitConverged(20 * time.Second)
	for _, n := range c.nodes {
		for _, x := range n.Catalog().List("alice@example.com") {
			assert.NotContains(t, x.Locations, "n1", "rebuilt copies replace the dead node's")
		}
	}
	c.kill("n2")
	assertMailbox(t, c.nodes["n3"], sent)
}

func TestArrayWriteQuorumUnavailable(t *testing.T) {
	c := newTestCluster(t, 2, 2, 2)
	c.kill("n2")
	_, err := send(t, c.nodes["n1"].Addr("smtp"), []string{"alice@example.com"}, testMessage("no quorum", 500))
	require.Error(t, err)
	assert.Equal(t, 451, smtpCode(err))
	assert.Equal(t, "4.3.0", smtpEnhanced(err))
	assert.Empty(t, c.nodes["n1"].Catalog().List("alice@example.com"), "nothing visible")
}

func TestArrayDeleteEverywhereAndInUse(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	deliverMany(t, c, 5)
	c.waitConverged(10 * time.Second)
	cl, err := popLogin(t, c.nodes["n1"].Addr("pop3"), "alice@example.com", "secret")
	require.NoError(t, err)
	_, err = popLogin(t, c.nodes["n2"].Addr("pop3"), "alice@example.com", "secret")
	assert.Equal(t, "IN-USE", pop3.ErrorCode(err), "a second session on another node: %v", err)
	require.NoError(t, cl.Dele(1))
	require.NoError(t, cl.Dele(2))
	uids, err := cl.Uidl()
	require.NoError(t, err)
	require.NoError(t, cl.Quit())
	// Once QUIT is acknowledged no node shows the deleted messages.
	for name, n := range c.nodes {
		assert.Len(t, n.Catalog().List("alice@example.com"), 3, "node %s", name)
		for _, u := range uids {
			e, ok := n.Catalog().Get(u.ID)
			require.True(t, ok)
			assert.Equal(t, catalog.Committed, e.State)
		}
	}
	require.Eventually(t, func() bool {
		st0, _ := c.nodes["n1"].Store().Stats()
		st1, _ := c.nodes["n2"].Store().Stats()
		st2, _ := c.nodes["n3"].Store().Stats()
		return st0.Copies+st1.Copies+st2.Copies == 3*2
	}, 10*time.Second, 20*time.Millisecond, "deleted copies are removed from every store")
	// The lock was released: another node can open the mailbox now.
	assert.Len(t, readAll(t, c.nodes["n2"].Addr("pop3"), "alice@example.com", "secret"), 3)
}

func TestArrayCorruptCopyIsSkippedAndRepaired(t *testing.T) {
	c := newTestCluster(t, 2, 2, 2)
	sent := deliverMany(t, c, 3)
	c.waitConverged(10 * time.Second)
	e := c.nodes["n1"].Catalog().List("alice@example.com")[0]
	require.NoError(t, c.nodes["n1"].Store().Corrupt(e.ID))
	assertMailbox(t, c.nodes["n1"], sent)
	data, err := c.nodes["n1"].Store().Get(e.ID)
	require.NoError(t, err, "the bad copy was repaired from the good one")
	assert.Equal(t, e.Sum, catalogSum(data))
}

func TestArrayRejoinDoesNotResurrect(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	deliverMany(t, c, 6)
	c.waitConverged(10 * time.Second)
	c.kill("n3")
	cl, err := popLogin(t, c.nodes["n1"].Addr("pop3"), "alice@example.com", "secret")
	require.NoError(t, err)
	for i := 1; i <= 6; i++ {
		require.NoError(t, cl.Dele(i))
	}
	require.NoError(t, cl.Quit())
	n3 := c.start("n3")
	c.group.Revive("n3")
	c.waitConverged(20 * time.Second)
	assert.Empty(t, n3.Catalog().List("alice@example.com"), "deleted while away stays deleted")
	require.Eventually(t, func() bool {
		st, _ := n3.Store().Stats()
		return st.Copies == 0
	}, 10*time.Second, 20*time.Millisecond, "the returning node drops its copies of deleted mail")
}

func TestArrayGrowthAndRebalance(t *testing.T) {
	c := newTestCluster(t, 2, 2, 2)
	sent := deliverMany(t, c, 40)
	c.waitConverged(10 * time.Second)
	n3 := c.start("n3")
	c.waitConverged(10 * time.Second)
	require.Len(t, n3.Catalog().List("alice@example.com"), 40, "a new node receives the catalog")
	_, err := send(t, n3.Addr("smtp"), []string{"alice@example.com"}, testMessage("via new node", 700))
	require.NoError(t, err, "and takes mail")
	for _, n := range c.nodes {
		n.repl.TriggerRebalance()
	}
	require.Eventually(t, func() bool {
		st, _ := n3.Store().Stats()
		return st.Copies >= 15
	}, 20*time.Second, 50*time.Millisecond, "rebalance moves a share of old copies to the new node")
	c.waitConverged(20 * time.Second)
	sent[string(testMessage("via new node", 700))] = nil
	for _, n := range c.nodes {
		got := readAll(t, n.Addr("pop3"), "alice@example.com", "secret")
		assert.Len(t, got, 41, "via %s", n.Name())
	}
	require.Eventually(t, func() bool {
		total := 0
		for _, n := range c.nodes {
			st, _ := n.Store().Stats()
			total += st.Copies
		}
		return total == 41*2
	}, 10*time.Second, 20*time.Millisecond, "moved copies leave their old holders: exactly R copies of each message")
}
