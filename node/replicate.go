package node

import (
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingcap/failpoint"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/mirror"
	"mailarray/node/store"
)

// Timings and limits of the replicator's background work.
const (
	// pushQueueMax bounds entries waiting to be pushed to one peer; beyond
	// it pushes are dropped and anti-entropy delivers them instead.
	pushQueueMax = 65536
	// pushBatchMax bounds entries in one push request.
	pushBatchMax = 1024
)

// replicator pushes catalog changes, runs anti-entropy, rebuilds lost
// copies, resolves pending entries and rebalances.
type replicator struct {
	n *Node

	mu     sync.Mutex
	queues map[string]*pushQueue
	wg     *sync.WaitGroup
	ctx    context.Context
	kick   chan struct{}

	rebalance atomic.Bool

	// Rebuild's full scans are skipped while nothing may need work: the
	// mirroring table is the one of the last scan that found nothing
	// (cleanTable, maintain loop only) and no entry changed since in a way
	// that may need a rebuild (suspect). At 100,000 entries a scan every
	// MaintainEvery was a large part of a busy node's work.
	cleanTable uint64
	suspect    atomic.Bool
	// lastOrphanScan paces cleanOrphans (maintain loop only).
	lastOrphanScan time.Time
	// pendingSeen holds, for each pending entry this node may resolve, the
	// instant (with its monotonic reading) this node first saw it pending
	// (maintain loop only). Staleness is measured on this clock: the
	// version stamp is the listener's wall clock, and a node whose clock
	// ran ahead saw every pending entry as stale on arrival. In memory:
	// after a restart every entry waits a whole timeout again.
	pendingSeen map[string]time.Time

	commitMu   sync.Mutex
	commits    []catalog.Entry
	commitWake chan struct{}
	commitIdle *sync.Cond
	committing bool

	// progress, for status and metrics
	underReplicated atomic.Int64
	rebuiltCopies   atomic.Int64
	rebuiltBytes    atomic.Int64
	movedCopies     atomic.Int64
	aeRounds        atomic.Int64
	aeRepaired      atomic.Int64
	pushDropped     atomic.Int64
	lastRebuildLog  time.Time

	// hz: the array's progress for tombstone collection (horizon.go).
	hz horizonState
}

type pushQueue struct {
	mu      sync.Mutex
	entries []catalog.Entry
	wake    chan struct{}
}

func newReplicator(n *Node) *replicator {
	r := &replicator{n: n, queues: map[string]*pushQueue{}, kick: make(chan struct{}, 1), commitWake: make(chan struct{}, 1)}
	r.commitIdle = sync.NewCond(&r.commitMu)
	n.cat.OnChange(r.noteChanged)
	return r
}

// noteChanged marks the catalog suspect when a changed entry may need a
// rebuild (fewer live holders than wanted, or a holder that is not live),
// so that rebuild scans the whole catalog only when something may need
// work. Called after every durable catalog change.
func (r *replicator) noteChanged(changed []catalog.Entry) {
	if r.suspect.Load() {
		return
	}
	t := r.n.members.Table()
	want := min(r.n.cfg.Replicas, len(t.Ring))
	for i := range changed {
		e := &changed[i]
		if e.State != catalog.Committed {
			continue
		}
		if live := countLive(t, e); live < want || live != len(e.Locations) {
			r.suspect.Store(true)
			return
		}
	}
}

// orphanScansPerGrace is how many orphan scans run per Tuning.OrphanGrace
// (at most one per maintenance pass).
const orphanScansPerGrace = 4

// commitQueueMax bounds entries waiting for their asynchronous commit;
// beyond it commit blocks the caller (backpressure on SMTP).
const commitQueueMax = 65536

// commit queues final entries (committed or deleted) to be applied
// locally and pushed to every node, batched by the committer goroutine.
func (r *replicator) commit(entries []catalog.Entry) {
	r.commitMu.Lock()
	for len(r.commits) >= commitQueueMax {
		r.commitIdle.Wait()
	}
	r.commits = append(r.commits, entries...)
	r.commitMu.Unlock()
	select {
	case r.commitWake <- struct{}{}:
	default:
	}
}

func (r *replicator) commitLoop(ctx context.Context) {
	for {
		// A stopped node's loop ends here, not in the select below, which
		// would pick at random between its ctx and a pending wake (and
		// drain once more on the wake: one more settle, a simulated run
		// that does not replay after a crash).
		if ctx.Err() != nil {
			r.drainCommits()
			return
		}
		select {
		case <-ctx.Done():
			r.drainCommits()
			return
		case <-r.commitWake:
		}
		r.drainCommits()
	}
}

// drainCommits applies every queued commit; on a local store failure the
// entries stay pending here and are resolved like a crashed listener's.
func (r *replicator) drainCommits() {
	for {
		// Each take, the last (empty) one included, sees every commit of
		// the instant (see Node.settle).
		r.n.settle("commit")
		r.commitMu.Lock()
		batch := r.commits
		r.commits = nil
		r.committing = len(batch) > 0
		r.commitIdle.Broadcast()
		r.commitMu.Unlock()
		if len(batch) == 0 {
			return
		}
		// The decision (committed, or deleted for a refused transaction)
		// must become durable here: a lost abort would let the holders'
		// pending resolution make a refused message visible. Retry with
		// backoff until it lands or the node stops.
		for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
			err := r.n.env.Inject("catalog.commit")
			if err == nil {
				_, err = r.n.cat.Apply(batch...)
			}
			if err == nil {
				break
			}
			r.n.log.Warn("node: commit not applied locally; retrying", "entries", len(batch), "err", err)
			if r.ctx == nil || r.ctx.Err() != nil {
				break
			}
			select {
			case <-r.ctx.Done():
			case <-time.After(wait):
			}
		}
		r.broadcast(batch)
		r.commitMu.Lock()
		r.committing = false
		r.commitIdle.Broadcast()
		r.commitMu.Unlock()
	}
}

// commitsIdle reports whether no commit is queued or being applied.
func (r *replicator) commitsIdle() bool {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	return len(r.commits) == 0 && !r.committing
}

func (r *replicator) start(ctx context.Context, wg *sync.WaitGroup) {
	r.mu.Lock()
	r.ctx, r.wg = ctx, wg
	r.mu.Unlock()
	r.hz.init()
	// Each timed loop draws from its own stream, split from the node's here
	// in a fixed order: loops started together would otherwise draw from
	// the shared stream in varying order, and the simulator could not
	// replay a run from its seed.
	aeRand := env.NewRand(r.n.env.Rand.Uint64())
	maintainSeed := r.n.env.Rand.Uint64()
	maintainRand := env.NewRand(maintainSeed)
	// The verifier's stream derives from the maintain loop's seed rather
	// than from a draw of its own: the node's stream, and every run
	// recorded before the verifier existed, stay as they were.
	r.n.verify.start(ctx, wg, env.NewRand(maintainSeed^verifySeedSalt))
	wg.Add(3)
	go func() {
		defer wg.Done()
		r.antiEntropyLoop(ctx, aeRand)
	}()
	go func() {
		defer wg.Done()
		r.commitLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		r.maintainLoop(ctx, maintainRand)
	}()
}

// triggerMaintenance asks for a rebuild scan now (membership changed).
func (r *replicator) triggerMaintenance() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *replicator) triggerRebalance() {
	r.rebalance.Store(true)
	r.triggerMaintenance()
}

// broadcast queues entries for every other live member.
func (r *replicator) broadcast(entries []catalog.Entry) {
	r.mu.Lock()
	ctx := r.ctx
	r.mu.Unlock()
	if ctx == nil || ctx.Err() != nil {
		return
	}
	for _, m := range r.n.members.Live() {
		if m.Name == r.n.cfg.Name || m.Tags[env.TagPeer] == "" {
			continue
		}
		q := r.queue(m.Name)
		q.mu.Lock()
		if len(q.entries)+len(entries) > pushQueueMax {
			r.pushDropped.Add(int64(len(entries)))
		} else {
			q.entries = append(q.entries, entries...)
		}
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// broadcastSync pushes entries to every other live member and waits.
// Failures are returned but the entries still reach those members later by
// anti-entropy.
func (r *replicator) broadcastSync(ctx context.Context, entries []catalog.Entry) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, m := range r.n.members.Live() {
		if m.Name == r.n.cfg.Name || m.Tags[env.TagPeer] == "" {
			continue
		}
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			if err := r.n.peer.PushEntries(ctx, name, entries); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(m.Name)
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *replicator) queue(peer string) *pushQueue {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queues[peer]
	if q == nil {
		q = &pushQueue{wake: make(chan struct{}, 1)}
		r.queues[peer] = q
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.pushLoop(r.ctx, peer, q)
		}()
	}
	return q
}

func (r *replicator) pushLoop(ctx context.Context, peer string, q *pushQueue) {
	who := "push " + peer
	for {
		if ctx.Err() != nil { // not in the select: see commitLoop
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		for {
			r.n.settle(who) // see drainCommits
			q.mu.Lock()
			k := min(len(q.entries), pushBatchMax)
			batch := slices.Clone(q.entries[:k])
			q.entries = q.entries[k:]
			if len(q.entries) == 0 {
				q.entries = nil
			}
			q.mu.Unlock()
			if k == 0 {
				break
			}
			if !r.n.members.Alive(peer) {
				r.pushDropped.Add(int64(k))
				continue
			}
			if err := r.n.peer.PushEntries(ctx, peer, batch); err != nil {
				r.pushDropped.Add(int64(k))
				r.n.log.Debug("node: push failed; anti-entropy will repair", "peer", peer, "entries", k, "err", err)
			}
		}
	}
}

// flush waits (until ctx) for push queues to drain: a node shutting down
// hands its last changes to its peers.
func (r *replicator) flush(ctx context.Context) {
	for {
		pending := 0
		if !r.commitsIdle() {
			pending++
		}
		r.mu.Lock()
		for _, q := range r.queues {
			q.mu.Lock()
			pending += len(q.entries)
			q.mu.Unlock()
		}
		r.mu.Unlock()
		if pending == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// --- anti-entropy ---

func (r *replicator) antiEntropyLoop(ctx context.Context, rnd *env.Rand) {
	for {
		d := rnd.Jitter(r.n.cfg.Tuning.AntiEntropyEvery/2, 1.0)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		peers := r.otherLive()
		if len(peers) == 0 {
			continue
		}
		peer := peers[rnd.IntN(len(peers))]
		if err := r.syncWith(ctx, peer); err != nil && ctx.Err() == nil {
			r.n.log.Debug("node: anti-entropy round failed", "peer", peer, "err", err)
		}
	}
}

func (r *replicator) otherLive() []string {
	var out []string
	for _, m := range r.n.members.Live() {
		if m.Name != r.n.cfg.Name && m.Tags[env.TagPeer] != "" {
			out = append(out, m.Name)
		}
	}
	return out
}

// syncWith makes this node and peer agree: buckets whose digests differ
// are pulled and pushed whole (merging is idempotent).
func (r *replicator) syncWith(ctx context.Context, peer string) error {
	err := r.n.env.Inject("catalog.antientropy")
	failpoint.InjectCall("catalog.antientropy", r.n.cfg.Name, &err) // chaos failpoint: compiled in by make chaos only
	if err != nil {
		return err
	}
	r.aeRounds.Add(1)
	start := r.startMark()
	theirs, err := r.bucketsExchange(ctx, peer)
	if err != nil {
		return err
	}
	ours := r.n.cat.BucketDigests()
	for b := range ours {
		if ours[b] == theirs[b] {
			continue
		}
		remote, err := r.n.peer.Bucket(ctx, peer, b)
		if err != nil {
			return err
		}
		changed, err := r.n.cat.Apply(remote...)
		if err != nil {
			return err
		}
		r.aeRepaired.Add(int64(len(changed)))
		if local := r.n.cat.Bucket(b); len(local) > 0 && r.n.cat.BucketDigest(b) != theirs[b] {
			if err := r.n.peer.PushEntries(ctx, peer, local); err != nil {
				return err
			}
		}
	}
	r.noteSynced(peer, start)
	return nil
}

// --- maintenance: rebuild, pending resolution, rebalance, cleanup ---

func (r *replicator) maintainLoop(ctx context.Context, rnd *env.Rand) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-time.After(rnd.Jitter(r.n.cfg.Tuning.MaintainEvery, 0.25)):
		}
		r.rebuild(ctx)
		r.resolvePending(ctx)
		// An orphan is deleted only once its entry is OrphanGrace old, so
		// scanning every copy more often than a fraction of that finds
		// nothing new: pace the scan (a full pass over the store).
		if time.Since(r.lastOrphanScan) >= r.n.cfg.Tuning.OrphanGrace/orphanScansPerGrace {
			r.lastOrphanScan = time.Now()
			r.cleanOrphans()
		}
		r.collectTick()
	}
}

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

// liveHolders returns e's locations that are live storage members.
func liveHolders(t mirror.Table, e *catalog.Entry) []string {
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
func (r *replicator) rebuild(ctx context.Context) {
	t := r.n.members.Table()
	want := min(r.n.cfg.Replicas, len(t.Ring))
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
	r.n.cat.ForEach(func(e *catalog.Entry) bool {
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
		if live == 0 || first != r.n.cfg.Name {
			return true
		}
		if short || rebalance || live != len(e.Locations) {
			h := liveHolders(t, e)
			if short || (rebalance && !sameSet(h, balanced(t, e.ID, want))) || len(h) != len(e.Locations) {
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
	full := len(jobs) > r.n.cfg.Tuning.RebuildPerScan
	if full {
		jobs = jobs[:r.n.cfg.Tuning.RebuildPerScan]
	}
	done := 0
	for _, j := range jobs {
		if ctx.Err() != nil {
			return
		}
		if err := r.repair(ctx, t, j.e, j.holders, want, rebalance); err != nil {
			r.n.log.Warn("node: rebuild of a copy failed", "id", j.e.ID, "err", err)
			continue
		}
		done++
	}
	if done > 0 {
		r.n.log.Info("node: rebuild progress", "repaired", done, "under_replicated", under, "rebuilt_total", r.rebuiltCopies.Load(), "moved_total", r.movedCopies.Load())
	}
	if full {
		r.triggerMaintenance()
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

// balanced is the placement a rebalance moves copies to: the top nodes of
// a rendezvous hash of the id over the ring, which spreads old mail evenly
// over every storage node, new ones included.
func balanced(t mirror.Table, id string, k int) []string {
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
func (r *replicator) repair(ctx context.Context, t mirror.Table, e catalog.Entry, holders []string, want int, rebalance bool) error {
	err := r.n.env.Inject("rebuild.copy")
	failpoint.InjectCall("rebuild.copy", r.n.cfg.Name, &err) // chaos failpoint: compiled in by make chaos only
	if err != nil {
		return err
	}
	data, err := r.n.store.Get(e.ID)
	if err != nil {
		return err
	}
	target := slices.Clone(holders)
	if rebalance {
		target = balanced(t, e.ID, want)
	}
	// Fill up to want, in mirror order after the primary, skipping holders.
	for _, cand := range append(t.Replicas(holders[0]), t.Ring...) {
		if len(target) >= want {
			break
		}
		if !slices.Contains(target, cand) {
			target = append(target, cand)
		}
	}
	e.Version = r.n.cat.Now()
	e.Locations = target
	var added []string
	for _, node := range target {
		if slices.Contains(holders, node) {
			continue
		}
		if err := r.n.writeCopy(ctx, node, data, &e); err != nil {
			return err
		}
		added = append(added, node)
		r.rebuiltBytes.Add(int64(len(data)))
	}
	if _, err := r.n.cat.Apply(e); err != nil {
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

// resolvePending settles pending entries whose commit never came (the
// listener died mid-transaction): committed if W copies are durable
// (possibly acknowledged: never lose it), deleted if every holder answered
// and fewer than W have it.
func (r *replicator) resolvePending(ctx context.Context) {
	now := time.Now()
	seen := make(map[string]time.Time, len(r.pendingSeen))
	var stale []catalog.Entry
	r.n.cat.ForEachPending(func(e *catalog.Entry) bool {
		if e.State != catalog.Pending {
			return true
		}
		first, ok := r.pendingSeen[e.ID]
		if !ok {
			first = now
		}
		seen[e.ID] = first
		// The store is read only for the stale: most pending entries are
		// young. A fallback holder is not among the placed locations but
		// resolves too: it may hold the last copy.
		if now.Sub(first) >= r.n.cfg.Tuning.PendingTimeout && (e.HasLocation(r.n.cfg.Name) || r.n.store.Has(e.ID)) {
			stale = append(stale, *e)
		}
		return true
	})
	r.pendingSeen = seen // entries no longer pending are forgotten
	// Map order is random: sort so runs replay in the simulator.
	slices.SortFunc(stale, func(a, b catalog.Entry) int { return compareStrings(a.ID, b.ID) })
	if len(stale) > r.n.cfg.Tuning.RebuildPerScan {
		stale = stale[:r.n.cfg.Tuning.RebuildPerScan]
	}
	for _, e := range stale {
		r.resolve(ctx, e)
	}
}

// resolve settles one pending entry. Its copies may sit on any live node
// (a failed copy moves to a fallback node), so every live member is
// asked. The rules, biased so an acknowledged message is never lost:
//   - a final state (committed or deleted) anywhere wins;
//   - a live listener of the entry's boot decides (askOrigin): it is asked
//     to abort, and the entry is deleted only if it did; committed if it
//     acknowledged and W copies are seen; otherwise nothing is decided.
//     The rules below apply only when the listener is gone or restarted;
//   - W or more live copies: the message may have been acknowledged, so
//     it is committed where the copies are (rebuild restores R);
//   - a placed node is gone and a copy survives: it may have been
//     acknowledged with the lost node's copy, so it is committed too;
//   - every placed node answered and fewer than W hold a copy: it cannot
//     have been acknowledged, so it is deleted.
func (r *replicator) resolve(ctx context.Context, e catalog.Entry) {
	var holders []string
	allPlacedAnswered := true
	answered := map[string]bool{}
	for _, m := range r.n.members.Live() {
		if m.Name == r.n.cfg.Name {
			answered[m.Name] = true
			if r.n.store.Has(e.ID) {
				holders = append(holders, m.Name)
			}
			continue
		}
		pe, ok, err := r.n.peer.GetEntry(ctx, m.Name, e.ID)
		if err != nil {
			continue
		}
		if ok && pe.State != catalog.Pending {
			r.n.cat.Apply(pe)
			return
		}
		has, err := r.n.peer.HasCopy(ctx, m.Name, e.ID)
		if err != nil {
			continue
		}
		answered[m.Name] = true
		if has {
			holders = append(holders, m.Name)
		}
	}
	for _, l := range e.Locations {
		if !answered[l] {
			allPlacedAnswered = false
		}
	}
	switch r.askOrigin(ctx, &e) {
	case originWait:
		return
	case originCommitted:
		if len(holders) < r.n.cfg.WriteQuorum {
			return // the listener's own commit is on its way
		}
		// W copies: committed by the first rule below.
	case originAborted:
		r.n.log.Warn("node: dropping a pending message its listener aborted", "id", e.ID, "listener", e.Origin, "holders", holders)
		e.State, e.Version, e.Origin, e.Boot = catalog.Deleted, r.n.cat.Now(), "", 0
		if _, err := r.n.cat.Apply(e); err == nil {
			r.broadcast([]catalog.Entry{e})
		}
		return
	}
	e.Origin, e.Boot = "", 0 // final below
	switch {
	case len(holders) >= r.n.cfg.WriteQuorum || (!allPlacedAnswered && len(holders) > 0):
		e.State, e.Version, e.Locations = catalog.Committed, r.n.cat.Now(), holders
		r.n.log.Warn("node: committing an orphaned pending message", "id", e.ID, "holders", holders)
	case allPlacedAnswered:
		e.State, e.Version = catalog.Deleted, r.n.cat.Now()
		r.n.log.Warn("node: dropping a pending message that never reached quorum", "id", e.ID, "holders", holders)
	default:
		return // wait: placed nodes unreachable and no copy seen yet
	}
	if _, err := r.n.cat.Apply(e); err == nil {
		r.broadcast([]catalog.Entry{e})
	}
}

// cleanOrphans deletes copies this node holds that no entry lists, once
// the entry is fully replicated elsewhere (rebalance moved them) or
// deleted.
func (r *replicator) cleanOrphans() {
	t := r.n.members.Table()
	want := min(r.n.cfg.Replicas, len(t.Ring))
	cutoff := uint64(r.n.env.Wall().Add(-r.n.cfg.Tuning.OrphanGrace).UnixNano())
	var gone []string
	r.n.store.CopyIDs(func(id string) bool {
		e, ok := r.n.cat.Get(id)
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
		case e.State == catalog.Committed && !e.HasLocation(r.n.cfg.Name) && e.Version < cutoff && countLive(t, &e) >= want:
			gone = append(gone, id)
		}
		return len(gone) < r.n.cfg.Tuning.RebuildPerScan
	})
	if len(gone) > 0 {
		if err := r.n.store.Write(&store.Batch{DeleteCopies: gone}); err != nil {
			r.n.log.Error("node: orphan cleanup", "err", err)
		}
		// A repair may have written one of these copies again, listing
		// this node, between the scan and the delete (see verifier.recheck).
		r.n.verify.recheck(gone)
	}
}
