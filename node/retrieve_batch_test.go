package node

// Bulk retrieval through the node (readbatch.go, retrieve.go, node/imap's
// FETCH read-ahead): remote copies in batches per holder, local copies in
// one store read per batch, a failing holder or a bad copy read from the
// other holder (and the bad one repaired), every reply in order.

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/fault"
	"mailarray/node/store"
)

// peerFetches counts the copy reads (fault.PeerFetch: one per copy batch
// and one per single copy) a node serves, and fails them while failing is
// on.
type peerFetches struct {
	served  atomic.Int64
	failing atomic.Bool
}

func (p *peerFetches) Fault(point fault.Point) error {
	if point != fault.PeerFetch {
		return nil
	}
	p.served.Add(1)
	if p.failing.Load() {
		return errTestFault
	}
	return nil
}

// bulkMessages is how many messages the bulk tests read: more than one
// read-ahead batch (popReadAhead, node/imap's fetchBatch) of each kind.
const bulkMessages = 80

// bulkCluster is a three-node array R=2 W=2 with IMAP, a fault hook on
// every node, and bulkMessages messages for alice. It returns the
// messages' bytes by id, as a holder's store has them.
func bulkCluster(t *testing.T) (*testCluster, map[string]*peerFetches, map[string][]byte) {
	hooks := map[string]*peerFetches{"n1": {}, "n2": {}, "n3": {}}
	c := newFaultCluster(t, 3, 2, 2, func(name string, e *Env) { e.Fault = hooks[name] },
		func(cfg *Config) { cfg.IMAPAddr = "127.0.0.1:0" })
	for i := range bulkMessages {
		_, err := send(t, c.nodes[fmt.Sprintf("n%d", i%3+1)].Addr("smtp"), []string{alice}, testMessage(fmt.Sprintf("bulk %d", i), 4500))
		require.NoError(t, err)
	}
	c.waitConverged(30 * time.Second)
	want := map[string][]byte{}
	for _, e := range c.nodes["n1"].Catalog().List(alice) {
		data, err := c.nodes[e.Locations[0]].Store().Get(e.ID)
		require.NoError(t, err)
		want[e.ID] = data
	}
	require.Len(t, want, bulkMessages)
	return c, hooks, want
}

// remoteFrom returns alice's entries n1 holds no copy of, by the holder
// n1's batches ask first (the first in placement order).
func remoteFrom(c *testCluster) map[string][]catalog.Entry {
	out := map[string][]catalog.Entry{}
	for _, e := range c.nodes["n1"].Catalog().List(alice) {
		if !e.HasLocation("n1") {
			out[e.Locations[0]] = append(out[e.Locations[0]], e)
		}
	}
	return out
}

// fetchAllByUID runs UID FETCH 1:* BODY.PEEK[] on node and returns the
// bodies by message id (through the node's UID map).
func fetchAllByUID(t *testing.T, nd *Node) map[string][]byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", nd.Addr("imap"), 5*time.Second)
	require.NoError(t, err)
	cl := imapclient.New(conn, nil)
	defer cl.Close()
	require.NoError(t, cl.Login(alice, "secret").Wait())
	_, err = cl.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	require.NoError(t, err)
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := cl.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	require.NoError(t, err)
	byUID := map[uint32]string{}
	for id, uid := range uidsOf(nd) {
		byUID[uid] = id
	}
	out := map[string][]byte{}
	for _, m := range msgs {
		out[byUID[uint32(m.UID)]] = m.FindBodySection(section)
	}
	return out
}

// TestIMAPFetchReadsRemoteCopiesInBatchesAndFallsBack: a FETCH 1:* on n1
// reads the copies n1 lacks in a few batches per holder, not one request
// each; when a holder fails its batches every message of them comes from
// the other holder; when one copy in a batch is bad, that one message is
// read from the other holder and the bad copy repaired. Every message
// arrives whole each time.
func TestIMAPFetchReadsRemoteCopiesInBatchesAndFallsBack(t *testing.T) {
	c, hooks, want := bulkCluster(t)
	remote := remoteFrom(c)
	require.NotEmpty(t, remote, "R=2 of 3: some messages have no copy on n1")

	t.Run("batches", func(t *testing.T) {
		before := map[string]int64{}
		for name, h := range hooks {
			before[name] = h.served.Load()
		}
		assert.Equal(t, want, fetchAllByUID(t, c.nodes["n1"]))
		for holder, es := range remote {
			served := hooks[holder].served.Load() - before[holder]
			// fetchBatch (32) remote messages per batch after a first
			// of 8, one request per holder each: far fewer requests
			// than messages.
			assert.LessOrEqual(t, served, int64((len(es)+31)/32+2), "copy reads served by %s for its %d messages", holder, len(es))
		}
	})

	t.Run("a holder fails its batches", func(t *testing.T) {
		var failing string
		for holder := range remote {
			failing = holder
			break
		}
		before := hooks[failing].served.Load()
		hooks[failing].failing.Store(true)
		defer hooks[failing].failing.Store(false)
		assert.Equal(t, want, fetchAllByUID(t, c.nodes["n1"]), "every message of %s's batches read from the other holder", failing)
		assert.Greater(t, hooks[failing].served.Load(), before, "%s was asked", failing)
	})

	t.Run("a bad copy in a batch", func(t *testing.T) {
		var bad catalog.Entry
		for _, es := range remote {
			bad = es[len(es)/2]
			break
		}
		holder := bad.Locations[0]
		require.NoError(t, c.nodes[holder].Store().Corrupt(bad.ID))
		assert.Equal(t, want, fetchAllByUID(t, c.nodes["n1"]), "the bad copy's message read from the other holder")
		require.Eventually(t, func() bool {
			data, err := c.nodes[holder].Store().Get(bad.ID)
			return err == nil && store.Checksum(data) == bad.Sum
		}, 10*time.Second, 5*time.Millisecond, "the bad copy on %s repaired from the good one", holder)
	})
}

// TestPOP3PipelinedRetrOfAMailboxSpreadOverTheArray: a client sends every
// RETR of an 80-message mailbox (a third without a copy on the node it
// reads from, one with a bad local copy) in one write, then QUIT, and gets
// every reply in order, each message whole: the read-ahead batches (local
// copies in one store read, remote ones per holder) answer in the order
// asked, and the bad copy is read from its other holder.
func TestPOP3PipelinedRetrOfAMailboxSpreadOverTheArray(t *testing.T) {
	c, _, want := bulkCluster(t)
	n1 := c.nodes["n1"]
	list := n1.Catalog().List(alice) // POP3's numbering: the catalog's order
	var badLocal string
	for _, e := range list[len(list)/2:] {
		if e.HasLocation("n1") {
			badLocal = e.ID
			break
		}
	}
	require.NotEmpty(t, badLocal)
	require.NoError(t, n1.Store().Corrupt(badLocal))

	conn, err := net.DialTimeout("tcp", n1.Addr("pop3"), 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	var cmds strings.Builder
	cmds.WriteString("USER alice@example.com\r\nPASS secret\r\n")
	for k := 1; k <= len(list); k++ {
		fmt.Fprintf(&cmds, "RETR %d\r\n", k)
	}
	cmds.WriteString("QUIT\r\n")
	var wg sync.WaitGroup
	wg.Add(1)
	var werr error
	go func() { // the replies may fill the socket before the commands are all sent
		defer wg.Done()
		_, werr = conn.Write([]byte(cmds.String()))
	}()

	r := bufio.NewReader(conn)
	line := func() string {
		l, err := r.ReadString('\n')
		require.NoError(t, err)
		return strings.TrimRight(l, "\r\n")
	}
	require.True(t, strings.HasPrefix(line(), "+OK"), "greeting")
	require.True(t, strings.HasPrefix(line(), "+OK"), "USER")
	require.True(t, strings.HasPrefix(line(), "+OK"), "PASS")
	for k, e := range list {
		require.Equal(t, fmt.Sprintf("+OK %d octets", e.Size), line(), "RETR %d", k+1)
		var msg strings.Builder
		for {
			l, err := r.ReadString('\n')
			require.NoError(t, err)
			if l == ".\r\n" {
				break
			}
			msg.WriteString(strings.TrimPrefix(l, ".")) // undo dot-stuffing
		}
		require.Equal(t, string(want[e.ID]), msg.String(), "RETR %d (%s) whole and in order", k+1, e.ID)
	}
	assert.True(t, strings.HasPrefix(line(), "+OK"), "QUIT")
	wg.Wait()
	require.NoError(t, werr)
}

// TestReadMessagesIntoReadsEveryCopyIntoTheSlab: a batch read of a
// mailbox spread over the array puts the remote copies, like the local
// ones, in the slab it is given (one buffer for the batch, no answer
// allocated per holder), each copy whole; given back the slab it
// returned, the next batch of the same size reuses it.
func TestReadMessagesIntoReadsEveryCopyIntoTheSlab(t *testing.T) {
	c, _, want := bulkCluster(t)
	n1 := c.nodes["n1"]
	entries := n1.Catalog().List(alice)[:40] // under maxKeptSlabBytes, with local and remote copies
	inside := func(b, slab []byte) bool {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(slab[:cap(slab)])))
		at := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		return at >= start && at+uintptr(len(b)) <= start+uintptr(cap(slab))
	}
	var remote int
	for _, e := range entries {
		if !e.HasLocation("n1") {
			remote++
		}
	}
	require.NotZero(t, remote, "some copies only n2 and n3 hold")
	require.Less(t, remote, len(entries), "some copies n1 holds")

	got, slab := n1.readMessagesInto(t.Context(), entries, nil)
	require.NotNil(t, slab, "the slab is kept for the next batch")
	for k, r := range got {
		require.NoError(t, r.err)
		assert.Equal(t, want[entries[k].ID], r.data, "message %d whole", k)
		assert.True(t, inside(r.data, slab), "message %d (local: %v) read into the slab", k, entries[k].HasLocation("n1"))
	}
	again, slab2 := n1.readMessagesInto(t.Context(), entries, slab)
	assert.Equal(t, unsafe.SliceData(slab[:1]), unsafe.SliceData(slab2[:1]), "the same slab, not a new one")
	for k, r := range again {
		require.NoError(t, r.err)
		assert.Equal(t, want[entries[k].ID], r.data, "message %d whole the second time", k)
	}
}
