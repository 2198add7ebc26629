package node

// Cluster tests of IMAP: UID assignment across nodes (imap_uid.go) and the
// server through the node's adapter (imap_backend.go). Protocol-level
// tests, over an in-memory Backend, are in node/imap.

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	imapd "mailarray/node/imap"
	"mailarray/node/member"
	"mailarray/node/store"
)

const alice = "alice@example.com"

// newIMAPCluster is newTestCluster with an IMAP listener on every node.
func newIMAPCluster(t testing.TB, n, r, w int) *testCluster {
	return newClusterWith(t, n, r, w, func(cfg *Config) { cfg.IMAPAddr = "127.0.0.1:0" })
}

// newClusterWith is newTestCluster with mutate applied to every config.
func newClusterWith(t testing.TB, n, r, w int, mutate func(*Config)) *testCluster {
	c := &testCluster{t: t, group: member.NewGroup(), nodes: map[string]*Node{}, dirs: map[string]string{}, r: r, w: w, users: testUsers, mutate: mutate}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.Close()
		}
	})
	for i := 1; i <= n; i++ {
		c.start(fmt.Sprintf("n%d", i))
	}
	c.waitRing()
	return c
}

// deliverN sends k small messages to alice through node's SMTP listener and
// waits until every node's catalog agrees.
func (c *testCluster) deliverN(node string, k int, prefix string) [][]byte {
	c.t.Helper()
	var msgs [][]byte
	for i := range k {
		m := testMessage(fmt.Sprintf("%s %d", prefix, i), 600)
		_, err := send(c.t, c.nodes[node].Addr("smtp"), []string{alice}, m)
		require.NoError(c.t, err)
		msgs = append(msgs, m)
	}
	c.waitConverged(10 * time.Second)
	return msgs
}

// uidsOf returns id -> UID of alice's listed entries on node.
func uidsOf(n *Node) map[string]uint32 {
	out := map[string]uint32{}
	for _, e := range n.Catalog().List(alice) {
		out[e.ID] = e.UID
	}
	return out
}

func TestUIDAssignmentOrderAndStickiness(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	c.deliverN("n1", 3, "order")
	ctx := context.Background()
	require.NoError(t, c.nodes["n2"].assignUIDs(ctx, alice))

	list := c.nodes["n2"].Catalog().List(alice)
	slices.SortFunc(list, imapd.ByArrival)
	for i, e := range list {
		assert.Equal(t, uint32(i+1), e.UID, "UIDs follow (Received, ID) order: %s", e.ID)
	}
	want := uidsOf(c.nodes["n2"])
	for name, nd := range c.nodes {
		assert.Equal(t, want, uidsOf(nd), "%s has the assignment as soon as assignUIDs returns", name)
		assert.Equal(t, uint32(3), nd.Catalog().MaxUID(alice), name)
	}

	// A newer version written from a replica that never saw the UID (a
	// rebuild moving a copy, a flag change) must not erase it.
	stale := list[0]
	stale.UID = 0
	stale.Flags = []string{`\Flagged`}
	stale.Version = c.nodes["n3"].Catalog().Now()
	_, err := c.nodes["n3"].Catalog().Apply(stale)
	require.NoError(t, err)
	require.NoError(t, c.nodes["n3"].repl.BroadcastSync(ctx, []catalog.Entry{stale}))
	c.waitConverged(10 * time.Second)
	for name, nd := range c.nodes {
		got, _ := nd.Catalog().Get(stale.ID)
		assert.Equal(t, uint32(1), got.UID, "%s keeps the UID", name)
		assert.Equal(t, []string{`\Flagged`}, got.Flags, "%s has the newer version", name)
	}

	// More mail: the next assignment continues above the maximum, from
	// another node.
	c.deliverN("n3", 2, "later")
	require.NoError(t, c.nodes["n1"].assignUIDs(ctx, alice))
	got := uidsOf(c.nodes["n3"])
	for id, u := range want {
		assert.Equal(t, u, got[id], "an assigned UID never changes")
	}
	var fresh []uint32
	for id, u := range got {
		if _, old := want[id]; !old {
			fresh = append(fresh, u)
		}
	}
	slices.Sort(fresh)
	assert.Equal(t, []uint32{4, 5}, fresh)
}

func TestUIDConcurrentAssignersNeverDuplicate(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	ctx := context.Background()
	// Assigners on every node race each other while mail keeps arriving;
	// an observer records every UID it ever sees per message.
	seen := map[string]uint32{}
	var mu sync.Mutex
	var failures []string
	observe := func() {
		mu.Lock()
		defer mu.Unlock()
		for name, nd := range c.nodes {
			for id, u := range uidsOf(nd) {
				if u == 0 {
					continue
				}
				if prev, ok := seen[id]; ok && prev != u {
					failures = append(failures, fmt.Sprintf("%s: %s changed UID %d -> %d", name, id, prev, u))
				}
				seen[id] = u
			}
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, name := range []string{"n1", "n2", "n3"} {
		nd := c.nodes[name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := nd.assignUIDs(ctx, alice); err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				observe()
			}
		}()
	}
	for i := range 30 {
		_, err := send(t, c.nodes[fmt.Sprintf("n%d", i%3+1)].Addr("smtp"), []string{alice}, testMessage(fmt.Sprintf("race %d", i), 500))
		require.NoError(t, err)
	}
	close(stop)
	wg.Wait()
	c.waitConverged(10 * time.Second)
	require.NoError(t, c.nodes["n1"].assignUIDs(ctx, alice))
	observe()
	assert.Empty(t, failures)

	got := uidsOf(c.nodes["n1"])
	require.Len(t, got, 30)
	used := map[uint32]string{}
	for id, u := range got {
		require.NotZero(t, u, "%s has a UID", id)
		require.NotContains(t, used, u, "UID %d given to %s and %s", u, id, used[u])
		used[u] = id
	}
	for name, nd := range c.nodes {
		assert.Equal(t, got, uidsOf(nd), "%s agrees", name)
	}
}

func TestUIDAssignerLearnsAssignmentsItMissed(t *testing.T) {
	// No anti-entropy: n2 learns of n1's assignment only by asking.
	c := newClusterWith(t, 2, 2, 2, func(cfg *Config) { cfg.Tuning.AntiEntropyEvery = time.Hour })
	c.deliverN("n1", 2, "missed")
	ctx := context.Background()
	// n1 numbered the two messages (5 and 6: earlier ones were expunged),
	// but its push to n2 was lost.
	n1 := c.nodes["n1"]
	list := n1.Catalog().List(alice)
	slices.SortFunc(list, imapd.ByArrival)
	for i := range list {
		list[i].UID = uint32(i + 5)
		list[i].Version = n1.Catalog().Now()
	}
	_, err := n1.Catalog().Apply(list...)
	require.NoError(t, err)
	require.Equal(t, uint32(0), c.nodes["n2"].Catalog().MaxUID(alice))

	_, err = send(t, n1.Addr("smtp"), []string{alice}, testMessage("after", 500))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(c.nodes["n2"].Catalog().List(alice)) == 3 }, 10*time.Second, 10*time.Millisecond, "n2 has the commit")
	require.NoError(t, c.nodes["n2"].assignUIDs(ctx, alice))
	got := uidsOf(c.nodes["n2"])
	assert.Equal(t, uint32(5), got[list[0].ID], "n2 took n1's assignment, not a new number")
	assert.Equal(t, uint32(6), got[list[1].ID])
	var fresh []uint32
	for id, u := range got {
		if id != list[0].ID && id != list[1].ID {
			fresh = append(fresh, u)
		}
	}
	assert.Equal(t, []uint32{7}, fresh, "the new message is numbered above n1's maximum")
}

func TestUIDDuplicateFromPartitionIsRenumbered(t *testing.T) {
	c := newTestCluster(t, 2, 2, 2)
	c.deliverN("n1", 2, "dup")
	ctx := context.Background()
	// Both sides of a partition gave UID 1 to a different message.
	list := c.nodes["n1"].Catalog().List(alice)
	slices.SortFunc(list, imapd.ByArrival)
	for i := range list {
		list[i].UID = 1
		list[i].Version = c.nodes["n1"].Catalog().Now()
	}
	_, err := c.nodes["n1"].Catalog().Apply(list...)
	require.NoError(t, err)
	require.NoError(t, c.nodes["n1"].repl.BroadcastSync(ctx, list))
	require.True(t, imapd.NeedsUIDs(c.nodes["n2"].Catalog().List(alice)))

	require.NoError(t, c.nodes["n2"].assignUIDs(ctx, alice))
	got := uidsOf(c.nodes["n1"])
	assert.Equal(t, uint32(1), got[list[0].ID], "the first arrival keeps the UID")
	assert.Equal(t, uint32(2), got[list[1].ID], "the other gets a fresh one")
	assert.False(t, imapd.NeedsUIDs(c.nodes["n1"].Catalog().List(alice)))
}

func TestUIDAssignmentIgnoresPOP3Lock(t *testing.T) {
	c := newTestCluster(t, 2, 2, 2)
	c.deliverN("n1", 1, "locked")
	cl, err := popLogin(t, c.nodes["n1"].Addr("pop3"), alice, "secret")
	require.NoError(t, err)
	defer cl.Quit()
	require.NoError(t, c.nodes["n2"].assignUIDs(context.Background(), alice), "the POP3 session's lock is another lock")
	assert.False(t, imapd.NeedsUIDs(c.nodes["n2"].Catalog().List(alice)))
}

// --- protocol ---

// imapUpdates records a client's unilateral data.
type imapUpdates struct {
	mu       sync.Mutex
	exists   []uint32
	expunges []uint32
	flags    map[imap.UID][]imap.Flag
	wake     chan struct{}
}

func (u *imapUpdates) handler() *imapclient.UnilateralDataHandler {
	u.flags = map[imap.UID][]imap.Flag{}
	u.wake = make(chan struct{}, 100)
	poke := func() {
		select {
		case u.wake <- struct{}{}:
		default:
		}
	}
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			u.mu.Lock()
			u.expunges = append(u.expunges, seq)
			u.mu.Unlock()
			poke()
		},
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				u.mu.Lock()
				u.exists = append(u.exists, *d.NumMessages)
				u.mu.Unlock()
				poke()
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, err := m.Collect()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.flags[buf.UID] = buf.Flags
			u.mu.Unlock()
			poke()
		},
	}
}

// waitFor waits (on updates, not on time) until cond holds.
func (u *imapUpdates) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		u.mu.Lock()
		ok := cond()
		u.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-u.wake:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func imapDial(t testing.TB, addr string, u *imapUpdates) *imapclient.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	opts := &imapclient.Options{}
	if u != nil {
		opts.UnilateralDataHandler = u.handler()
	}
	cl := imapclient.New(conn, opts)
	t.Cleanup(func() { cl.Close() })
	require.NoError(t, cl.WaitGreeting())
	return cl
}

func fetchAll(t testing.TB, cl *imapclient.Client, items *imap.FetchOptions) []*imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := cl.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, items).Collect() // UID FETCH 1:*
	require.NoError(t, err)
	return msgs
}

func TestIMAPAcrossTheCluster(t *testing.T) {
	c := newIMAPCluster(t, 3, 2, 2)
	sent := c.deliverN("n1", 3, "imap")

	// n2: LOGIN, SELECT, UID FETCH of everything.
	a := imapDial(t, c.nodes["n2"].Addr("imap"), nil)
	require.NoError(t, a.Login(alice, "secret").Wait())
	sel, err := a.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	assert.Equal(t, uint32(3), sel.NumMessages)
	assert.Equal(t, imapd.UIDValidity(alice), sel.UIDValidity)
	assert.Equal(t, imap.UID(4), sel.UIDNext)
	peek := &imap.FetchItemBodySection{Peek: true}
	msgs := fetchAll(t, a, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{peek}})
	require.Len(t, msgs, 3)
	for i, m := range msgs {
		assert.Equal(t, imap.UID(i+1), m.UID)
		assert.Equal(t, uint32(i+1), m.SeqNum)
		got := m.FindBodySection(peek)
		assert.Equal(t, m.RFC822Size, int64(len(got)))
		assert.Equal(t, sent[i], body(t, got), "message %d, read on a node that may hold no copy", i)
		assert.Empty(t, m.Flags, "BODY.PEEK does not set \\Seen")
	}

	// n3: AUTHENTICATE PLAIN, EXAMINE: the same UIDs.
	updates := &imapUpdates{}
	b := imapDial(t, c.nodes["n3"].Addr("imap"), updates)
	require.NoError(t, b.Authenticate(sasl.NewPlainClient("", alice, "secret")))
	sel, err = b.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	require.NoError(t, err)
	assert.Equal(t, uint32(3), sel.NumMessages)
	msgs = fetchAll(t, b, &imap.FetchOptions{UID: true, Envelope: true})
	require.Len(t, msgs, 3)
	for i, m := range msgs {
		assert.Equal(t, imap.UID(i+1), m.UID)
		assert.Equal(t, fmt.Sprintf("imap %d", i), m.Envelope.Subject)
	}

	// Flags set on n2 reach n3's session as FETCH FLAGS.
	_, err = a.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Important"}}, nil).Collect()
	require.NoError(t, err)
	require.NoError(t, b.Noop().Wait())
	updates.waitFor(t, "FETCH FLAGS on n3", func() bool { return len(updates.flags[2]) == 2 })
	assert.ElementsMatch(t, []imap.Flag{imap.FlagFlagged, "$Important"}, updates.flags[2])
	for name, nd := range c.nodes {
		found := false
		for _, e := range nd.Catalog().List(alice) {
			if e.UID == 2 {
				found = slices.Equal(e.Flags, []string{"$Important", `\Flagged`})
			}
		}
		assert.True(t, found, "%s has the flags", name)
	}
	// STORE on a read-only session is refused.
	_, err = b.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect()
	assert.Error(t, err, "EXAMINE is read-only")

	// IDLE on n3 hears of new mail delivered through n1.
	idle, err := b.Idle()
	require.NoError(t, err)
	more := c.deliverN("n1", 1, "idle")
	updates.waitFor(t, "EXISTS 4 during IDLE", func() bool { return slices.Contains(updates.exists, 4) })
	require.NoError(t, idle.Close())
	require.NoError(t, idle.Wait())
	msgs, err = b.Fetch(imap.UIDSetNum(4), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{peek}}).Collect()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Equal(t, more[0], body(t, msgs[0].FindBodySection(peek)))

	// A non-peek FETCH sets \Seen, everywhere.
	msgs, err = a.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Contains(t, msgs[0].Flags, imap.FlagSeen)

	// \Deleted + EXPUNGE on n2 removes the message everywhere: n3's
	// session hears EXPUNGE 1 and POP3 on n1 no longer lists it.
	_, err = a.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	require.NoError(t, err)
	expunged, err := a.Expunge().Collect()
	require.NoError(t, err)
	assert.Equal(t, []uint32{1}, expunged)
	require.NoError(t, b.Noop().Wait())
	updates.waitFor(t, "EXPUNGE 1 on n3", func() bool { return slices.Contains(updates.expunges, 1) })
	for name, nd := range c.nodes {
		for _, e := range nd.Catalog().List(alice) {
			assert.NotEqual(t, uint32(1), e.UID, "%s still lists UID 1", name)
		}
	}
	got := readAll(t, c.nodes["n1"].Addr("pop3"), alice, "secret")
	assert.Len(t, got, 3, "POP3 sees the expunge")

	// A new session on n1 sees UIDs 2..4: stable and strictly increasing.
	d := imapDial(t, c.nodes["n1"].Addr("imap"), nil)
	require.NoError(t, d.Login(alice, "secret").Wait())
	_, err = d.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	var uids []imap.UID
	for _, m := range fetchAll(t, d, &imap.FetchOptions{UID: true}) {
		uids = append(uids, m.UID)
	}
	assert.Equal(t, []imap.UID{2, 3, 4}, uids)
	require.NoError(t, d.Logout().Wait())
}

func TestIMAPShutdownSaysBye(t *testing.T) {
	c := newIMAPCluster(t, 1, 1, 1)
	nd := c.nodes["n1"]
	cl := imapDial(t, nd.Addr("imap"), nil)
	require.NoError(t, cl.Login(alice, "secret").Wait())
	_, err := cl.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	idle, err := cl.Idle()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, nd.Shutdown(ctx))
	delete(c.nodes, "n1")
	select {
	case <-cl.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("the client's connection is still open after Shutdown")
	}
	idle.Close()
	assert.Zero(t, nd.imap.SessionCount(), "every session ended")
}

func TestReadMessagesBatchesAndFallsBack(t *testing.T) {
	// R=1: every copy is on n1 only, so n2 reads them all from n1.
	c := newTestCluster(t, 2, 1, 1)
	sent := c.deliverN("n1", 5, "batch")
	n2 := c.nodes["n2"]
	list := n2.Catalog().List(alice)
	slices.SortFunc(list, imapd.ByArrival)
	require.Len(t, list, 5)
	for _, e := range list {
		require.Equal(t, []string{"n1"}, e.Locations)
	}
	got := n2.readMessages(context.Background(), list)
	for i, r := range got {
		require.NoError(t, r.err)
		assert.Equal(t, sent[i], body(t, r.data), "message %d in one batch", i)
	}

	// A copy gone from its only holder: that message fails, the others
	// still come in the batch.
	require.NoError(t, c.nodes["n1"].Store().Write(&store.Batch{DeleteCopies: []string{list[2].ID}}))
	got = n2.readMessages(context.Background(), list)
	for i, r := range got {
		if i == 2 {
			assert.ErrorIs(t, r.err, errNoCopy)
			continue
		}
		assert.NoError(t, r.err, "message %d", i)
	}

	// POP3 on n2 reads ahead in batches; a RETR of the lost message fails
	// alone. POP3 numbers messages in id order, which is not always the
	// order of arrival (two acceptances in the same clock tick are
	// ordered by the ids' random part).
	sentByID := map[string][]byte{}
	for i, e := range list {
		sentByID[e.ID] = sent[i]
	}
	cl, err := popLogin(t, n2.Addr("pop3"), alice, "secret")
	require.NoError(t, err)
	defer cl.Quit()
	for k, e := range n2.Catalog().List(alice) {
		m, err := cl.Retr(k + 1)
		if e.ID == list[2].ID {
			assert.Error(t, err, "the lost copy")
			continue
		}
		require.NoError(t, err, "RETR %d", k+1)
		assert.Equal(t, sentByID[e.ID], body(t, m))
	}
}

func TestUIDAssignmentKeepsNewerLocations(t *testing.T) {
	// n2 moved a copy (a rebuild: a newer version with other locations)
	// and n1 has not heard of it yet when it numbers the message. The
	// assignment must not carry n1's older locations back to n2.
	c := newClusterWith(t, 2, 2, 2, func(cfg *Config) { cfg.Tuning.AntiEntropyEvery = time.Hour })
	c.deliverN("n1", 1, "moved")
	n1, n2 := c.nodes["n1"], c.nodes["n2"]
	moved := n2.Catalog().List(alice)[0]
	moved.Locations = []string{moved.Locations[1], moved.Locations[0]}
	moved.Version = n2.Catalog().Now()
	_, err := n2.Catalog().Apply(moved)
	require.NoError(t, err)

	ctx := context.Background()
	require.NoError(t, n1.assignUIDs(ctx, alice))
	got, _ := n2.Catalog().Get(moved.ID)
	assert.Equal(t, uint32(1), got.UID, "n2 has the UID")
	assert.Equal(t, moved.Locations, got.Locations, "n2 keeps the newer locations")
	assert.Equal(t, moved.Version, got.Version)

	require.NoError(t, n2.repl.BroadcastSync(ctx, []catalog.Entry{got}))
	mine, _ := n1.Catalog().Get(moved.ID)
	assert.Equal(t, got, mine, "both replicas end with the newer version and the UID")
	assert.Equal(t, n1.Catalog().Digest(), n2.Catalog().Digest())
}

// TestIMAPExpungeWaitsForPOP3: a POP3 session holds its mailbox
// exclusively (RFC 1939 section 8), so EXPUNGE on another node answers
// NO [INUSE] and removes nothing until it ends; then it expunges.
func TestIMAPExpungeWaitsForPOP3(t *testing.T) {
	c := newIMAPCluster(t, 2, 2, 2)
	c.deliverN("n1", 2, "inuse")
	cl := imapDial(t, c.nodes["n2"].Addr("imap"), nil)
	require.NoError(t, cl.Login(alice, "secret").Wait())
	_, err := cl.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	_, err = cl.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	require.NoError(t, err)

	pop, err := popLogin(t, c.nodes["n1"].Addr("pop3"), alice, "secret")
	require.NoError(t, err)
	_, err = cl.Expunge().Collect()
	var ierr *imap.Error
	require.ErrorAs(t, err, &ierr, "EXPUNGE while POP3 holds the mailbox")
	assert.Equal(t, imap.ResponseCodeInUse, ierr.Code)
	assert.Len(t, c.nodes["n1"].Catalog().List(alice), 2, "nothing removed from under the POP3 session")

	require.NoError(t, pop.Quit())
	expunged, err := cl.Expunge().Collect()
	require.NoError(t, err)
	assert.Equal(t, []uint32{1}, expunged)
	c.waitConverged(10 * time.Second)
	assert.Len(t, c.nodes["n1"].Catalog().List(alice), 1)
}
