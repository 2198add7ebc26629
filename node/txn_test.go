package node

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/peer"
	"mailarray/node/replica"
)

func never(string) bool { return false }

// The abort request and the 250 exclude each other: an acknowledged
// transaction is never reported aborted, an aborted one never
// acknowledged.
func TestAbortAndAckExcludeEachOther(t *testing.T) {
	tests := []struct {
		name      string
		first     string // "ack" or "abort"
		wantAck   bool
		wantState txState
	}{
		{"abort before ack", "abort", false, txAborted},
		{"ack before abort", "ack", true, txAcked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			txs := newTxTable()
			x := txs.begin([]string{"t.0", "t.1"})
			var acked bool
			var st txState
			var known bool
			if tt.first == "abort" {
				st, known = txs.abort("t.1")
				acked = txs.ack(x, never)
			} else {
				acked = txs.ack(x, never)
				st, known = txs.abort("t.1")
			}
			assert.True(t, known)
			assert.Equal(t, tt.wantAck, acked, "ack")
			assert.Equal(t, tt.wantState, st, "state the abort request sees")
			txs.end(x)
			_, known = txs.abort("t.0")
			assert.False(t, known, "a finished transaction is answered from the catalog")
		})
	}

	// Raced: whichever wins, the two answers agree.
	for i := 0; i < 200; i++ {
		txs := newTxTable()
		x := txs.begin([]string{"r.0"})
		var wg sync.WaitGroup
		var acked bool
		var st txState
		wg.Add(2)
		go func() { defer wg.Done(); acked = txs.ack(x, never) }()
		go func() { defer wg.Done(); st, _ = txs.abort("r.0") }()
		wg.Wait()
		require.Equal(t, acked, st == txAcked, "ack %v, abort saw %v", acked, st)
	}

	// A tombstone in the listener's own catalog also forbids the 250.
	txs := newTxTable()
	x := txs.begin([]string{"d.0"})
	assert.False(t, txs.ack(x, func(id string) bool { return id == "d.0" }))
	st, _ := txs.abort("d.0")
	assert.Equal(t, txAborted, st)
}

// A finished transaction's abort is answered from the listener's catalog,
// and the answer carries the listener's boot id.
func TestAbortAnswersFromTheCatalog(t *testing.T) {
	c := newTestCluster(t, 2, 2, 2)
	n1 := c.nodes["n1"]
	put := func(id string, s catalog.State) {
		_, err := n1.Catalog().Apply(catalog.Entry{ID: id, Mailbox: "alice@example.com", State: s, Version: n1.Catalog().Now(), Locations: []string{"n1"}})
		require.NoError(t, err)
	}
	put("c.0", catalog.Committed)
	put("d.0", catalog.Deleted)
	put("p.0", catalog.Pending)
	for id, want := range map[string]string{"c.0": peer.AbortCommitted, "d.0": peer.AbortDeleted, "p.0": peer.AbortUnknown, "none.0": peer.AbortUnknown} {
		got, err := c.nodes["n2"].peer.Abort(context.Background(), "n1", id)
		require.NoError(t, err)
		assert.Equal(t, peer.AbortReply{State: want, Boot: bootString(n1.boot)}, got, id)
	}
}

// The resolver decides alone only for a listener that is gone or
// restarted; a live listener of the entry's boot is asked, and one that
// cannot say (no transaction in flight, nothing final) is waited for.
func TestAskOriginOnlyOverrulesAGoneListener(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	n1, n2 := c.nodes["n1"], c.nodes["n2"]
	e := catalog.Entry{ID: "q.0", Mailbox: "alice@example.com", State: catalog.Pending, Locations: []string{"n1", "n2"}, Origin: "n1", Boot: n1.boot}
	ctx := context.Background()
	assert.Equal(t, replica.OriginWait, n2.repl.AskOrigin(ctx, &e), "live listener, no answer yet")

	x := n1.txs.begin([]string{"q.0"})
	assert.Equal(t, replica.OriginAborted, n2.repl.AskOrigin(ctx, &e), "a transaction still writing is aborted")
	assert.False(t, n1.txs.ack(x, never), "and never acknowledged after")
	n1.txs.end(x)

	y := n1.txs.begin([]string{"q.1"})
	require.True(t, n1.txs.ack(y, never))
	e1 := e
	e1.ID = "q.1"
	assert.Equal(t, replica.OriginCommitted, n2.repl.AskOrigin(ctx, &e1), "an acknowledged transaction is never aborted")
	n1.txs.end(y)

	restarted := e
	restarted.Boot = n1.boot + 1
	assert.Equal(t, replica.OriginGone, n2.repl.AskOrigin(ctx, &restarted), "another boot: the transaction died with it")
	legacy := e
	legacy.Origin, legacy.Boot = "", 0
	assert.Equal(t, replica.OriginGone, n2.repl.AskOrigin(ctx, &legacy), "entries of older versions: the old rules")

	c.kill("n1")
	require.Eventually(t, func() bool { return !n2.members.Alive("n1") }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, replica.OriginGone, n2.repl.AskOrigin(ctx, &e), "a failed listener is gone")
}

// The writer of a copy treats a peer's refusal (409, over the stream and
// over HTTP) as errCopyDeleted: no fallback node takes the copy. Copies
// above 256 KiB go over HTTP (node/peer streamMaxCopy).
func TestPutCopyRefusalIsErrCopyDeleted(t *testing.T) {
	c := newTestCluster(t, 2, 2, 2)
	n1, n2 := c.nodes["n1"], c.nodes["n2"]
	for name, size := range map[string]int{"stream": 100, "http": 256<<10 + 1} {
		data := []byte(strings.Repeat("x", size))
		id := "gone-" + name + ".0"
		_, err := n2.Catalog().Apply(catalog.Entry{ID: id, Mailbox: "alice@example.com", State: catalog.Deleted, Version: n2.Catalog().Now()})
		require.NoError(t, err)
		e := catalog.Entry{ID: id, Mailbox: "alice@example.com", Size: int64(size), Sum: storeChecksum(data), State: catalog.Pending,
			Version: n1.Catalog().Now(), Locations: []string{"n1", "n2"}, Origin: "n1", Boot: n1.boot}
		err = n1.peer.PutCopy(context.Background(), "n2", data, &e)
		assert.ErrorIs(t, err, errCopyDeleted, name)
		assert.False(t, n2.Store().Has(id), name)
	}
}
