package node

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/peer"
)

// shortTombstones makes tombstones collectable within a test.
func shortTombstones(ttl time.Duration) func(*Config) {
	return func(cfg *Config) {
		cfg.Tuning.TombstoneTTL = ttl
		cfg.Tuning.CollectEvery = 100 * time.Millisecond
	}
}

// holdsAny reports which of ids n still has an entry or a copy of.
func holdsAny(n *Node, ids []string) []string {
	var out []string
	for _, id := range ids {
		if _, ok := n.Catalog().Get(id); ok || n.Store().Has(id) {
			out = append(out, id)
		}
	}
	return out
}

// aeRoundsNow snapshots every node's anti-entropy round counter.
func (c *testCluster) aeRoundsNow() map[string]int64 {
	out := map[string]int64{}
	for name, n := range c.nodes {
		out[name] = n.repl.Stats().AntiEntropyRounds
	}
	return out
}

// staysGone waits until every node has run k more anti-entropy rounds,
// checking at every poll that none holds any of ids again.
func (c *testCluster) staysGone(ids []string, k int64) {
	c.t.Helper()
	from := c.aeRoundsNow()
	var back []string
	require.Eventually(c.t, func() bool {
		done := true
		for name, n := range c.nodes {
			if h := holdsAny(n, ids); len(h) > 0 {
				back = append(back, name+":"+h[0])
			}
			if n.repl.Stats().AntiEntropyRounds < from[name]+k {
				done = false
			}
		}
		return done
	}, 30*time.Second, 20*time.Millisecond, "every node runs %d more anti-entropy rounds", k)
	require.Empty(c.t, back, "a collected tombstone's message came back (node:id)")
}

// Bug 3: each node collected on its own timer and anti-entropy handed the
// collected tombstones straight back, so no deletion was ever forgotten.
func TestTombstonesCollectedAcrossArray(t *testing.T) {
	c := newClusterWith(t, 3, 2, 2, shortTombstones(300*time.Millisecond))
	deliverMany(t, c, 6)
	c.waitConverged(10 * time.Second)
	n1 := c.nodes["n1"]
	list := n1.Catalog().List(alice)
	require.Len(t, list, 6)
	var deleted []string
	cl, err := popLogin(t, n1.Addr("pop3"), alice, "secret")
	require.NoError(t, err)
	for i := 1; i <= 5; i++ {
		require.NoError(t, cl.Dele(i))
		deleted = append(deleted, list[i-1].ID)
	}
	require.NoError(t, cl.Quit())
	kept := list[5].ID

	require.Eventually(t, func() bool {
		for _, n := range c.nodes {
			if len(holdsAny(n, deleted)) > 0 {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "every node forgets the deleted messages: tombstones and copies collected")
	c.staysGone(deleted, 5)
	c.waitConverged(10 * time.Second)
	for name, n := range c.nodes {
		got := n.Catalog().List(alice)
		require.Len(t, got, 1, "via %s", name)
		assert.Equal(t, kept, got[0].ID, "the message not deleted stays, via %s", name)
		assert.Zero(t, n.Catalog().Counts()[catalog.Deleted], "no tombstone left on %s", name)
	}
}

// Bug 4: a node away longer than the tombstone TTL came back with live
// entries of messages deleted (and forgotten) meanwhile.
func TestRejoinAfterTombstoneTTLRefusedUnlessResynced(t *testing.T) {
	ttl := time.Second
	c := newClusterWith(t, 3, 2, 2, shortTombstones(ttl))
	deliverMany(t, c, 4)
	c.waitConverged(10 * time.Second)
	// Delete a message n3 holds a copy of while n3 is away.
	var victim string
	for _, e := range c.nodes["n1"].Catalog().List(alice) {
		if e.HasLocation("n3") {
			victim = e.ID
			break
		}
	}
	require.NotEmpty(t, victim, "n3 holds some copy")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.nodes["n3"].Shutdown(ctx))
	stopped := time.Now()
	delete(c.nodes, "n3")
	require.NoError(t, c.nodes["n1"].deleteMessages(ctx, []string{victim}))
	require.Eventually(t, func() bool {
		return len(holdsAny(c.nodes["n1"], []string{victim})) == 0 && len(holdsAny(c.nodes["n2"], []string{victim})) == 0 &&
			time.Since(stopped) > ttl
	}, 20*time.Second, 20*time.Millisecond, "the others collect the tombstone; n3 stays away longer than the TTL")

	// Refused, with an error naming the fix. A static membership: a node
	// that does not start must not appear to the others.
	cfg := c.config("n3")
	c.mutate(&cfg)
	_, err := New(cfg, &Env{Net: &env.RealNet{}, Rand: env.NewRand(99), Membership: staticSelf("n3"), DataDir: cfg.DataDir, Log: testLogger(t)})
	require.ErrorIs(t, err, ErrAwayTooLong)
	assert.Contains(t, err.Error(), "--resync-catalog")

	// With the resync option it starts and brings nothing back.
	mutate := c.mutate
	c.mutate = func(cfg *Config) { mutate(cfg); cfg.ResyncCatalog = true }
	n3 := c.start("n3")
	c.mutate = mutate
	c.waitConverged(20 * time.Second)
	require.Eventually(t, func() bool {
		return len(holdsAny(n3, []string{victim})) == 0
	}, 20*time.Second, 20*time.Millisecond, "n3 drops its copy of the message deleted while it was away")
	c.staysGone([]string{victim}, 5)
	for name, n := range c.nodes {
		got := n.Catalog().List(alice)
		assert.Len(t, got, 3, "the other messages, via %s", name)
	}
	assertMailbox(t, n3, readAllBodies(t, c.nodes["n1"]))
}

// readAllBodies is what a mailbox shows through n, keyed as assertMailbox
// wants.
func readAllBodies(t *testing.T, n *Node) map[string][]byte {
	out := map[string][]byte{}
	for _, b := range readAll(t, n.Addr("pop3"), alice, "secret") {
		bb := body(t, b)
		out[string(bb)] = bb
	}
	return out
}

// --resync-catalog takes the catalog from a member that has it. Were every
// node resynced at once there would be none: the nodes must then keep
// their copies (no entry lists them, and they are older than the horizon)
// rather than take them for orphans.
func TestResyncEveryNodeKeepsCopies(t *testing.T) {
	c := newClusterWith(t, 2, 2, 2, shortTombstones(300*time.Millisecond))
	deliverMany(t, c, 3)
	c.waitConverged(10 * time.Second)
	newest := c.nodes["n1"].Catalog().List(alice)[2].ID
	require.Eventually(t, func() bool {
		for _, n := range c.nodes {
			if !n.repl.OrphanBelowHorizonIfComplete(newest) {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "the horizon passes every message's time")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{"n1", "n2"} {
		require.NoError(t, c.nodes[name].Shutdown(ctx))
		delete(c.nodes, name)
	}
	mutate := c.mutate
	c.mutate = func(cfg *Config) { mutate(cfg); cfg.ResyncCatalog = true }
	c.start("n1")
	c.start("n2")
	c.mutate = mutate
	from := c.aeRoundsNow()
	require.Eventually(t, func() bool {
		for name, n := range c.nodes {
			if n.repl.Stats().AntiEntropyRounds < from[name]+5 {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "anti-entropy rounds run")
	for name, n := range c.nodes {
		n.repl.CleanOrphans(context.Background()) // as the maintenance loop does
		assert.Empty(t, n.Catalog().List(alice), "%s: the catalog is gone", name)
		assert.False(t, n.Catalog().Complete(), "%s: no member had the catalog", name)
		st, err := n.Store().Stats()
		require.NoError(t, err)
		assert.Equal(t, 3, st.Copies, "%s keeps its copies", name)
	}
}

// A peer that proposes a tombstone horizon far ahead of this node's clock
// (a wrong clock, or a hostile peer) is refused: adopted, it would make
// the catalog drop every entry stamped before it, new mail included.
func TestFarFutureHorizonRefused(t *testing.T) {
	c := newClusterWith(t, 3, 2, 2, shortTombstones(300*time.Millisecond))
	n1 := c.nodes["n1"]
	far := uint64(time.Now().Add(10 * 365 * 24 * time.Hour).UnixNano())
	peerHandler{n1}.ExchangeHorizon(peer.Horizon{From: "n2", Horizon: far})
	assert.Less(t, n1.Catalog().Horizon(), far, "the far-future horizon was adopted")
	assert.LessOrEqual(t, n1.Catalog().Horizon(), n1.Catalog().HorizonLimit(300*time.Millisecond))
	assert.EqualValues(t, 1, n1.repl.HorizonRefused())

	// Mail still lands in n1's catalog and stays readable.
	deliverMany(t, c, 3)
	c.waitConverged(10 * time.Second)
	assert.Len(t, n1.Catalog().List(alice), 3, "n1's catalog lists the new mail")
}
