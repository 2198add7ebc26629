package strategy

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Strategy orders candidate nodes for one decision, best first.
//
// Order receives distinct candidates sorted by Name and returns a
// permutation of them (it may reorder the slice in place and return it).
// It must be deterministic in (req, nodes) and is called concurrently.
type Strategy interface {
	// Name is the strategy's name in List and in configuration.
	Name() string
	Order(req *Request, nodes []Node) []Node
}

// Request describes one decision.
type Request struct {
	// Key is what is being placed: the mailbox address for placement, the
	// question name for DNS. hash depends on it alone.
	Key string
	// Local is the name of the deciding node (the listener that took the
	// message, or the DNS node answering).
	Local string
	// Size of the message in bytes; 0 at DNS time.
	Size int64
	// Urgent is true for a message marked urgent (see Urgent); false at DNS
	// time.
	Urgent bool
	// Seq is the rotation index: sequential strategies rotate by it and
	// break ties with it.
	Seq uint64
	// Seed feeds the strategies that draw at random (Info.UsesSeed).
	Seed uint64
}

// Node is one candidate as a strategy sees it.
type Node struct {
	Name string
	// Weight is the node's static capacity weight (its advertised weight
	// tag), >= 1. It stands for the node's speed and bandwidth relative to
	// the others.
	Weight float64
	// Load is the node's latest load report.
	Load Load
}

// Load is what strategies know of a node's load.
type Load struct {
	// Known is false when the report is stale or the node did not answer:
	// the node then counts as fully loaded, whatever the other fields say.
	Known bool
	// Sessions is the number of SMTP sessions in flight.
	Sessions int
	// Queue is the depth of the node's replication push queues (entries).
	Queue int
	// LatencyMs is the recent delivery latency (EWMA, milliseconds).
	LatencyMs float64
	// FreeDiskBytes is the free space of the data directory; < 0 unknown.
	FreeDiskBytes int64
}

// FullyLoaded is the load (in units, see Config.Units) of a node whose load
// is not known.
const FullyLoaded = math.MaxInt64

// Config tunes how strategies read loads and messages. The same Config
// must be used by every node of an array, or their answers differ.
type Config struct {
	// LargeBytes: a message this large or larger is steered by size to
	// the nodes with the most free disk and capacity.
	LargeBytes int64
	// QueuePerUnit is how many queued push entries weigh as much as one
	// SMTP session in flight.
	QueuePerUnit int
	// LatencyMsPerUnit is how many milliseconds of recent delivery latency
	// weigh as much as one SMTP session in flight. It is also the step at
	// which content tells nodes' speeds apart (smaller differences are noise).
	LatencyMsPerUnit float64
	// LowDiskBytes: a node with less free disk than this is avoided as if
	// it carried LowDiskUnits more sessions.
	LowDiskBytes int64
	LowDiskUnits int64
}

// Limits of Config values.
const (
	minLargeBytes = 1 << 10
	maxUnits      = 1 << 30
)

// DefaultConfig returns the settings nodes use.
func DefaultConfig() Config {
	return Config{
		LargeBytes:       1 << 20, // 1 MiB: attachments, faxes, voicemail
		QueuePerUnit:     64,      // a push batch or so
		LatencyMsPerUnit: 25,      // several fsyncs: below it, latency is noise
		LowDiskBytes:     1 << 30, // 1 GiB left: stop steering mail there
		LowDiskUnits:     1000,    // more than any plausible session count
	}
}

// Validate reports nonsensical values.
func (c Config) Validate() error {
	var errs []error
	if c.LargeBytes < minLargeBytes {
		errs = append(errs, fmt.Errorf("strategy: config: LargeBytes %d must be >= %d", c.LargeBytes, minLargeBytes))
	}
	if c.QueuePerUnit < 1 {
		errs = append(errs, fmt.Errorf("strategy: config: QueuePerUnit %d must be >= 1", c.QueuePerUnit))
	}
	if !(c.LatencyMsPerUnit > 0) || math.IsInf(c.LatencyMsPerUnit, 0) {
		errs = append(errs, fmt.Errorf("strategy: config: LatencyMsPerUnit %v must be positive", c.LatencyMsPerUnit))
	}
	if c.LowDiskBytes < 0 {
		errs = append(errs, fmt.Errorf("strategy: config: LowDiskBytes %d must be >= 0", c.LowDiskBytes))
	}
	if c.LowDiskUnits < 0 || c.LowDiskUnits > maxUnits {
		errs = append(errs, fmt.Errorf("strategy: config: LowDiskUnits %d must be 0..%d", c.LowDiskUnits, maxUnits))
	}
	return errors.Join(errs...)
}

// Units sums a load into one comparable integer: sessions in flight, plus
// queued entries and latency converted to sessions, plus the low-disk
// penalty. An unknown load is FullyLoaded. Integers, not floats, so that
// nodes with nearly equal loads tie and the tie is broken by rotation
// instead of by noise.
func (c Config) Units(l Load) int64 {
	if !l.Known {
		return FullyLoaded
	}
	u := int64(max(l.Sessions, 0)) + int64(max(l.Queue, 0)/c.QueuePerUnit)
	if l.LatencyMs > 0 {
		u += int64(min(l.LatencyMs/c.LatencyMsPerUnit, maxUnits))
	}
	if l.FreeDiskBytes >= 0 && l.FreeDiskBytes < c.LowDiskBytes {
		u += c.LowDiskUnits
	}
	return u
}

// latencyUnits is the node's speed class for content: lower is faster.
func (c Config) latencyUnits(l Load) int64 {
	if !l.Known {
		return FullyLoaded
	}
	if l.LatencyMs <= 0 {
		return 0
	}
	return int64(min(l.LatencyMs/c.LatencyMsPerUnit, maxUnits))
}

// Info describes a built-in strategy.
type Info struct {
	Name string
	// Doc is a one-line description for --help and the README.
	Doc string
	// DNS and Placement say at which level the strategy may be configured.
	DNS, Placement bool
	// UsesLoad: the strategy reads Node.Load, so the node must poll its
	// peers' loads.
	UsesLoad bool
	// UsesSeed: the strategy reads Request.Seed, so the caller draws one
	// from Env.Rand per decision.
	UsesSeed bool
	// New builds the strategy.
	New func(Config) Strategy
}

// List returns the built-in strategies in their fixed order.
func List() []Info {
	return []Info{
		{Name: "roundrobin", Doc: "sequential, wrapping: rotate the candidates by the rotation index (the patent's preferred method)",
			DNS: true, Placement: true, New: func(Config) Strategy { return RoundRobin{} }},
		{Name: "random", Doc: "a uniform random order drawn from the node's seeded stream",
			DNS: true, Placement: true, UsesSeed: true, New: func(Config) Strategy { return Random{} }},
		{Name: "leastload", Doc: "least queried load first (sessions in flight, queue depth, recent latency, free disk); ties rotate",
			DNS: true, Placement: true, UsesLoad: true, New: func(c Config) Strategy { return LeastLoad{Config: c} }},
		{Name: "p2c", Doc: "power of two random choices on load, repeated for each position",
			DNS: true, Placement: true, UsesLoad: true, UsesSeed: true, New: func(c Config) Strategy { return P2C{Config: c} }},
		{Name: "weighted", Doc: "static capacity weights: the first node is drawn in proportion to its weight by a hash of the rotation index",
			DNS: true, Placement: true, New: func(Config) Strategy { return Weighted{} }},
		{Name: "size", Doc: "large messages to the nodes with the most free disk and capacity; others round-robin",
			DNS: true, Placement: true, UsesLoad: true, New: func(c Config) Strategy { return Size{Config: c} }},
		{Name: "content", Doc: "urgent messages (Priority: urgent, X-Priority: 1, Importance: high) to the fastest nodes; others round-robin",
			DNS: true, Placement: true, UsesLoad: true, New: func(c Config) Strategy { return Content{Config: c} }},
		{Name: "hash", Doc: "rendezvous hash of the mailbox (DNS: of the name): static placement, kept for comparison",
			DNS: true, Placement: true, New: func(Config) Strategy { return Hash{} }},
		{Name: "local", Doc: "placement only: the receiving node, then its mirrors from the mirroring table (the default)",
			Placement: true, New: func(Config) Strategy { return Local{} }},
	}
}

// ErrUnknown is returned by Lookup and New for a name not in List.
var ErrUnknown = errors.New("strategy: unknown strategy")

// Lookup returns the built-in named name.
func Lookup(name string) (Info, error) {
	for _, s := range List() {
		if s.Name == name {
			return s, nil
		}
	}
	return Info{}, fmt.Errorf("%w %q (known: %s)", ErrUnknown, name, strings.Join(Names(), ", "))
}

// Names lists the built-ins' names in List's order.
func Names() []string {
	l := List()
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = s.Name
	}
	return out
}

// New builds the built-in named name with cfg.
func New(name string, cfg Config) (Strategy, error) {
	s, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return s.New(cfg), nil
}

// Slot is the index of the period of length every that contains now: all
// nodes whose clocks agree compute the same slot, which is what makes
// time-based rotation the same on every node.
func Slot(now time.Time, every time.Duration) uint64 {
	if every <= 0 {
		panic("strategy: Slot needs a positive period")
	}
	return uint64(now.UnixNano() / int64(every))
}
