package peer

import (
	"errors"
	"time"

	"mailarray/node/catalog"
)

// Handler is the node as the peer server sees it: one method per
// operation of the protocol (doc.go). The server decodes and checks each
// request, calls the method, and encodes its answer.
//
// Concurrency: every method is called concurrently from many connections
// (each HTTP request and each stream request runs in its own goroutine),
// for as long as the Server serves; implementations must be safe for
// concurrent use. A method must not keep a slice it is given past its
// return: the server reuses request buffers.
type Handler interface {
	// StoreCopy durably stores a copy sent by a peer with its pending
	// entry e (PUT /v1/copies/{id}, stream opPutCopy); data's checksum
	// has been checked against e.Sum. It returns an error wrapping
	// ErrCopyDeleted when e's id is final on this node (a tombstone): the
	// server answers 409 so that the copy does not count towards a
	// quorum; any other error is answered 507.
	StoreCopy(e catalog.Entry, data []byte) error
	// GetCopy returns the node's copy of id (GET /v1/copies/{id}, batch
	// reads): store.ErrNotFound and store.ErrCorrupt are answered as such.
	GetCopy(id string) ([]byte, error)
	// GetCopies calls fn with the copy of each of ids in turn, valid only
	// during fn (POST /v1/copy-batch, which copies each straight into its
	// answer): as GetCopy would return it, except that it need not verify
	// the bytes (the reader of a batch verifies every copy, and reads one
	// that fails with GET /v1/copies/{id}); fn returns false to read no
	// further. A non-nil error is the store's, not a copy's.
	GetCopies(ids []string, fn func(i int, data []byte, err error) bool) error
	// HasCopy reports whether the node holds a copy of id (HEAD).
	HasCopy(id string) bool
	// ApplyEntries merges pushed catalog entries (POST /v1/entries,
	// stream opPushEntries); an error is answered 500 "apply failed".
	ApplyEntries(entries []catalog.Entry) error
	// Entry returns the node's catalog entry of id (GET /v1/entries/{id}).
	Entry(id string) (catalog.Entry, bool)
	// ExchangeHorizon takes the caller's horizon and watermark (From is ""
	// for a caller that sent none) and returns this node's, taken after
	// (GET /v1/buckets, before BucketDigests).
	ExchangeHorizon(caller Horizon) Horizon
	// BucketDigests returns the anti-entropy digests of the catalog.
	BucketDigests() [catalog.Buckets]uint64
	// Bucket returns the entries of one bucket (GET /v1/buckets/{b});
	// b is in range.
	Bucket(b int) []catalog.Entry
	// Lock takes or renews mailbox's lease for owner (POST
	// /v1/locks/{mailbox}): false if another owner holds it.
	Lock(mailbox, owner string, ttl time.Duration) bool
	// Unlock releases owner's lease of mailbox (DELETE).
	Unlock(mailbox, owner string)
	// UIDsAbove returns mailbox's highest IMAP UID and its entries with a
	// UID above since (GET /v1/uids/{mailbox}).
	UIDsAbove(mailbox string, since uint32) (uint32, []catalog.Entry)
	// Abort answers a holder's abort request for the transaction of
	// pending entry id (POST /v1/abort/{id}).
	Abort(id string) AbortReply
	// Load, Mirror and Status return the node's load report, mirroring
	// table and status, each a value encoded as JSON (GET /v1/load,
	// /v1/mirror, /v1/status).
	Load() any
	Mirror() any
	Status() any
	// Rebalance starts moving copies to their current placement (POST
	// /v1/rebalance) and returns at once.
	Rebalance()
	// Drain starts draining the node before it leaves the array (start,
	// POST /v1/drain) or reports the drain's progress (GET /v1/drain):
	// a value encoded as JSON. An error wrapping ErrDrainRefused is
	// answered 409, any other 500.
	Drain(start bool) (any, error)
}

// ErrDrainRefused is returned by Client.Drain (and by a Handler's Drain)
// when the node refuses to drain: the rest of the array could not hold R
// copies of every message.
var ErrDrainRefused = errors.New("peer: drain refused")

// ErrCopyDeleted is returned by Client.PutCopy (and by a Handler's
// StoreCopy) when the receiving node holds the copy's entry as a
// tombstone: the id is final there and no copy may be counted for it.
var ErrCopyDeleted = errors.New("peer: copy refused: entry deleted")

// ErrUnreachable is returned by every Client call to a node the Resolver
// has no address for (not a live member, or no peer listener).
var ErrUnreachable = errors.New("peer: unreachable")

// ErrNoAbortEndpoint is returned by Client.Abort when the peer runs a
// version without the abort protocol.
var ErrNoAbortEndpoint = errors.New("peer: no abort endpoint")

// Answers of the abort request (AbortReply.State).
const (
	AbortAborted   = "aborted"   // the transaction will never be acknowledged
	AbortCommitted = "committed" // it was acknowledged (or committed)
	AbortDeleted   = "deleted"   // the listener's catalog holds a tombstone
	AbortUnknown   = "unknown"   // finished, its final entry not yet applied here: ask again later
)

// AbortReply is the answer to POST /v1/abort/{id} (JSON).
type AbortReply struct {
	State string `json:"state"`
	// Boot is the listener's boot id: a reply from another boot than the
	// entry's means the transaction died with the listener's previous life.
	Boot string `json:"boot"`
}

// Horizon is what two replicas trade at the start of an anti-entropy
// round (GET /v1/buckets headers): the caller sends its name, horizon,
// watermark and whether its catalog is complete; the answer carries the
// callee's. A peer that sends none counts as having no watermark, which
// stops tombstone collection (safe).
type Horizon struct {
	// From is the caller's name; "" in answers and from older peers.
	From string
	// Horizon is the sender's tombstone horizon (catalog clock).
	Horizon uint64
	// Mark is the sender's advertised watermark; 0: none.
	Mark uint64
	// Complete: the sender's catalog is complete (catalog.Complete).
	Complete bool
}
