package node

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"sync"

	"mailarray/node/catalog"
	"mailarray/node/env"
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
// id) loses its transactions to the holders' rules (replicate.go resolve).

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

// Answers of the abort request.
const (
	abortAborted   = "aborted"   // the transaction will never be acknowledged
	abortCommitted = "committed" // it was acknowledged (or committed)
	abortDeleted   = "deleted"   // the listener's catalog holds a tombstone
	abortUnknown   = "unknown"   // finished, its final entry not yet applied here: ask again later
)

// abortReply is the answer to POST /v1/abort/{id}.
type abortReply struct {
	State string `json:"state"`
	// Boot is the listener's boot id: a reply from another boot than the
	// entry's means the transaction died with the listener's previous life.
	Boot string `json:"boot"`
}

// bootString is the form of a boot id in membership tags and replies.
func bootString(b uint64) string { return fmt.Sprintf("%016x", b) }

// abortTx answers an abort request for entry id: aborted if its
// transaction was still writing (it will fail), committed if it was
// acknowledged. Never aborted for something acknowledged.
func (n *Node) abortTx(id string) abortReply {
	r := abortReply{Boot: bootString(n.boot)}
	if st, known := n.txs.abort(id); known {
		if st == txAcked {
			r.State = abortCommitted
		} else {
			r.State = abortAborted
		}
		return r
	}
	e, ok := n.cat.Get(id)
	switch {
	case ok && e.State == catalog.Committed:
		r.State = abortCommitted
	case ok && e.State == catalog.Deleted:
		r.State = abortDeleted
	default:
		r.State = abortUnknown
	}
	return r
}

func (p *peerService) handleAbort(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, p.n.abortTx(r.PathValue("id")))
}

// errNoAbortEndpoint: the peer runs a version without the abort protocol.
var errNoAbortEndpoint = errors.New("node: peer has no abort endpoint")

func (p *peerService) abort(ctx context.Context, node, id string) (abortReply, error) {
	var out abortReply
	code, b, err := p.call(ctx, http.MethodPost, node, "/v1/abort/"+url.PathEscape(id), nil, nil)
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		return out, fmt.Errorf("%w: %s", errNoAbortEndpoint, node)
	}
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("node: peer %s abort %s: %w", node, id, err)
	}
	return out, nil
}

// originVerdict is what a pending entry's listener says about it.
type originVerdict int

const (
	originGone      originVerdict = iota // gone or restarted: the holders decide by their rules
	originAborted                        // aborted (or deleted) by its listener: delete
	originCommitted                      // acknowledged: commit if W copies are seen, else wait for the commit
	originWait                           // alive but unreachable or undecided: decide nothing yet
)

// askOrigin asks the listener of pending entry e whether its transaction
// may be dropped. A live listener of the entry's boot is asked to abort;
// one that is not a live member, or that restarted since (another boot
// id in membership or in its reply), is gone. Entries written by older
// versions (no origin) are treated as gone, as before.
func (r *replicator) askOrigin(ctx context.Context, e *catalog.Entry) originVerdict {
	if e.Origin == "" {
		return originGone
	}
	var rep abortReply
	if e.Origin == r.n.cfg.Name {
		if e.Boot != r.n.boot {
			return originGone // this node's previous life
		}
		rep = r.n.abortTx(e.ID)
	} else {
		m, ok := r.n.members.Get(e.Origin)
		if !ok || m.Status != env.StatusAlive {
			return originGone
		}
		if b := m.Tags[env.TagBoot]; b != "" && b != bootString(e.Boot) {
			return originGone
		}
		var err error
		rep, err = r.n.peer.abort(ctx, e.Origin, e.ID)
		switch {
		case errors.Is(err, errNoAbortEndpoint):
			return originGone
		case err != nil:
			r.n.log.Debug("node: listener of a pending message unreachable; waiting", "id", e.ID, "listener", e.Origin, "err", err)
			return originWait
		}
	}
	if rep.Boot != bootString(e.Boot) {
		return originGone
	}
	switch rep.State {
	case abortAborted, abortDeleted:
		return originAborted
	case abortCommitted:
		return originCommitted
	}
	return originWait
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
