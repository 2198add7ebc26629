package node

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/env"
)

// restartInPlace stops node name and starts it again on the same
// addresses, with between run while it is down, quicker than failure
// detection (serf: seconds): membership never sees it go, so no node
// rebuilds meanwhile, as after an operator's quick restore.
func (c *testCluster) restartInPlace(name string, between func()) *Node {
	c.t.Helper()
	old := c.nodes[name]
	addrs := old.addrsSnapshot()
	local := old.env.Membership.Local()
	require.NoError(c.t, old.Close())
	delete(c.nodes, name)
	between()
	cfg := c.config(name)
	cfg.SMTPAddr, cfg.POP3Addr, cfg.DNSAddr, cfg.PeerAddr, cfg.HTTPAddr = addrs["smtp"], addrs["pop3"], addrs["dns"], addrs["peer"], addrs["http"]
	view := c.group.View(local)
	e := &Env{Net: &env.RealNet{}, Rand: env.NewRand(uint64(len(c.nodes)) + 7), Membership: view, DataDir: cfg.DataDir, Log: testLogger(c.t)}
	nd, err := New(cfg, e)
	require.NoError(c.t, err)
	require.NoError(c.t, nd.Start())
	c.nodes[name] = nd
	c.waitRing()
	return nd
}

// deliverBatch sends k distinct messages to alice round-robin through the
// live nodes (in name order) and adds their bodies to sent.
func deliverBatch(t *testing.T, c *testCluster, prefix string, k int, sent map[string][]byte) {
	t.Helper()
	var names []string
	for name := range c.nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for i := 0; i < k; i++ {
		msg := testMessage(fmt.Sprintf("%s %04d", prefix, i), 600+i*8)
		_, err := send(t, c.nodes[names[i%len(names)]].Addr("smtp"), []string{"alice@example.com"}, msg)
		require.NoError(t, err)
		sent[string(msg)] = msg
	}
}

// converged is waitConverged's condition: every live node has the same
// catalog digest, nothing pending or under-replicated.
func (c *testCluster) converged() bool {
	var d string
	for _, n := range c.nodes {
		if n.underReplicatedNow() != 0 || n.Catalog().Counts()[catalog.Pending] != 0 || !n.repl.CommitsIdle() {
			return false
		}
		if d == "" {
			d = n.Catalog().Digest()
		} else if n.Catalog().Digest() != d {
			return false
		}
	}
	return true
}

// phantoms lists, over every live node's catalog, the committed entries
// that name a live node whose store holds no valid copy.
func (c *testCluster) phantoms() []string {
	var out []string
	for _, nd := range c.nodes {
		nd.Catalog().ForEach(func(e *catalog.Entry) bool {
			if e.State != catalog.Committed {
				return true
			}
			for _, l := range e.Locations {
				if h := c.nodes[l]; h != nil && h.Store().Verify(e.ID, e.Sum) != nil {
					out = append(out, fmt.Sprintf("%s lists %s on %s", nd.Name(), e.ID, l))
				}
			}
			return true
		})
	}
	sort.Strings(out)
	return out
}

// readable reads alice's mailbox through node and returns the bodies it
// could retrieve and how many listed messages it could not.
func readable(t *testing.T, n *Node) (map[string]bool, int) {
	t.Helper()
	cl, err := popLogin(t, n.Addr("pop3"), "alice@example.com", "secret")
	require.NoError(t, err)
	defer cl.Quit()
	uids, err := cl.Uidl()
	require.NoError(t, err)
	got, failed := map[string]bool{}, 0
	for _, u := range uids {
		b, err := cl.Retr(u.Num)
		if err != nil {
			failed++
			continue
		}
		got[string(body(t, b))] = true
	}
	return got, failed
}

// partnerOf is the node other than name listed most often beside it: the
// one whose failure a phantom holder on name would turn into loss.
func partnerOf(c *testCluster, name string) string {
	count := map[string]int{}
	c.nodes[name].Catalog().ForEach(func(e *catalog.Entry) bool {
		if e.State == catalog.Committed && e.HasLocation(name) {
			for _, l := range e.Locations {
				if l != name {
					count[l]++
				}
			}
		}
		return true
	})
	best := ""
	for _, l := range slices.Sorted(maps.Keys(count)) {
		if best == "" || count[l] > count[best] {
			best = l
		}
	}
	return best
}

// checkNoLoss waits until rebuild has made every listed copy real, then
// fails the partner of restarted and reads every acknowledged message.
func checkNoLoss(t *testing.T, c *testCluster, restarted string, sent map[string][]byte) {
	t.Helper()
	c.waitConverged(30 * time.Second)
	assert.Eventually(t, func() bool {
		return c.converged() && len(c.phantoms()) == 0
	}, 30*time.Second, 50*time.Millisecond, "catalogs agree, nothing under-replicated, and every location an entry lists holds the copy")
	if p := c.phantoms(); len(p) > 0 {
		t.Logf("%d phantom holders, e.g. %s", len(p), p[0])
	}
	victim := partnerOf(c, restarted)
	require.NotEmpty(t, victim)
	c.kill(victim)
	for _, nd := range c.nodes {
		got, failed := readable(t, nd)
		lost := 0
		for b := range sent {
			if !got[b] {
				lost++
			}
		}
		assert.Zero(t, failed, "unreadable messages via %s after %s failed", nd.Name(), victim)
		assert.Zero(t, lost, "acknowledged messages lost via %s after %s failed (of %d)", nd.Name(), victim, len(sent))
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.Create(to)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
}

// Issue 16, bug 2: docs/deploy.md section 7, a node restored from an
// earlier backup of node.db. The entries written since list it for copies
// the backup lacks; they must be rebuilt from the real holders before
// another node fails.
func TestVerifyRestoredBackupLosesNothing(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	sent := map[string][]byte{}
	deliverBatch(t, c, "before backup", 12, sent)
	c.waitConverged(10 * time.Second)

	backup := filepath.Join(t.TempDir(), "node.db")
	c.restartInPlace("n2", func() { copyFile(t, filepath.Join(c.dirs["n2"], "node.db"), backup) })
	deliverBatch(t, c, "after backup", 30, sent)
	c.waitConverged(10 * time.Second)

	c.restartInPlace("n2", func() { copyFile(t, backup, filepath.Join(c.dirs["n2"], "node.db")) })
	checkNoLoss(t, c, "n2", sent)
	assert.Positive(t, c.nodes["n2"].Verify().Missing, "the restored node unlisted itself")
}

// Issue 16, bug 2: a node that comes back quickly on an empty (replaced)
// disk receives the catalog by anti-entropy, listing it for every copy it
// held.
func TestVerifyEmptyDiskLosesNothing(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	sent := map[string][]byte{}
	deliverBatch(t, c, "before the disk", 30, sent)
	c.waitConverged(10 * time.Second)

	c.restartInPlace("n2", func() { c.dirs["n2"] = t.TempDir() })
	checkNoLoss(t, c, "n2", sent)
	assert.Positive(t, c.nodes["n2"].Verify().Missing, "the new disk's node unlisted itself")
}
