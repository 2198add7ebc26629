package replica

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/peer"
	"mailarray/node/store"
)

// verifyQueueMax bounds ids waiting for the verifier's immediate check;
// beyond it the queue is dropped and the next check is a full pass.
const verifyQueueMax = 65536

// verifySeedSalt derives the verifier's random stream from the maintain
// loop's seed (see Replicator.Start).
const verifySeedSalt = 0x5645524946590001

// verifier keeps the catalog honest about this node's store: stores are
// verified, not trusted. Rebuild counts an entry's holders from the
// catalog, so an entry that lists this node for a copy it does not hold
// (its disk was restored from a backup, replaced, or emptied, and the
// entry came back by anti-entropy; a copy lost or damaged under the
// catalog) would count as replicated while one copy, or none, exists: the
// next ordinary failure loses an acknowledged message, and status says
// under_replicated 0 meanwhile.
//
// So each node checks the committed entries that list it against its own
// store, and for every copy it lacks (or whose bytes fail their checksum)
// republishes the entry without itself, at a new version, applied here
// and pushed to every node. Rebuild then sees the entry short of R and
// copies it from a holder that really has it. It checks:
//   - at start, every entry (presence only: one read of the store);
//   - every entry that changes and lists this node, at once (presence,
//     in the catalog hook; the checksum in the loop): this is what
//     catches the entries that arrive by anti-entropy after a restore;
//   - continuously, Tuning.VerifyPerScan copies every Tuning.VerifyEvery,
//     checksums included, in id order, over and over.
//
// Safety rests on one ordering, kept by every writer: a copy is durable
// on a node before a committed entry lists that node for it (delivery
// commits only the copies that landed; rebuild and rebalance write their
// copies, each with its entry in one batch, before they apply the new
// locations; pending resolution lists the nodes that answered that they
// hold one). Pending entries list placed nodes before the copies land
// and are never checked. Orphan cleanup deletes only copies whose entry no
// longer lists this node, and rechecks them after the delete (recheck).
// A committed entry that lists this node without a copy is therefore
// wrong, never early, with one benign exception: a repair writing copies
// to several new holders in turn makes an entry naming all of them reach
// the later ones (by anti-entropy from an earlier one) before their copy;
// such a node drops itself, leaves an orphan copy and rebuild writes the
// copy again. Dropping itself is always safe: it removes a location that
// holds nothing readable.
//
// An entry is never left without locations. If this node is the only
// listed holder left, or no other listed holder is live, the verifier
// first asks every live node for a copy (an old holder whose copy a
// rebalance moved and orphan cleanup has not yet deleted, a fallback of a
// failed delivery) and lists those that have one. If none has, the
// message is lost here: it is logged as an error and counted (Lost), and
// the entry is kept, visible to readers who then get an error for it
// rather than losing it silently, so that the operator can restore the
// copy (from another backup) and the count says how many to look for.
type verifier struct {
	r *Replicator

	mu       sync.Mutex
	queue    map[string]struct{} // changed entries listing this node without a copy
	overflow bool                // the queue overflowed: check everything
	wake     chan struct{}
	// lost holds the ids listed only here (or only here and on failed
	// nodes) whose copy is missing and found nowhere: reported once each.
	lost map[string]struct{}

	// pass is the continuous pass's ids, in order; next indexes it
	// (loop only).
	pass []string
	next int

	checked atomic.Int64 // copies checksummed by the continuous pass
	missing atomic.Int64 // entries republished without this node
}

func newVerifier(r *Replicator) *verifier {
	v := &verifier{r: r, queue: map[string]struct{}{}, wake: make(chan struct{}, 1), lost: map[string]struct{}{}}
	r.d.Catalog.OnChange(v.noteChanged)
	return v
}

// noteChanged queues the changed committed entries that list this node
// for a copy its store does not hold. Called after every durable catalog
// change, from the goroutine that applied it: a presence check only, the
// decision is the loop's.
func (v *verifier) noteChanged(changed []catalog.Entry) {
	self := v.r.d.Name
	// The store is asked once for the whole batch (one read transaction).
	var ids []string
	for i := range changed {
		if e := &changed[i]; e.State == catalog.Committed && e.HasLocation(self) {
			ids = append(ids, e.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	has := v.r.d.Store.HasEach(ids)
	var queued bool
	for i, id := range ids {
		if has[i] {
			continue
		}
		v.mu.Lock()
		if len(v.queue) >= verifyQueueMax {
			v.overflow = true
			clear(v.queue)
		} else if !v.overflow {
			v.queue[id] = struct{}{}
		}
		v.mu.Unlock()
		queued = true
	}
	if queued {
		select {
		case v.wake <- struct{}{}:
		default:
		}
	}
}

// recheck queues ids for the immediate check as if their entries had just
// changed. Orphan cleanup calls it with the copies it deleted: it decides
// from the catalog, then deletes, and a rebuild or rebalance that writes
// the copy again in between (copy and entry listing this node in one
// batch) would otherwise leave an entry listing this node without a copy
// until the continuous pass reaches it. An entry applied after this check
// is caught by the hook (its copy is already gone by then).
func (v *verifier) recheck(ids []string) {
	var entries []catalog.Entry
	for _, id := range ids {
		if e, ok := v.r.d.Catalog.Get(id); ok {
			entries = append(entries, e)
		}
	}
	v.noteChanged(entries)
}

// start runs the verifier until ctx ends; rnd jitters its timer.
func (v *verifier) start(ctx context.Context, wg *sync.WaitGroup, rnd *env.Rand) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		v.loop(ctx, rnd)
	}()
}

func (v *verifier) loop(ctx context.Context, rnd *env.Rand) {
	// The start pass. Reads take no virtual time; only when it has
	// entries to republish does it let the instant finish first, so the
	// versions it takes replay (and a run whose stores are whole replays
	// exactly as before the verifier existed).
	if absent := v.absent(); len(absent) > 0 {
		v.r.d.Settle("verify")
		v.checkIDs(ctx, absent)
	}
	tick := time.NewTimer(rnd.Jitter(v.r.tun().VerifyEvery, 0.25))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.wake:
			// Take every change of the instant (see Deps.Settle).
			v.r.d.Settle("verify")
			v.checkQueued(ctx)
		case <-tick.C:
			v.checkSome(ctx)
			tick.Reset(rnd.Jitter(v.r.tun().VerifyEvery, 0.25))
		}
	}
}

// listed returns the ids of the committed entries that list this node,
// sorted (map order is random; the simulator must replay).
func (v *verifier) listed() []string {
	self := v.r.d.Name
	var ids []string
	v.r.d.Catalog.ForEach(func(e *catalog.Entry) bool {
		if e.State == catalog.Committed && e.HasLocation(self) {
			ids = append(ids, e.ID)
		}
		return true
	})
	slices.Sort(ids)
	return ids
}

// checkAll checks the presence of every copy the catalog lists here and
// decides about the missing ones.
func (v *verifier) checkAll(ctx context.Context) { v.checkIDs(ctx, v.absent()) }

// absent returns the ids of the committed entries listing this node whose
// copy the store does not hold, in one read of the store (both sides in
// id order).
func (v *verifier) absent() []string {
	ids := v.listed()
	var absent []string
	i := 0
	err := v.r.d.Store.CopyIDs(func(id string) bool {
		for i < len(ids) && ids[i] < id {
			absent = append(absent, ids[i])
			i++
		}
		if i < len(ids) && ids[i] == id {
			i++
		}
		return i < len(ids)
	})
	if err != nil {
		v.r.d.Log.Warn("node: verify: reading the store", "err", err)
		return nil
	}
	return append(absent, ids[i:]...)
}

// checkQueued decides about the changed entries the hook queued.
func (v *verifier) checkQueued(ctx context.Context) {
	v.mu.Lock()
	ids := make([]string, 0, len(v.queue))
	for id := range v.queue {
		ids = append(ids, id)
	}
	clear(v.queue)
	full := v.overflow
	v.overflow = false
	v.mu.Unlock()
	if full {
		v.checkAll(ctx)
		return
	}
	slices.Sort(ids)
	v.checkIDs(ctx, ids)
}

// checkSome runs one slice of the continuous pass: up to VerifyPerScan
// copies checksummed, resuming where the last slice stopped; a new pass
// starts from the catalog as it is then.
func (v *verifier) checkSome(ctx context.Context) {
	if v.next >= len(v.pass) {
		v.pass, v.next = v.listed(), 0
	}
	end := min(len(v.pass), v.next+v.r.tun().VerifyPerScan)
	ids := v.pass[v.next:end]
	v.next = end
	v.checked.Add(int64(len(ids)))
	v.checkIDs(ctx, ids)
}

// verifyBatchMax bounds the entries republished in one catalog write.
const verifyBatchMax = 1024

// checkIDs checks ids in order and republishes, in batches, the entries
// whose copy is missing here (an empty disk can make that most of the
// catalog: one write and one push per entry would take minutes).
func (v *verifier) checkIDs(ctx context.Context, ids []string) {
	var out []catalog.Entry
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		if e, ok := v.check(ctx, id); ok {
			out = append(out, e)
		}
		if len(out) == verifyBatchMax {
			v.publish(out)
			out = nil
		}
	}
	v.publish(out)
}

// check verifies this node's copy of id against the catalog's current
// entry and returns the entry to republish, if any (see unlist).
func (v *verifier) check(ctx context.Context, id string) (catalog.Entry, bool) {
	e, ok := v.r.d.Catalog.Get(id)
	if !ok || e.State != catalog.Committed || !e.HasLocation(v.r.d.Name) {
		v.forget(id)
		return catalog.Entry{}, false
	}
	err := v.r.d.Store.Verify(id, e.Sum)
	switch {
	case err == nil:
		v.forget(id)
		return catalog.Entry{}, false
	case !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrCorrupt):
		// Not a verdict on the copy (the store is closing, say): look
		// again on the next pass.
		v.r.d.Log.Debug("node: verify: store read failed", "id", id, "err", err)
		return catalog.Entry{}, false
	}
	return v.unlist(ctx, e, err)
}

// unlist returns e, whose copy this node lacks (why says how), without
// this node and at a new version, adding the live nodes that hold an
// unlisted copy when no other listed holder is live. When no location
// would remain it reports the message lost and returns false: e stays.
func (v *verifier) unlist(ctx context.Context, e catalog.Entry, why error) (catalog.Entry, bool) {
	self := v.r.d.Name
	locs := slices.DeleteFunc(slices.Clone(e.Locations), func(l string) bool { return l == self })
	t := v.r.d.Members.Table()
	if countLive(t, &catalog.Entry{Locations: locs}) == 0 {
		locs = append(locs, v.findCopies(ctx, e, locs)...)
	}
	if len(locs) == 0 {
		v.mu.Lock()
		_, known := v.lost[e.ID]
		v.lost[e.ID] = struct{}{}
		v.mu.Unlock()
		if !known {
			v.r.d.Log.Error("node: verify: the only listed copy of an acknowledged message is missing and no live node holds one; restore it from a backup",
				"id", e.ID, "mailbox", e.Mailbox, "err", why)
		}
		return catalog.Entry{}, false
	}
	v.forget(e.ID)
	v.r.d.Log.Debug("node: verify: a copy listed here is missing", "id", e.ID, "locations", locs, "err", why)
	e.Locations = locs
	e.Version = v.r.d.Catalog.Now()
	return e, true
}

// publish applies the unlisted entries here and pushes them to every
// node; rebuild then counts them short and copies them from a holder.
func (v *verifier) publish(entries []catalog.Entry) {
	if len(entries) == 0 {
		return
	}
	if _, err := v.r.d.Catalog.Apply(entries...); err != nil {
		v.r.d.Log.Warn("node: verify: republishing entries without this node", "entries", len(entries), "err", err)
		return
	}
	v.missing.Add(int64(len(entries)))
	v.r.d.Log.Warn("node: verify: copies listed here are missing; entries republished without this node for rebuild",
		"entries", len(entries), "first", entries[0].ID, "missing_total", v.missing.Load())
	v.r.broadcast(entries)
	v.r.suspect.Store(true)
	v.r.TriggerMaintenance()
}

// findCopies asks every other live node not in skip whether it holds a
// copy of e, in name order, and returns those that do.
func (v *verifier) findCopies(ctx context.Context, e catalog.Entry, skip []string) []string {
	var out []string
	for _, m := range v.r.d.Members.Live() {
		if m.Name == v.r.d.Name || m.Tags[env.TagPeer] == "" || slices.Contains(skip, m.Name) {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, peer.RequestTimeout)
		has, err := v.r.d.Peer.HasCopy(cctx, m.Name, e.ID)
		cancel()
		if err == nil && has {
			out = append(out, m.Name)
		}
	}
	return out
}

func (v *verifier) forget(id string) {
	v.mu.Lock()
	delete(v.lost, id)
	v.mu.Unlock()
}

// VerifyStatus is the store verifier's progress (see verifier).
type VerifyStatus struct {
	// Checked counts copies checksummed by the continuous pass.
	Checked int64 `json:"checked"`
	// Missing counts entries republished without this node because its
	// copy was missing or damaged.
	Missing int64 `json:"missing"`
	// Lost is how many messages this node is the only listed holder of
	// and holds no valid copy of, found on no live node either.
	Lost int `json:"lost"`
}

// VerifyStatus returns the store verifier's progress. Safe from any
// goroutine.
func (r *Replicator) VerifyStatus() VerifyStatus {
	v := r.verify
	v.mu.Lock()
	lost := len(v.lost)
	v.mu.Unlock()
	return VerifyStatus{Checked: v.checked.Load(), Missing: v.missing.Load(), Lost: lost}
}
