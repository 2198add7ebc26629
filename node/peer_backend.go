package node

// The node as its peer protocol (node/peer) sees it: peerHandler answers
// the peers' requests from the store, the catalog, the lock table, the
// listener's transactions (txn.go) and the replicator; the node reaches
// its peers through n.peer, a *peer.Client.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/fault"
	"mailarray/node/peer"
)

// peerTimeout bounds the node's own contexts for peer work.
const peerTimeout = peer.RequestTimeout

// peerHandler is the node seen by its peer server.
type peerHandler struct{ n *Node }

var _ peer.Handler = peerHandler{}

// startPeer makes the peer client and, with a peer address, serves the
// protocol on it.
func (n *Node) startPeer() error {
	pcfg := peer.Config{
		Name:         n.conf().Name,
		Resolver:     n.members,
		Dial:         n.env.Net.DialContext,
		Key:          n.conf().PeerKey,
		MaxLockTTL:   lockTTL,
		MaxCopyBytes: n.conf().MaxMessageBytes + 1<<20,
		Log:          n.log,
		ChargeCPU:    n.env.ChargeCPU,
		Inject:       n.env.Inject,
	}
	if n.conf().PeerCA != "" {
		t, err := peer.LoadTLS(n.conf().PeerCA, n.conf().PeerCert, n.conf().PeerCertKey)
		if err != nil {
			return err
		}
		pcfg.TLS = t
		// Rotated certificates are taken without a restart.
		n.goLoop(func(ctx context.Context) { t.Watch(ctx, n.conf().UsersReload, n.log) })
	}
	c, err := peer.NewClient(pcfg)
	if err != nil {
		return err
	}
	n.peer = c
	if n.conf().PeerAddr == "" {
		return nil
	}
	n.warnPeerAuth()
	l, err := n.listen("peer", n.conf().PeerAddr)
	if err != nil {
		return err
	}
	srv := peer.NewServer(pcfg, peerHandler{n})
	n.peerSrv = srv
	n.serve("peer", func() error { return srv.Serve(l) })
	return nil
}

// closePeer follows the teardown order that leaves no goroutine behind:
// the client's streams and idle connections first, then the server.
func (n *Node) closePeer() {
	if n.peer != nil {
		n.peer.Close()
	}
	if n.peerSrv != nil {
		n.peerSrv.Close()
	}
}

// streamCounts returns how many streams this node has open to its peers
// and from them, and to how many peers it speaks HTTP because they
// refused the stream (for metrics).
func (n *Node) streamCounts() (out, in, http int) {
	out, http = n.peer.StreamCounts()
	if n.peerSrv != nil {
		in = n.peerSrv.Streams()
	}
	return out, in, http
}

func (h peerHandler) StoreCopy(e catalog.Entry, data []byte) error {
	// A peer's pending entry bypasses Apply: bound its version here, or
	// it would reach the catalog unchecked (catalog.MaxAhead).
	if err := h.n.cat.CheckVersion(&e); err != nil {
		h.n.log.Warn("peer: copy refused: its entry is stamped too far in the future; is the sender's clock wrong?", "origin", e.Origin, "err", err)
		return err
	}
	// writeLocal refuses a tombstoned id with errCopyDeleted, which is
	// peer.ErrCopyDeleted (deliver.go). A draining node takes no copies:
	// the sender, which has not heard yet, falls back to another node.
	return h.n.drain.admitCopy(func() error { return h.n.writeLocal(context.Background(), data, e) })
}

func (h peerHandler) GetCopy(id string) ([]byte, error) { return h.n.store.Get(id) }

// GetCopies answers a copy batch without hashing the copies: the reader
// hashes every copy it gets against its catalog entry (readMessagesInto),
// and reads one that fails from the holders one by one (GetCopy, which
// verifies, so a bad copy here is answered 409 and repaired). Hashing on
// both nodes cost the holder a SHA-256 of every copy it sent, a quarter
// of its CPU in a FETCH 1:* (docs/performance.md, "Retrieval").
func (h peerHandler) GetCopies(ids []string, fn func(i int, data []byte, err error) bool) error {
	return h.n.store.UncheckedCopies(ids, fn)
}

func (h peerHandler) HasCopy(id string) bool { return h.n.store.Has(id) }

func (h peerHandler) ApplyEntries(entries []catalog.Entry) error {
	// A node whose catalog refuses merges from its peers (catalog.apply,
	// inside Apply, fails merges of every origin).
	if err := h.n.env.Inject(fault.PeerApply, h.n.conf().Name); err != nil {
		return err
	}
	_, err := h.n.cat.Apply(entries...)
	return err
}

func (h peerHandler) Entry(id string) (catalog.Entry, bool) { return h.n.cat.Get(id) }

func (h peerHandler) ExchangeHorizon(caller peer.Horizon) peer.Horizon {
	if caller.From != "" {
		h.n.repl.Adopt(caller.From, caller)
	}
	return h.n.repl.HorizonInfo()
}

func (h peerHandler) BucketDigests() [catalog.Buckets]uint64 { return h.n.cat.BucketDigests() }

func (h peerHandler) Bucket(b int) []catalog.Entry { return h.n.cat.Bucket(b) }

func (h peerHandler) Lock(mailbox, owner string, ttl time.Duration) bool {
	return h.n.locks.acquire(mailbox, owner, ttl)
}

func (h peerHandler) Unlock(mailbox, owner string) { h.n.locks.release(mailbox, owner) }

func (h peerHandler) UIDsAbove(mailbox string, since uint32) (uint32, []catalog.Entry) {
	return h.n.uidsAbove(mailbox, since)
}

func (h peerHandler) Abort(id string) peer.AbortReply { return h.n.abortTx(id) }

func (h peerHandler) Load() any   { return h.n.Load() }
func (h peerHandler) Mirror() any { return h.n.members.Table() }
func (h peerHandler) Status() any { return h.n.Status() }
func (h peerHandler) Rebalance()  { h.n.repl.TriggerRebalance() }

func (h peerHandler) Drain(start bool) (any, error) {
	st, err := h.n.Drain(start)
	if errors.Is(err, ErrDrainRefused) {
		err = fmt.Errorf("%w: %w", peer.ErrDrainRefused, err)
	}
	return st, err
}
