package node

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sync"

	"mailarray/node/catalog"
	"mailarray/node/peer"
)

// A listener's transactions and the abort protocol (issue 16, bug 1).
//
// The copies of a transaction are written pending; its listener answers
// 250 once W are durable and commits them afterwards. A holder that sees
// a pending entry outlive Tuning.PendingTimeout must not decide for a
// listener that is still working on it: a slow local disk once let a
// holder delete a transaction that its listener then acknowledged.
// So the holder asks the listener to abort (POST /v1/abort/{id}); the
// listener answers under the same lock it takes before its 250, so a
// transaction is either acknowledged or aborted, never both. Only a
// listener that is gone (not a live member) or restarted (another boot
// id) loses its transactions to the holders' rules (node/replica pending.go resolve).

// txState is where a transaction in flight stands on its listener.
type txState uint8

const (
	txWriting txState = iota // copies being written; may still be aborted
	txAcked                  // W copies durable and the 250 allowed: never aborted
	txAborted                // a holder's pending resolution won: never acknowledged
)

// txn is one SMTP transaction in flight on this listener.
type txn struct {
	ids   []string // its entries' ids (one per recipient)
	state txState  // guarded by txTable.mu
}

// txTable holds the listener's transactions in flight, by entry id. Safe
// for concurrent use.
type txTable struct {
	mu   sync.Mutex
	byID map[string]*txn
}

func newTxTable() *txTable { return &txTable{byID: map[string]*txn{}} }

// begin registers a transaction before any of its copies is sent: a holder
// can only ask about an entry once it holds it.
func (t *txTable) begin(ids []string) *txn {
	x := &txn{ids: ids}
	t.mu.Lock()
	for _, id := range ids {
		t.byID[id] = x
	}
	t.mu.Unlock()
	return x
}

// ack allows the 250: false if the transaction was aborted, or if final
// reports that this node's catalog already holds a tombstone for one of
// its entries (a holder resolved it while this node wrote). Called under
// the lock abort takes, so the two exclude each other.
func (t *txTable) ack(x *txn, deleted func(id string) bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if x.state == txAborted {
		return false
	}
	for _, id := range x.ids {
		if deleted(id) {
			x.state = txAborted
			return false
		}
	}
	x.state = txAcked
	return true
}

// end forgets a finished transaction, once its final entries are queued
// for commit: from then on this node's catalog answers for it.
func (t *txTable) end(x *txn) {
	t.mu.Lock()
	for _, id := range x.ids {
		if t.byID[id] == x {
			delete(t.byID, id)
		}
	}
	t.mu.Unlock()
}

// abort aborts the transaction of entry id if it is still writing, and
// returns its state; known is false if no transaction in flight has it.
func (t *txTable) abort(id string) (state txState, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	x, ok := t.byID[id]
	if !ok {
		return 0, false
	}
	if x.state == txWriting {
		x.state = txAborted
	}
	return x.state, true
}

// bootString is the form of a boot id in membership tags and replies.
func bootString(b uint64) string { return fmt.Sprintf("%016x", b) }

// abortTx answers an abort request for entry id: aborted if its
// transaction was still writing (it will fail), committed if it was
// acknowledged. Never aborted for something acknowledged.
func (n *Node) abortTx(id string) peer.AbortReply {
	r := peer.AbortReply{Boot: bootString(n.boot)}
	if st, known := n.txs.abort(id); known {
		if st == txAcked {
			r.State = peer.AbortCommitted
		} else {
			r.State = peer.AbortAborted
		}
		return r
	}
	e, ok := n.cat.Get(id)
	switch {
	case ok && e.State == catalog.Committed:
		r.State = peer.AbortCommitted
	case ok && e.State == catalog.Deleted:
		r.State = peer.AbortDeleted
	default:
		r.State = peer.AbortUnknown
	}
	return r
}

// newBootID returns this start's boot id: a hash of the node's name and
// the instant it starts. Two starts of one node never share an instant,
// and no random draw is taken from the node's stream, so the simulator's
// runs keep every other draw (and their reports) as they were.
func newBootID(name string, nowNano int64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(nowNano))
	h.Write(b[:])
	if v := h.Sum64(); v != 0 {
		return v
	}
	return 1 // 0 marks entries without an origin
}
