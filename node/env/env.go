package env

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"mailarray/node/fault"
)

// Net is how a node listens and dials. Real mode uses the net package
// (RealNet); the simulator uses SimNet. Addresses are "host:port".
type Net interface {
	Listen(network, address string) (net.Listener, error)
	ListenPacket(network, address string) (net.PacketConn, error)
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Member is one node of the array as membership sees it.
type Member struct {
	// Name is unique in the cluster and stable across restarts.
	Name string
	// Addr is the member's IP address (the gossip address's host), used by
	// DNS answers for the node.
	Addr net.IP
	// Tags carry the node's advertised endpoints and roles: see the Tag*
	// constants.
	Tags map[string]string
	// Status is the member's liveness.
	Status Status
}

// Tag keys carried by every member.
const (
	TagPeer  = "peer"  // node-to-node API address, host:port
	TagSMTP  = "smtp"  // SMTP listener address
	TagPOP3  = "pop3"  // POP3 listener address
	TagIMAP  = "imap"  // IMAP listener address
	TagDNS   = "dns"   // DNS listener address
	TagRoles = "roles" // comma separated: smtp,pop3,imap,store,dns
	// TagWeight is the node's static capacity weight, a decimal integer
	// >= 1 (default 1): its speed and bandwidth relative to the others, as
	// the weighted, size and content strategies read it.
	TagWeight = "weight"
	// TagBoot is the node's boot id, 16 hex digits drawn at each start: a
	// node that restarted has a new one, so its peers know that the
	// transactions of its previous life are gone.
	TagBoot = "boot"
	// TagReady is "0" while the node judges itself not ready (it cannot
	// reach a write quorum or its catalog has not yet been compared with a
	// peer's: node/ready.go); DNS answers then leave it out. Absent or any
	// other value: ready (nodes that predate the tag).
	TagReady = "ready"
	// TagDraining is "1" while the node is being drained before it leaves
	// the array (node/drain.go): it is off every node's mirroring ring (no
	// new copies, its own copies do not count) and out of DNS answers.
	TagDraining = "draining"
)

// Status is a member's liveness as membership last judged it.
type Status int

const (
	StatusAlive  Status = iota
	StatusLeft          // left gracefully
	StatusFailed        // declared dead by failure detection
)

func (s Status) String() string {
	switch s {
	case StatusAlive:
		return "alive"
	case StatusLeft:
		return "left"
	case StatusFailed:
		return "failed"
	}
	return "unknown"
}

// EventKind says what changed about a member.
type EventKind int

const (
	EventJoin EventKind = iota
	EventLeave
	EventFail
	EventUpdate // tags changed
)

func (k EventKind) String() string {
	return [...]string{"join", "leave", "fail", "update"}[k]
}

// Event is one membership change.
type Event struct {
	Kind   EventKind
	Member Member
}

// Membership is the node's view of the array. Implementations: member.Serf
// (real), member.Static (one node, tests), and the simulator's model.
//
// Members and Local are safe for concurrent use. Events delivers every change
// after Subscribe in order; a subscriber that does not keep up loses nothing
// but may see events late (the channel is buffered by the implementation).
type Membership interface {
	// Local is this node.
	Local() Member
	// Members returns every known member, alive or not, sorted by Name.
	Members() []Member
	// Subscribe returns a channel of membership events and a function that
	// ends the subscription and closes the channel.
	Subscribe() (<-chan Event, func())
	// SetTags replaces this node's advertised tags.
	SetTags(tags map[string]string) error
	// Leave announces a graceful departure; Close stops all activity.
	Leave() error
	Close() error
}

// FaultHook lets tests inject faults at the named points of node code
// (node/fault lists them). Fault returns a non-nil error when the named
// point should fail. A nil FaultHook injects nothing. (The chaos suites
// use the same points' failpoints instead: fault.Inject asks both.)
type FaultHook interface {
	Fault(p fault.Point) error
}

// Cost charges virtual time for work that takes none inside the
// simulator: file I/O and computation are instant there, so the simulator
// models each node's disk and CPUs and makes the calling goroutine wait as
// long as that node's hardware would. Real mode leaves Env.Cost nil: the
// hardware charges for itself. Implementations block on channels and
// timers only (durably blocking), never on mutexes.
type Cost interface {
	// Disk waits until bytes are durable on the node's disk: queued behind
	// other writes, writes that arrive together sharing one sync.
	Disk(bytes int)
	// CPU waits while the node's CPUs process one message of bytes.
	CPU(bytes int)
}

// Clock is the node's wall clock: the time of day it stamps on what other
// nodes compare (catalog versions, Received times) and judges their stamps
// by (pending staleness, tombstone age). Real mode leaves Env.Clock nil:
// the operating system's clock, with whatever offset and drift the
// machine's has. The simulator gives each node one it can skew and make
// drift, as NTP-less or badly synced machines do.
//
// Only the wall reading is the node's own: durations, timeouts and
// deadlines (time.Since, time.After, the monotonic part of time.Now) are
// not skewed, as a real machine's monotonic clock is not stepped by NTP.
// So a Clock's Now is for stamps only; never subtract two of its readings
// to measure a duration.
type Clock interface {
	Now() time.Time
}

// LeaseObserver is told of the mailbox lock manager's grants and refusals,
// so that the simulator can check that no lease outlives its holder's
// failure. Its methods are called with the lock table's mutex held: they
// must return at once and never block. Real mode leaves Env.Leases nil.
type LeaseObserver interface {
	// Granted: this node, as lock manager, granted or renewed mailbox's
	// lease to owner (owners are "<node>/<id>").
	Granted(mailbox, owner string)
	// Refused: this node, as lock manager, refused mailbox's lease to
	// requester because holder holds it.
	Refused(mailbox, holder, requester string)
}

// Env is everything a node may touch outside its own memory.
type Env struct {
	Net        Net
	Rand       *Rand
	Membership Membership
	DataDir    string
	Log        *slog.Logger
	Fault      FaultHook
	Cost       Cost
	// Clock is the wall clock for stamps (nil: time.Now); see Clock.
	Clock Clock
	// Leases observes the lock manager (nil: nobody); see LeaseObserver.
	Leases LeaseObserver
}

// Wall is the node's wall-clock time, for stamps other nodes compare:
// Clock.Now, or time.Now without a Clock. Its monotonic reading, if any,
// is not the node's to trust across a skew: measure durations with
// time.Now and time.Since, not with Wall.
func (e *Env) Wall() time.Time {
	if e == nil || e.Clock == nil {
		return time.Now()
	}
	return e.Clock.Now()
}

// LeaseObserver returns the lease observer, or nil.
func (e *Env) LeaseObserver() LeaseObserver {
	if e == nil {
		return nil
	}
	return e.Leases
}

// ChargeDisk and ChargeCPU charge the cost model, if any.
func (e *Env) ChargeDisk(bytes int) {
	if e != nil && e.Cost != nil {
		e.Cost.Disk(bytes)
	}
}

func (e *Env) ChargeCPU(bytes int) {
	if e != nil && e.Cost != nil {
		e.Cost.CPU(bytes)
	}
}

// Inject reports whether the step at point p must fail: it asks the
// fault hook (none: no fault) and the point's failpoint (fault.Inject),
// with where naming the node for the failpoint (its name).
func (e *Env) Inject(p fault.Point, where string) error {
	var ask fault.Ask
	if e != nil && e.Fault != nil {
		ask = e.Fault.Fault
	}
	return fault.Inject(ask, p, where)
}

// Rand is a random stream safe for concurrent use. The simulator seeds one
// per node so a run is a function of its seed; real mode seeds from the OS.
// It embeds *rand.Rand, whose methods only draw from the locked source.
type Rand struct {
	*rand.Rand
}

// NewRand returns a stream seeded with seed.
func NewRand(seed uint64) *Rand {
	src := &lockedSource{src: rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)}
	return &Rand{Rand: rand.New(src)}
}

type lockedSource struct {
	mu  sync.Mutex
	src *rand.PCG
}

func (s *lockedSource) Uint64() uint64 {
	s.mu.Lock()
	v := s.src.Uint64()
	s.mu.Unlock()
	return v
}

// Jitter returns d plus up to frac of d at random. Timers of different
// nodes that would coincide to the nanosecond race in the simulator; jitter
// drawn from the node's stream keeps them apart and deterministic.
func (r *Rand) Jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 || frac <= 0 {
		return d
	}
	return d + time.Duration(r.Float64()*frac*float64(d))
}
