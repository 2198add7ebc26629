package replica

import (
	"context"
	"hash/fnv"
	"slices"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/fault"
	"mailarray/node/mirror"
	"mailarray/node/store"
)

// Maintenance: rebuild, rebalance and orphan cleanup (pending resolution
// is pending.go, tombstone collection horizon.go), one pass per
// Tuning.MaintainEvery or kick, all on the maintain loop.

// orphanScansPerGrace is how many orphan scans run per Tuning.OrphanGrace
// (at most one per maintenance pass).
const orphanScansPerGrace = 4

func (r *Replicator) maintainLoop(ctx context.Context, rnd *env.Rand) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-time.After(rnd.Jitter(r.tun().MaintainEvery, 0.25)):
		}
		if r.stopping.Load() {
			continue // shutting down: see StopMaintenance
		}
		r.watchReturns(ctx)
		r.rebuild(ctx)
		r.resolvePending(ctx)
		// An orphan is deleted only once its entry is OrphanGrace old, so
		// scanning every copy more often than a fraction of that finds
		// nothing new: pace the scan (a full pass over the store).
		if time.Since(r.lastOrphanScan) >= r.tun().OrphanGrace/orphanScansPerGrace {
			r.lastOrphanScan = time.Now()
			r.CleanOrphans(ctx)
		}
		r.collectTick()
	}
}

// StopMaintenance ends rebuild, rebalance, orphan cleanup and tombstone
// collection for good (a pass under way finishes). A node shutting down
// calls it before it leaves the array: the array's other nodes may be
// stopping at the same moment, and their departures are no reason to
// start repairs this node will not finish. Pushes, anti-entropy and
// commits go on (Flush hands the last changes over).
func (r *Replicator) StopMaintenance() { r.stopping.Store(true) }

// countLiveHolders counts e's locations that are live storage members
// and returns the first of them, without allocating.
func countLiveHolders(t mirror.Table, e *catalog.Entry) (n int, first string) {
	for _, l := range e.Locations {
		if _, ok := slices.BinarySearch(t.Ring, l); ok {
			if n == 0 {
				first = l
			}
			n++
		}
	}
	return n, first
}

func countLive(t mirror.Table, e *catalog.Entry) int {
	n, _ := countLiveHolders(t, e)
	return n
}

// LiveHolders returns e's locations that are live storage members.
func LiveHolders(t mirror.Table, e *catalog.Entry) []string {
	var out []string
	for _, l := range e.Locations {
		if _, ok := slices.BinarySearch(t.Ring, l); ok {
			out = append(out, l)
		}
	}
	return out
}

// rebuild restores R copies of committed entries that lost some, and moves
// copies to their balanced placement when a rebalance was asked for. Each
// entry is repaired by its first live holder, so two nodes never repair
// the same entry at once.
func (r *Replicator) rebuild(ctx context.Context) {
	t := r.d.Members.Table()
	want := min(r.d.Replicas, len(t.Ring))
	rebalance := r.rebalance.Swap(false)
	suspect := r.suspect.Swap(false)
	if !rebalance && !suspect && r.cleanTable != 0 && t.Version == r.cleanTable {
		return // nothing changed since a scan that found nothing to do
	}
	r.cleanTable = 0
	type job struct {
		e       catalog.Entry
		holders []string
	}
	var jobs []job
	under := 0
	// A node off its own ring (draining, drain.go) is no live holder: the
	// array's rebuild replaces its copies from the others. A copy no live
	// ring node holds can be handed on only by this node.
	_, onRing := slices.BinarySearch(t.Ring, r.d.Name)
	r.d.Catalog.ForEach(func(e *catalog.Entry) bool {
		if e.State != catalog.Committed {
			return true
		}
		// Count before collecting: this runs for every entry every scan, and
		// most entries need nothing.
		live, first := countLiveHolders(t, e)
		short := live < want
		if short {
			under++
		}
		if live == 0 && !onRing && want > 0 && e.HasLocation(r.d.Name) {
			jobs = append(jobs, job{*e, nil})
			return true
		}
		if live == 0 || first != r.d.Name {
			return true
		}
		// A holder that is not live is dropped from the entry only once R
		// live holders are listed (full: R itself, not min(R, ring)). A
		// node whose view of the ring is partial — the last one up while
		// the others stop, a minority side, a start before the join —
		// would otherwise unlist copies that exist, and an unlisted copy
		// is one no reader finds and orphan cleanup may trim.
		atR := live >= r.d.Replicas
		if short || rebalance || (atR && live != len(e.Locations)) {
			h := LiveHolders(t, e)
			if short || (rebalance && !sameSet(h, Balanced(t, e.ID, want))) || (atR && len(h) != len(e.Locations)) {
				jobs = append(jobs, job{*e, h})
			}
		}
		return true
	})
	r.underReplicated.Store(int64(under))
	if len(jobs) == 0 {
		if under == 0 && t.Version != 0 {
			r.cleanTable = t.Version
		}
		return
	}
	// Map order is random: sort so runs replay in the simulator.
	slices.SortFunc(jobs, func(a, b job) int { return compareStrings(a.e.ID, b.e.ID) })
	full := len(jobs) > r.tun().RebuildPerScan
	if full {
		jobs = jobs[:r.tun().RebuildPerScan]
	}
	done := 0
	for _, j := range jobs {
		if ctx.Err() != nil {
			return
		}
		if err := r.repair(ctx, t, j.e, j.holders, want, rebalance); err != nil {
			r.d.Log.Warn("node: rebuild of a copy failed", "id", j.e.ID, "err", err)
			continue
		}
		done++
	}
	if done > 0 {
		r.d.Log.Info("node: rebuild progress", "repaired", done, "under_replicated", under, "rebuilt_total", r.rebuiltCopies.Load(), "moved_total", r.movedCopies.Load())
	}
	if full {
		if rebalance {
			// The rest of the rebalance goes on in the next pass: the
			// request is not spent after one throttled batch.
			r.rebalance.Store(true)
		}
		r.TriggerMaintenance()
	}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// Balanced is the placement a rebalance moves copies to: the top nodes of
// a rendezvous hash of the id over the ring, which spreads old mail evenly
// over every storage node, new ones included.
func Balanced(t mirror.Table, id string, k int) []string {
	type scored struct {
		node  string
		score uint64
	}
	s := make([]scored, len(t.Ring))
	for i, n := range t.Ring {
		h := fnv.New64a()
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(id))
		s[i] = scored{n, h.Sum64()}
	}
	slices.SortFunc(s, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return compareStrings(a.node, b.node)
	})
	out := make([]string, 0, k)
	for i := 0; i < k && i < len(s); i++ {
		out = append(out, s[i].node)
	}
	return out
}

// repair copies e from this node to new holders and commits the new
// locations.
func (r *Replicator) repair(ctx context.Context, t mirror.Table, e catalog.Entry, holders []string, want int, rebalance bool) error {
	if err := r.d.Inject(fault.RebuildCopy, r.d.Name); err != nil {
		return err
	}
	data, err := r.d.Store.Get(e.ID)
	if err != nil {
		return err
	}
	target := slices.Clone(holders)
	if rebalance {
		target = Balanced(t, e.ID, want)
	}
	// Fill up to want, in mirror order after the primary, skipping holders.
	// Without a live holder (this node is handing on its copy, off the
	// ring) the order starts after this node.
	primary := r.d.Name
	if len(holders) > 0 {
		primary = holders[0]
	}
	for _, cand := range append(t.Replicas(primary), t.Ring...) {
		if len(target) >= want {
			break
		}
		if !slices.Contains(target, cand) {
			target = append(target, cand)
		}
	}
	// Holders this repair does not reach stay listed while fewer than R
	// live ones are (see rebuild): a node away keeps its place until its
	// copy is replaced, and the verifier unlists it if it comes back
	// without the copy. A node handing on its copy (off the ring) stays
	// listed on the same terms.
	keep := target
	if len(target) < r.d.Replicas {
		keep = slices.Clone(target)
		for _, l := range e.Locations {
			if !slices.Contains(keep, l) {
				keep = append(keep, l)
			}
		}
	}
	e.Version = r.d.Catalog.Now()
	e.Locations = keep
	var added []string
	for _, node := range target {
		if slices.Contains(holders, node) {
			continue
		}
		if err := r.d.WriteCopy(ctx, node, data, &e); err != nil {
			return err
		}
		added = append(added, node)
		r.rebuiltBytes.Add(int64(len(data)))
	}
	if _, err := r.d.Catalog.Apply(e); err != nil {
		return err
	}
	r.broadcast([]catalog.Entry{e})
	if rebalance {
		r.movedCopies.Add(int64(len(added)))
	} else {
		r.rebuiltCopies.Add(int64(len(added)))
	}
	return nil
}

// CleanOrphans deletes copies this node holds that no entry lists, once
// the entry is fully replicated elsewhere (rebuild or rebalance moved
// them) or deleted. A copy of a live entry goes only once min(R, ring)
// listed holders confirmed from their stores that they hold theirs: the
// catalog alone could list a node whose copy is not (yet, or any more)
// there, and this copy may be the one rebuild needs.
func (r *Replicator) CleanOrphans(ctx context.Context) {
	t := r.d.Members.Table()
	want := min(r.d.Replicas, len(t.Ring))
	cutoff := uint64(r.d.Wall().Add(-r.tun().OrphanGrace).UnixNano())
	var gone []string
	var excess []catalog.Entry // live entries that no longer list this node
	r.d.Store.CopyIDs(func(id string) bool {
		e, ok := r.d.Catalog.Get(id)
		switch {
		case !ok:
			// A copy without entry: its entry arrives by anti-entropy or
			// never existed; keep it (pending resolution owns it), unless
			// its entry was collected (a resynced node's old copies).
			if r.orphanBelowHorizon(id) {
				gone = append(gone, id)
			}
		case e.State == catalog.Deleted:
			gone = append(gone, id)
		case e.State == catalog.Committed && !e.HasLocation(r.d.Name) && e.Version < cutoff && countLive(t, &e) >= want:
			excess = append(excess, e)
		}
		return len(gone)+len(excess) < r.tun().RebuildPerScan
	})
	// Outside the store's read transaction: the confirmations are network
	// calls. CopyIDs walks in id order, so the calls replay in the simulator.
	trimmed := 0
	unreachable := map[string]bool{}
	for i := range excess {
		if ctx.Err() != nil {
			break
		}
		if r.confirmHeld(ctx, t, &excess[i], want, unreachable) {
			gone = append(gone, excess[i].ID)
			trimmed++
		}
	}
	if len(gone) > 0 {
		if err := r.d.Store.Write(&store.Batch{DeleteCopies: gone}); err != nil {
			r.d.Log.Error("node: orphan cleanup", "err", err)
			return
		}
		if trimmed > 0 {
			r.trimmedCopies.Add(int64(trimmed))
			r.d.Log.Info("node: trimmed copies held elsewhere", "copies", trimmed, "trimmed_total", r.trimmedCopies.Load())
		}
		// A repair may have written one of these copies again, listing
		// this node, between the scan and the delete (see verifier.recheck).
		r.verify.recheck(gone)
	}
}

// confirmHeld reports whether at least want of e's live listed holders
// answer that their store holds e's copy. A holder that cannot be asked
// does not count: the copy here waits for the next scan. Nor is it asked
// again in this scan (unreachable): a hung peer would otherwise hold the
// maintain loop for a request timeout per copy.
func (r *Replicator) confirmHeld(ctx context.Context, t mirror.Table, e *catalog.Entry, want int, unreachable map[string]bool) bool {
	n := 0
	for _, h := range LiveHolders(t, e) {
		if h == r.d.Name || unreachable[h] {
			continue
		}
		ok, err := r.d.Peer.HasCopy(ctx, h, e.ID)
		if err != nil {
			unreachable[h] = true
			r.d.Log.Debug("node: orphan cleanup could not confirm a holder", "id", e.ID, "node", h, "err", err)
			continue
		}
		if ok {
			n++
		}
		if n >= want {
			return true
		}
	}
	return false
}
