package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/fault"
	"mailarray/node/mirror"
	"mailarray/node/peer"
	"mailarray/node/smtp"
	"mailarray/node/store"
)

// smtpBackend is the node seen by its SMTP listener.
type smtpBackend Node

var _ smtp.Backend = (*smtpBackend)(nil)

func (b *smtpBackend) NewID() string {
	n := (*Node)(b)
	return newTxID(n.env.Rand, n.env.Wall())
}

func (b *smtpBackend) CheckRecipient(ctx context.Context, addr string) error {
	n := (*Node)(b)
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return smtp.ErrUnknownMailbox
	}
	if !slices.Contains(n.conf().Domains, strings.ToLower(addr[at+1:])) {
		return smtp.ErrNotHosted
	}
	if err := n.knownRecipient(addr); err != nil {
		return err
	}
	if live := len(n.members.Table().Ring); live < n.conf().WriteQuorum {
		return fmt.Errorf("%w: %d live storage nodes, write quorum %d", smtp.ErrUnavailable, live, n.conf().WriteQuorum)
	}
	if n.drain.draining() {
		// Out of DNS answers already; a sender that kept the old answer
		// retries another MX (drain.go).
		return fmt.Errorf("%w: this node is draining (leaving the array)", smtp.ErrUnavailable)
	}
	return nil
}

func (b *smtpBackend) Deliver(ctx context.Context, m *smtp.Message) error {
	n := (*Node)(b)
	if err := n.env.Inject(fault.SMTPDeliver, n.conf().Name); err != nil {
		return err
	}
	n.env.ChargeCPU(len(m.Data))
	// One pipeline from filter to notice, even if a reload swaps it.
	in, release := n.useInbound()
	defer release()
	res, err := n.filter(ctx, in, m)
	if err != nil {
		return err
	}
	data := res.Data
	now := n.env.Wall().UnixNano()
	sum := store.Checksum(data)
	entries := make([]catalog.Entry, len(m.To))
	for i, rcpt := range m.To {
		mb, ok := n.dir.Lookup(rcpt)
		if !ok {
			return smtp.ErrUnknownMailbox // removed from the directory since RCPT
		}
		box := mb.Address
		if res.Quarantine {
			box = quarantinePrefix + box
		}
		entries[i] = catalog.Entry{
			ID:       copyID(m.ID, i),
			Mailbox:  box,
			Size:     int64(len(data)),
			Received: now,
			Sum:      sum,
			Trace:    res.Trace,
		}
	}
	t0 := time.Now()
	err = n.storeMessage(ctx, data, entries)
	n.loads.observe(time.Since(t0)) // the latency Load reports
	if err != nil {
		return err
	}
	if res.Quarantine {
		n.log.Warn("node: message quarantined", "id", m.ID, "rcpts", m.To, "trace", res.Trace)
	}
	n.notify(m, data, entries)
	return nil
}

// storeMessage writes data for every entry on R nodes and returns nil only
// once each entry's copy and catalog entry are durable on W of them.
//
// The copies are written Pending, invisible to readers. Once W are durable
// the caller may answer 250: the commit that makes the entries visible is
// applied and pushed asynchronously (batched), off the critical path. If
// this node dies between the two, the holders find the pending entries
// after Tuning.PendingTimeout and commit them themselves, since W copies
// exist (resolvePending), so an acknowledged message is never lost. If
// fewer than W copies landed, the entries are deleted and the caller gets
// an error wrapping smtp.ErrUnavailable.
//
// A lone copy on this node (R = W = 1) is written committed at once.
func (n *Node) storeMessage(ctx context.Context, data []byte, entries []catalog.Entry) error {
	defer func(t0 time.Time) { n.metrics.storeLatency.Observe(time.Since(t0).Seconds()) }(time.Now())
	table := n.members.Table()
	local := true
	for i := range entries {
		locs := n.place(table, &entries[i], data)
		if len(locs) < n.conf().WriteQuorum {
			return fmt.Errorf("%w: %d storage nodes for write quorum %d", smtp.ErrUnavailable, len(locs), n.conf().WriteQuorum)
		}
		entries[i].Locations = locs
		entries[i].State = catalog.Pending
		entries[i].Version = n.cat.Now()
		// The holders ask this listener, of this boot, before they resolve
		// the entry (txn.go).
		entries[i].Origin, entries[i].Boot = n.conf().Name, n.boot
		local = local && len(locs) == 1 && locs[0] == n.conf().Name
	}
	if local {
		b := &store.Batch{}
		for i := range entries {
			entries[i].State = catalog.Committed
			entries[i].Origin, entries[i].Boot = "", 0
			b.PutCopies = append(b.PutCopies, store.Copy{ID: entries[i].ID, Data: data, Sum: entries[i].Sum})
		}
		if err := n.env.Inject(fault.StoreWrite, n.conf().Name); err != nil {
			return err
		}
		b.PutRecords = n.cat.Records(entries...)
		if err := n.store.WriteContext(ctx, b); err != nil {
			if ctx.Err() != nil {
				// The abandoned write may still land, committed: a
				// tombstone queued behind it keeps the refused message
				// invisible (invariant 4).
				n.repl.Commit(deletedVersions(n.cat, entries))
			}
			return fmt.Errorf("node: store: %w", err)
		}
		n.cat.Installed(entries...)
		return nil
	}
	// Each entry's R copies are written in parallel; a copy that cannot be
	// written (a node that died but is not yet declared failed) moves to
	// the next ring member not yet holding one, so the array stays
	// available during the failure-detection window.
	ids := make([]string, len(entries))
	for i := range entries {
		ids[i] = entries[i].ID
	}
	tx := n.txs.begin(ids)
	defer n.txs.end(tx) // after the final entries are queued: the catalog answers from then on
	ok := make([][]string, len(entries))
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	write := func(i int, loc string, e catalog.Entry, fb *fallbacks) {
		defer wg.Done()
		for {
			cctx, cancel := context.WithTimeout(ctx, copyTimeout)
			err := n.writeCopy(cctx, loc, data, &e)
			cancel()
			mu.Lock()
			if err == nil {
				ok[i] = append(ok[i], loc)
				mu.Unlock()
				return
			}
			errs = append(errs, err)
			mu.Unlock()
			n.log.Warn("node: copy not stored", "id", e.ID, "on", loc, "err", err)
			if errors.Is(err, errCopyDeleted) {
				return // resolved away meanwhile: no other node may take the copy
			}
			if loc = fb.next(); loc == "" || ctx.Err() != nil {
				return
			}
		}
	}
	type localCopy struct {
		i  int
		fb *fallbacks
	}
	var locals []localCopy
	for i := range entries {
		fb := &fallbacks{}
		for _, c := range table.Ring {
			if !slices.Contains(entries[i].Locations, c) {
				fb.nodes = append(fb.nodes, c)
			}
		}
		for _, loc := range entries[i].Locations {
			wg.Add(1)
			if loc == n.conf().Name {
				locals = append(locals, localCopy{i, fb})
				continue
			}
			go write(i, loc, entries[i], fb)
		}
	}
	// This node's own copies are written here, while the remote ones are
	// on their way: a goroutine less per message.
	for _, l := range locals {
		write(l.i, n.conf().Name, entries[l.i], l.fb)
	}
	wg.Wait()
	failed := false
	for i := range entries {
		if len(ok[i]) < n.conf().WriteQuorum {
			failed = true
		}
	}
	// The copies are durable, but a holder may have resolved the pending
	// entries meanwhile (this node was slower than Tuning.PendingTimeout).
	// The 250 is allowed only under the lock the abort request takes.
	if !failed && !n.txs.ack(tx, n.deletedHere) {
		failed = true
		errs = append(errs, errTxAborted)
	}
	final := make([]catalog.Entry, len(entries))
	for i, e := range entries {
		e.Version = n.cat.Now()
		e.Origin, e.Boot = "", 0 // final: nobody asks the listener any more
		if failed {
			// All or nothing: one recipient short of quorum fails the
			// transaction, so none of its copies may become visible.
			e.State = catalog.Deleted
		} else {
			e.State = catalog.Committed
			// Placement order (primary first) for the copies that landed,
			// then the fallbacks that took the place of failed ones.
			locs := slices.DeleteFunc(slices.Clone(e.Locations), func(l string) bool { return !slices.Contains(ok[i], l) })
			for _, l := range ok[i] {
				if !slices.Contains(locs, l) {
					locs = append(locs, l)
				}
			}
			e.Locations = locs
		}
		final[i] = e
	}
	n.repl.Commit(final)
	if failed {
		return fmt.Errorf("%w: %v", smtp.ErrUnavailable, errors.Join(errs...))
	}
	return nil
}

// copyTimeout bounds writing one copy: a peer that died without a reset
// (its connection still pooled) must not stall the transaction for long.
const copyTimeout = 3 * time.Second

// fallbacks hands out replacement nodes for copies that failed.
type fallbacks struct {
	mu    sync.Mutex
	nodes []string
}

func (f *fallbacks) next() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.nodes) == 0 {
		return ""
	}
	n := f.nodes[0]
	f.nodes = f.nodes[1:]
	return n
}

// place chooses where the copies of e (whose message is data) go: R
// distinct live storage nodes, primary first, by the configured placement
// strategy (balance.go). The default, local, is this node if it stores,
// and its mirrors from the mirroring table.
func (n *Node) place(t mirror.Table, e *catalog.Entry, data []byte) []string {
	return n.bal.placement(t, e, n.bal.urgent(data))
}

// writeCopy stores one copy with its pending entry on node.
func (n *Node) writeCopy(ctx context.Context, node string, data []byte, e *catalog.Entry) error {
	if node == n.conf().Name {
		return n.writeLocal(ctx, data, *e)
	}
	if err := n.env.Inject(fault.MirrorSend, n.conf().Name); err != nil {
		return err
	}
	return n.peer.PutCopy(ctx, node, data, e)
}

// Errors of the delivery path.
var (
	// errCopyDeleted: writeLocal, and a peer's copy PUT (409), refuse a
	// copy whose entry this node already holds as a tombstone. The
	// transaction lost it to pending resolution: the copy must not count
	// towards its quorum, nor move to a fallback node. The peer protocol's
	// sentinel, so that the server answers it 409 and the client returns it.
	errCopyDeleted = peer.ErrCopyDeleted
	// errTxAborted: a holder's pending resolution aborted the transaction
	// before its 250 (txn.go).
	errTxAborted = errors.New("node: transaction aborted by pending resolution")
)

// deletedHere reports whether this node's catalog holds id as a tombstone.
func (n *Node) deletedHere(id string) bool {
	e, ok := n.cat.Get(id)
	return ok && e.State == catalog.Deleted
}

// deletedVersions returns entries as new tombstone versions.
func deletedVersions(c *catalog.Catalog, entries []catalog.Entry) []catalog.Entry {
	out := make([]catalog.Entry, len(entries))
	for i, e := range entries {
		e.State, e.Version, e.Origin, e.Boot = catalog.Deleted, c.Now(), "", 0
		out[i] = e
	}
	return out
}

// writeLocal stores a copy and its entry in one durable batch. It returns
// when ctx ends even if the disk has not answered (the write may land
// later: the caller fails the copy, and a failed transaction's entries are
// committed deleted), and refuses with errCopyDeleted an id this node's
// catalog holds as a tombstone.
func (n *Node) writeLocal(ctx context.Context, data []byte, e catalog.Entry) error {
	if n.deletedHere(e.ID) {
		return errCopyDeleted
	}
	if err := n.env.Inject(fault.StoreWrite, n.conf().Name); err != nil {
		return err
	}
	err := n.store.WriteContext(ctx, &store.Batch{
		// Both callers hold data whose checksum is e.Sum: Deliver computed
		// it, handlePutCopy verified it.
		PutCopies:  []store.Copy{{ID: e.ID, Data: data, Sum: e.Sum}},
		PutRecords: n.cat.Records(e),
	})
	if err != nil {
		return err
	}
	n.cat.Installed(e)
	if e.State != catalog.Deleted && n.deletedHere(e.ID) {
		// The tombstone won the merge: the copy is an orphan (cleanOrphans).
		return errCopyDeleted
	}
	return nil
}

// onCatalogChange runs after entries changed durably: copies of deleted
// messages are removed from this node's store.
func (n *Node) onCatalogChange(changed []catalog.Entry) {
	var gone []string
	for i := range changed {
		if changed[i].State == catalog.Deleted && n.store.Has(changed[i].ID) {
			gone = append(gone, changed[i].ID)
		}
	}
	if len(gone) == 0 {
		return
	}
	if err := n.store.Write(&store.Batch{DeleteCopies: gone}); err != nil {
		n.log.Error("node: deleting copies of deleted messages", "count", len(gone), "err", err)
	}
}
