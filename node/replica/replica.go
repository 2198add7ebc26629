package replica

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/fault"
	"mailarray/node/mirror"
	"mailarray/node/peer"
	"mailarray/node/store"
)

// Peer is the part of the peer protocol's client the replicator calls
// (satisfied by *peer.Client). Every method may be called from any of the
// replicator's goroutines at once, and from callers of BroadcastSync: an
// implementation must be safe for concurrent use. Each call is bounded by
// ctx and the client's own request timeout.
type Peer interface {
	PushEntries(ctx context.Context, node string, entries []catalog.Entry) error
	Bucket(ctx context.Context, node string, b int) ([]catalog.Entry, error)
	Buckets(ctx context.Context, node string, mine peer.Horizon) ([catalog.Buckets]uint64, peer.Horizon, error)
	GetEntry(ctx context.Context, node, id string) (catalog.Entry, bool, error)
	HasCopy(ctx context.Context, node, id string) (bool, error)
	Abort(ctx context.Context, node, id string) (peer.AbortReply, error)
	Rebalance(ctx context.Context, node string) error
}

var _ Peer = (*peer.Client)(nil)

// Members is the node's view of membership (the root package's
// memberView). Its methods are called from every replicator goroutine and
// from catalog change hooks, concurrently: it must be safe for concurrent
// use, never block on the network, and never call back into the
// replicator. Live returns the alive members sorted by name (the
// simulator replays runs only if that order is fixed); Table the current
// mirroring table, whose Ring is sorted.
type Members interface {
	Table() mirror.Table
	Live() []env.Member
	Alive(name string) bool
	Get(name string) (env.Member, bool)
}

// Tuning is the replicator's share of the node's Tuning (node/config.go
// documents each value).
type Tuning struct {
	AntiEntropyEvery time.Duration
	MaintainEvery    time.Duration
	PendingTimeout   time.Duration
	OrphanGrace      time.Duration
	RebuildPerScan   int
	TombstoneTTL     time.Duration
	VerifyEvery      time.Duration
	VerifyPerScan    int
	CollectEvery     time.Duration
	// RebalanceAfterReturn: once a storage node returned (rebalance.go)
	// and membership has not changed for this long, the array rebalances
	// by itself; 0: never (only `mailarray rebalance`).
	RebalanceAfterReturn time.Duration
}

// Deps is everything the replicator uses, given once to New. Function
// fields are called from the replicator's goroutines, concurrently with
// each other and with the node's own work: each must be safe for
// concurrent use and must not call back into the Replicator.
type Deps struct {
	// Name is this node's member name.
	Name string
	// Replicas is R, WriteQuorum W (node.Config).
	Replicas, WriteQuorum int
	// Tuning is the starting pace; SetTuning replaces it while running.
	Tuning Tuning

	Catalog *catalog.Catalog
	Store   *store.Store
	// Peer is called only once Start ran, or from callers of BroadcastSync
	// (the root package forwards to its client, which it makes at Start).
	Peer    Peer
	Members Members

	// WriteCopy stores one copy with its entry on node (this node
	// included): rebuild and rebalance call it for each new holder.
	WriteCopy func(ctx context.Context, node string, data []byte, e *catalog.Entry) error
	// Boot is this start's boot id; AbortLocal answers an abort request
	// for an entry this node listened for (pending resolution asks itself
	// as it asks a peer).
	Boot       uint64
	AbortLocal func(id string) peer.AbortReply
	// RecordMember persists the wall-clock time the node was last in step
	// with every live member (node/rejoin.go reads it back).
	RecordMember func(wall time.Time) error

	Log *slog.Logger
	// Rand is the node's stream: Start splits the loops' streams from it.
	Rand *env.Rand
	// Inject asks the fault hook and the failpoint about a point
	// (env.Env.Inject).
	Inject func(p fault.Point, where string) error
	// Wall is the node's wall clock (env.Env.Wall).
	Wall func() time.Time
	// Settle lets the simulator finish the current instant before a loop
	// drains a queue (node.settle); real mode: nothing.
	Settle func(who string)
}

// Timings and limits of the replicator's background work.
const (
	// pushQueueMax bounds entries waiting to be pushed to one peer; beyond
	// it pushes are dropped and anti-entropy delivers them instead.
	pushQueueMax = 65536
	// pushBatchMax bounds entries in one push request.
	pushBatchMax = 1024
)

// Replicator pushes catalog changes, runs anti-entropy, rebuilds lost
// copies, resolves pending entries, rebalances and verifies the store
// (see doc.go).
type Replicator struct {
	d Deps
	// tuning is the current pace (Deps.Tuning, then SetTuning's), one
	// snapshot per read: the loops read it at every turn.
	tuning atomic.Pointer[Tuning]

	mu     sync.Mutex
	queues map[string]*pushQueue
	wg     *sync.WaitGroup
	ctx    context.Context
	kick   chan struct{}

	rebalance atomic.Bool
	// stopping is set by StopMaintenance.
	stopping atomic.Bool
	// horizonRefused counts peers' horizons refused as too far ahead.
	horizonRefused atomic.Int64

	// Rebuild's full scans are skipped while nothing may need work: the
	// mirroring table is the one of the last scan that found nothing
	// (cleanTable, maintain loop only) and no entry changed since in a way
	// that may need a rebuild (suspect). At 100,000 entries a scan every
	// MaintainEvery was a large part of a busy node's work.
	cleanTable uint64
	suspect    atomic.Bool
	// lastOrphanScan paces cleanOrphans (maintain loop only).
	lastOrphanScan time.Time
	// returns follows membership for the rebalance after a node's return
	// (rebalance.go; maintain loop only).
	returns returnWatch
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
	trimmedCopies   atomic.Int64
	autoRebalances  atomic.Int64
	aeRounds        atomic.Int64
	aeRepaired      atomic.Int64
	pushDropped     atomic.Int64
	lastRebuildLog  time.Time

	// hz: the array's progress for tombstone collection (horizon.go).
	hz horizonState

	verify *verifier
}

type pushQueue struct {
	mu      sync.Mutex
	entries []catalog.Entry
	wake    chan struct{}
}

// New makes the replicator and its store verifier and registers their
// catalog change hooks (the replicator's first). Nothing runs until Start.
func New(d Deps) *Replicator {
	r := &Replicator{d: d, queues: map[string]*pushQueue{}, kick: make(chan struct{}, 1), commitWake: make(chan struct{}, 1)}
	r.tuning.Store(&d.Tuning)
	r.commitIdle = sync.NewCond(&r.commitMu)
	d.Catalog.OnChange(r.noteChanged)
	r.verify = newVerifier(r)
	return r
}

// tun is the current tuning.
func (r *Replicator) tun() *Tuning { return r.tuning.Load() }

// Tuning is the current pace.
func (r *Replicator) Tuning() Tuning { return *r.tun() }

// SetTuning replaces the replicator's pace (a configuration reload); each
// loop takes the new values at its next turn. Safe for concurrent use.
func (r *Replicator) SetTuning(t Tuning) { r.tuning.Store(&t) }

// noteChanged marks the catalog suspect when a changed entry may need a
// rebuild (fewer live holders than wanted, or a holder that is not live),
// so that rebuild scans the whole catalog only when something may need
// work. Called after every durable catalog change.
func (r *Replicator) noteChanged(changed []catalog.Entry) {
	if r.suspect.Load() {
		return
	}
	t := r.d.Members.Table()
	want := min(r.d.Replicas, len(t.Ring))
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

// Start runs the replicator's loops until ctx ends; each goroutine is
// counted in wg.
func (r *Replicator) Start(ctx context.Context, wg *sync.WaitGroup) {
	r.mu.Lock()
	r.ctx, r.wg = ctx, wg
	r.mu.Unlock()
	r.hz.init()
	// Each timed loop draws from its own stream, split from the node's here
	// in a fixed order: loops started together would otherwise draw from
	// the shared stream in varying order, and the simulator could not
	// replay a run from its seed.
	aeRand := env.NewRand(r.d.Rand.Uint64())
	maintainSeed := r.d.Rand.Uint64()
	maintainRand := env.NewRand(maintainSeed)
	// The verifier's stream derives from the maintain loop's seed rather
	// than from a draw of its own: the node's stream, and every run
	// recorded before the verifier existed, stay as they were.
	r.verify.start(ctx, wg, env.NewRand(maintainSeed^verifySeedSalt))
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

// TriggerMaintenance asks for a rebuild scan now (membership changed).
func (r *Replicator) TriggerMaintenance() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// TriggerRebalance asks the next maintenance pass to move copies to their
// balanced placement.
func (r *Replicator) TriggerRebalance() {
	r.rebalance.Store(true)
	r.TriggerMaintenance()
}

// Stats is the replicator's progress, for status and metrics.
type Stats struct {
	UnderReplicated int64
	RebuiltCopies   int64
	RebuiltBytes    int64
	MovedCopies     int64
	// TrimmedCopies: copies this node deleted because a rebuild or
	// rebalance stopped listing it, after R listed holders confirmed theirs.
	TrimmedCopies int64
	// AutoRebalances: rebalances this node asked of the array after a
	// node returned (rebalance.go).
	AutoRebalances    int64
	AntiEntropyRounds int64
	AntiEntropyFixed  int64
	PushDropped       int64
}

// Stats returns the progress counters. Safe from any goroutine.
func (r *Replicator) Stats() Stats {
	return Stats{
		UnderReplicated: r.underReplicated.Load(),
		RebuiltCopies:   r.rebuiltCopies.Load(), RebuiltBytes: r.rebuiltBytes.Load(),
		MovedCopies: r.movedCopies.Load(), TrimmedCopies: r.trimmedCopies.Load(),
		AutoRebalances: r.autoRebalances.Load(), AntiEntropyRounds: r.aeRounds.Load(),
		AntiEntropyFixed: r.aeRepaired.Load(), PushDropped: r.pushDropped.Load(),
	}
}

// UnderReplicated is the number of committed entries with fewer live
// holders than wanted, as of the last rebuild scan.
func (r *Replicator) UnderReplicated() int64 { return r.underReplicated.Load() }

// PushQueued returns the entries waiting in the push queues.
func (r *Replicator) PushQueued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := 0
	for _, q := range r.queues {
		q.mu.Lock()
		k += len(q.entries)
		q.mu.Unlock()
	}
	return k
}
