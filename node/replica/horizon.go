package replica

// Array-agreed tombstone collection (node/catalog horizon.go has the rules
// and why they are safe). This file supplies what the catalog cannot know:
// when this node last completed anti-entropy with each live member (its
// watermark), the watermarks the other members advertise, and the
// exchange of horizons and watermarks at the start of every anti-entropy
// round. It also records (Deps.RecordMember) when the node was last a member
// of the array, which node/rejoin.go checks at start.

import (
	"context"
	"strconv"
	"sync"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/peer"
)

// syncMark is when an anti-entropy round with a peer started: the
// catalog's clock (a version stamp) and the wall clock.
type syncMark struct {
	stamp uint64
	wall  time.Time
}

// horizonState is the replicator's view of the array's progress.
type horizonState struct {
	mu sync.Mutex
	// synced: start of the last complete anti-entropy round with each
	// peer, since this process started (a restart forgets: conservative).
	synced map[string]syncMark
	// marks: each peer's advertised watermark, as last heard; complete:
	// whether its catalog was complete.
	marks       map[string]uint64
	complete    map[string]bool
	lastCollect time.Time // maintenance loop only
	started     time.Time // set by init, before the loops start
}

// init is called by Replicator.Start before its loops; the other calls
// cover handlers that may run first (the peer listener starts earlier).
func (h *horizonState) init() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.synced == nil {
		h.synced, h.marks, h.complete = map[string]syncMark{}, map[string]uint64{}, map[string]bool{}
		h.started = time.Now()
	}
}

// startMark stamps the start of an anti-entropy round.
func (r *Replicator) startMark() syncMark {
	return syncMark{stamp: r.d.Catalog.Now(), wall: r.d.Wall()}
}

// noteSynced records a complete round with peer that started at m. Once
// the node has completed a round with every live member since it started,
// a replica that started empty or reset holds the array's catalog.
func (r *Replicator) noteSynced(peer string, m syncMark) {
	r.hz.init()
	r.hz.mu.Lock()
	r.hz.synced[peer] = m
	r.hz.mu.Unlock()
	if r.d.Catalog.Complete() {
		return
	}
	if _, ok, peers := r.watermark(); ok && peers > 0 && (!r.d.Catalog.WasReset() || r.completePeerLive()) {
		if err := r.d.Catalog.MarkComplete(); err != nil {
			r.d.Log.Warn("node: catalog not marked complete", "err", err)
		} else {
			r.d.Log.Info("node: catalog complete: in step with every live member")
		}
	}
}

// completePeerLive reports whether some live member's catalog was complete
// when last heard.
func (r *Replicator) completePeerLive() bool {
	live := r.OtherLive()
	r.hz.mu.Lock()
	defer r.hz.mu.Unlock()
	for _, p := range live {
		if r.hz.complete[p] {
			return true
		}
	}
	return false
}

// watermark is the oldest start of the last complete rounds with every
// live member: everything any of them held then, this node holds, and
// they hold what it held. ok is false while some live member has had no
// complete round yet; peers counts the live members. Alone, the node is
// the array and its watermark is now.
func (r *Replicator) watermark() (m syncMark, ok bool, peers int) {
	r.hz.init()
	live := r.OtherLive()
	if len(live) == 0 {
		return r.startMark(), true, 0
	}
	r.hz.mu.Lock()
	defer r.hz.mu.Unlock()
	for i, p := range live {
		s, has := r.hz.synced[p]
		if !has {
			return syncMark{}, false, len(live)
		}
		if i == 0 || s.stamp < m.stamp {
			m.stamp = s.stamp
		}
		if i == 0 || s.wall.Before(m.wall) {
			m.wall = s.wall
		}
	}
	return m, true, len(live)
}

// advertisedMark is the watermark this node advertises: 0 (none) until it
// has completed a round with every live member.
func (r *Replicator) advertisedMark() uint64 {
	m, ok, _ := r.watermark()
	if !ok {
		return 0
	}
	return m.stamp
}

// candidateHorizon is the horizon this node proposes: the lowest
// watermark of the live members (itself included) minus tombstone-ttl,
// rounded down to a multiple of CollectEvery so that the replicas'
// proposals coincide and raises stay rare. 0 while any watermark is
// unknown.
func (r *Replicator) candidateHorizon() uint64 {
	m, ok, _ := r.watermark()
	if !ok {
		return 0
	}
	lo := m.stamp
	r.hz.mu.Lock()
	for _, p := range r.OtherLive() {
		pm := r.hz.marks[p]
		if pm == 0 {
			r.hz.mu.Unlock()
			return 0
		}
		lo = min(lo, pm)
	}
	r.hz.mu.Unlock()
	ttl, step := uint64(r.tun().TombstoneTTL), uint64(r.tun().CollectEvery)
	if lo <= ttl {
		return 0
	}
	return (lo - ttl) / step * step
}

// Adopt takes a peer's horizon and watermark heard in an exchange: the
// replica raises its horizon to the peer's (collecting below it) so both
// compare digests at the same horizon.
func (r *Replicator) Adopt(from string, h peer.Horizon) {
	r.hz.init()
	if from != "" && from != r.d.Name {
		r.hz.mu.Lock()
		r.hz.marks[from] = h.Mark
		r.hz.complete[from] = h.Complete
		r.hz.mu.Unlock()
	}
	if h.Horizon <= r.d.Catalog.Horizon() {
		return
	}
	if limit := r.d.Catalog.HorizonLimit(r.tun().TombstoneTTL); h.Horizon > limit {
		// Never adopted: it would drop new mail as below the horizon.
		r.horizonRefused.Add(1)
		r.d.Log.Warn("node: refused a peer's tombstone horizon too far ahead of this node's clock; is its clock wrong?",
			"peer", from, "horizon", h.Horizon, "limit", limit)
		return
	}
	r.raiseHorizon(h.Horizon)
}

// HorizonRefused counts the peers' horizons Adopt refused as too far ahead.
func (r *Replicator) HorizonRefused() int64 { return r.horizonRefused.Load() }

func (r *Replicator) raiseHorizon(h uint64) {
	k, err := r.d.Catalog.RaiseHorizon(h)
	if err != nil {
		r.d.Log.Warn("node: tombstone collection failed", "err", err)
		return
	}
	if k > 0 {
		r.d.Log.Info("node: collected tombstones", "count", k, "horizon", r.d.Catalog.Horizon())
	}
}

// collectTick runs every Tuning.CollectEvery from the maintenance loop:
// it raises the horizon to this node's proposal (or collects stragglers
// at the current one) and records that the node is a member.
func (r *Replicator) collectTick() {
	r.hz.init()
	if time.Since(r.hz.lastCollect) < r.tun().CollectEvery {
		return
	}
	r.hz.lastCollect = time.Now()
	r.raiseHorizon(r.candidateHorizon())
	// The first tick comes one interval after start, by when membership
	// shows the other members: a node alone for a moment at start is not
	// taken for a lone array.
	if time.Since(r.hz.started) >= r.tun().CollectEvery {
		r.RecordMembership()
	}
}

// RecordMembership persists the wall-clock time the node was last in
// step with every live member (node/rejoin.go). It only moves forward.
func (r *Replicator) RecordMembership() {
	m, ok, _ := r.watermark()
	if !ok {
		return
	}
	if err := r.d.RecordMember(m.wall); err != nil {
		r.d.Log.Warn("node: last-member time not recorded", "err", err)
	}
}

// bucketsExchange fetches peer's bucket digests, trading horizons and
// watermarks on the way (peer.Horizon).
func (r *Replicator) bucketsExchange(ctx context.Context, node string) ([catalog.Buckets]uint64, error) {
	mine := r.HorizonInfo()
	mine.From = r.d.Name
	d, theirs, err := r.d.Peer.Buckets(ctx, node, mine)
	if err != nil {
		return d, err
	}
	// The answer's digests were taken at the peer's horizon (at least
	// ours): take it before ours are taken.
	r.Adopt(node, theirs)
	return d, nil
}

// HorizonInfo is what this node tells a peer in the exchange: its
// horizon, advertised watermark and whether its catalog is complete.
func (r *Replicator) HorizonInfo() peer.Horizon {
	return peer.Horizon{Horizon: r.d.Catalog.Horizon(), Mark: r.advertisedMark(), Complete: r.d.Catalog.Complete()}
}

// orphanBelowHorizon reports whether a copy without entry is an orphan:
// the replica is complete and the copy's transaction is older than the
// horizon, so its entry was collected (or never existed). Such copies
// remain after a resync (Config.ResyncCatalog). A copy whose id does not
// carry its time is kept.
func (r *Replicator) orphanBelowHorizon(id string) bool {
	return r.d.Catalog.Complete() && r.OrphanBelowHorizonIfComplete(id)
}

// OrphanBelowHorizonIfComplete is the time test of orphanBelowHorizon.
func (r *Replicator) OrphanBelowHorizonIfComplete(id string) bool {
	if len(id) < 12 {
		return false
	}
	ms, err := strconv.ParseUint(id[:12], 16, 64)
	if err != nil {
		return false
	}
	return ms*uint64(time.Millisecond) < r.d.Catalog.Horizon()
}
