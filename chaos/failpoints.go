package chaos

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pingcap/failpoint"

	"mailarray/node/env"
	"mailarray/node/fault"
)

// Failpoint is one fault point of node code (node/fault) that the matrix
// fails. Node code asks fault.Inject at the point, whose one
// failpoint.InjectCall marker ordinary builds compile to nothing; `make
// chaos` rewrites a scratch copy of the module with failpoint-ctl
// (chaos/run.sh), which turns the marker into a call of whatever function
// a suite registered with failpoint.EnableCall under the point's Path.
// That function gets the node (or its store path) and a pointer to the
// error the step is about to return, and sets it to inject the fault.
type Failpoint struct {
	// Name is the point.
	Name fault.Point
	// Where is the file and function of each call site (markers_test.go
	// checks the files).
	Where string
	// Effect is what an injected fault does.
	Effect string
	// Unreached names the phases (Phases) in which the run never reaches
	// the marker, with the reason: the matrix has no cell there.
	Unreached map[string]string
}

// Path is the point's name in the failpoint registry (EnableCall).
func (f Failpoint) Path() string { return f.Name.Path() }

// Why a marker is not reached in a phase.
const (
	noCopyWrites = "no copy is written after the load stops unless a node is lost"
	noRebuild    = "rebuild runs only when a node is lost"
	noMail       = "no mail arrives after the load stops"
)

// Failpoints lists the fault points the matrix fails, in a fixed order
// (the order of the report). A point added to node/fault must be listed
// here or in notInMatrix (TestFaultPoints).
func Failpoints() []Failpoint {
	return []Failpoint{
		{Name: fault.StoreWrite, Where: "node/deliver.go storeMessage, writeLocal",
			Effect:    "a copy and its pending entry are not written on this node (the listener's own copy, or a peer's PUT)",
			Unreached: map[string]string{"after-ack": noCopyWrites}},
		{Name: fault.StoreSync, Where: "node/store/store.go Store.commit",
			Effect: "a group commit fails as a whole, as if the disk refused the sync: nothing of the group is written"},
		{Name: fault.MirrorSend, Where: "node/deliver.go writeCopy",
			Effect:    "a copy is not sent to its peer (delivery and rebuild)",
			Unreached: map[string]string{"after-ack": noCopyWrites}},
		{Name: fault.MirrorAck, Where: "node/peer/client.go Client.PutCopy",
			Effect:    "a copy lands on the peer but its acknowledgement is lost",
			Unreached: map[string]string{"after-ack": noCopyWrites}},
		{Name: fault.CatalogApply, Where: "node/catalog/catalog.go Catalog.Apply",
			Effect: "a catalog merge (commit, push, anti-entropy, rebuild, deletion) is not applied on this node"},
		{Name: fault.CatalogAntiEntropy, Where: "node/replica/antientropy.go Replicator.syncWith",
			Effect: "an anti-entropy round fails before it starts"},
		{Name: fault.RebuildCopy, Where: "node/replica/maintain.go Replicator.repair",
			Effect:    "the rebuild of one under-replicated message fails",
			Unreached: map[string]string{"before-ack": noRebuild, "after-ack": noRebuild}},
		{Name: fault.POP3Delete, Where: "node/retrieve.go maildrop.Commit",
			Effect: "a POP3 QUIT's deletions fail (the client gets -ERR)"},
		{Name: fault.LoadQuery, Where: "node/load.go loadTracker.poll",
			Effect: "a peer's load report is lost (the strategy sees it unknown)"},
		{Name: fault.PipelineFilter, Where: "node/inbound.go faultFilter.Check",
			Effect:    "the inbound pipeline's filter fails on a message",
			Unreached: map[string]string{"after-ack": noMail, "during-rebuild": noMail}},
	}
}

// notInMatrix are the points of node/fault the matrix does not fail, and
// why: each fails a step that a listed failpoint fails too, or is left to
// node tests.
var notInMatrix = map[fault.Point]string{
	fault.SMTPDeliver:   "refuses a DATA before the pipeline, as pipeline.filter does",
	fault.PeerApply:     "refuses pushed entries; catalog.apply fails those merges and all others",
	fault.CatalogCommit: "fails the local apply of a commit batch; catalog.apply fails the same apply",
	fault.PeerFetch:     "fails serving copies (503); node/peer's tests cover it",
}

// ErrInjected is wrapped by every fault a Plan injects.
var ErrInjected = errors.New("chaos: injected fault")

// Window is a span of virtual time since the load started: [From, To).
type Window struct {
	From, To time.Duration
}

func (w Window) contains(d time.Duration) bool { return d >= w.From && d < w.To }

func (w Window) String() string { return fmt.Sprintf("[%v, %v)", w.From, w.To) }

// Count is what a Plan saw of one failpoint.
type Count struct {
	Calls    int64         // times the marker ran
	Eligible int64         // of those, inside the fault window
	Fired    int64         // faults injected
	First    time.Duration // first call, since the load started (when Calls > 0)
}

// Plan decides, for one run, which calls of which failpoints fail. Every
// decision is drawn from a stream per (failpoint, node) seeded by the
// run's seed, in the order the node makes the calls; the simulator replays
// that order from its seed, so a run and its faults repeat exactly.
//
// A marker's first call inside the window always fails (so every point the
// run reaches is proven to fire); later ones fail with Probability.
type Plan struct {
	seed        uint64
	points      map[string]bool // names of the enabled failpoints
	window      Window
	probability float64
	loadStart   time.Time // virtual instant the simulator's load starts

	mu      sync.Mutex
	streams map[string]*env.Rand // failpoint + "@" + node
	counts  map[string]*Count
}

// Bubble timing of the simulator (sim/run.go): synctest's fake clock starts
// at midnight UTC 2000-01-01; sim.Run starts the nodes simNodeStagger apart
// (sleeping after each), then warms up simWarmup, then starts the load.
// The chaos suite checks the estimate against the load generator's first
// transaction (TestSimChaosClock).
const (
	simWarmup      = time.Second
	simNodeStagger = 3 * time.Millisecond
)

// LoadStart is the virtual instant at which sim.Run starts the load of a
// scenario with nodes initial (non-spare) nodes.
func LoadStart(nodes int) time.Time {
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	return epoch.Add(time.Duration(nodes)*simNodeStagger + simWarmup)
}

// NewPlan returns a plan that fails the named failpoints inside window
// (virtual time since loadStart) with probability p.
func NewPlan(seed uint64, names []string, window Window, p float64, loadStart time.Time) *Plan {
	pl := &Plan{seed: seed, points: map[string]bool{}, window: window, probability: p, loadStart: loadStart,
		streams: map[string]*env.Rand{}, counts: map[string]*Count{}}
	for _, n := range names {
		pl.points[n] = true
	}
	return pl
}

// Enable registers the plan's callback on every failpoint of Failpoints
// (the ones the plan does not fail are counted only) and returns the
// function that disables them. failpoint.EnableCall succeeds whether or
// not the code was rewritten: only the counts prove a point fired.
func (pl *Plan) Enable() (disable func(), err error) {
	var done []string
	disable = func() {
		for _, p := range done {
			failpoint.Disable(p)
		}
	}
	for _, fp := range Failpoints() {
		if err := failpoint.EnableCall(fp.Path(), pl.callback(string(fp.Name))); err != nil {
			disable()
			return nil, fmt.Errorf("chaos: enable %s: %w", fp.Path(), err)
		}
		done = append(done, fp.Path())
	}
	return disable, nil
}

// callback is the function the rewritten marker name calls.
func (pl *Plan) callback(name string) func(where string, errp *error) {
	return func(where string, errp *error) {
		pl.decide(name, where, time.Now(), errp)
	}
}

// decide counts one call of failpoint name on where (a node name or a
// path in the node's data directory) at virtual instant now, and sets
// *errp when the call must fail.
func (pl *Plan) decide(name, where string, now time.Time, errp *error) {
	node := nodeOf(where)
	pl.mu.Lock()
	defer pl.mu.Unlock()
	c := pl.counts[name]
	if c == nil {
		c = &Count{First: now.Sub(pl.loadStart)}
		pl.counts[name] = c
	}
	c.Calls++
	if !pl.points[name] || *errp != nil || !pl.window.contains(now.Sub(pl.loadStart)) {
		return
	}
	c.Eligible++
	key := name + "@" + node
	r := pl.streams[key]
	if r == nil {
		r = env.NewRand(streamSeed(pl.seed, key))
		pl.streams[key] = r
	}
	if c.Fired == 0 || r.Float64() < pl.probability {
		c.Fired++
		*errp = fmt.Errorf("%w: %s on %s", ErrInjected, name, node)
	}
}

// Counts returns the counts of every failpoint of Failpoints, by name.
func (pl *Plan) Counts() map[string]Count {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	out := map[string]Count{}
	for _, fp := range Failpoints() {
		if c := pl.counts[string(fp.Name)]; c != nil {
			out[string(fp.Name)] = *c
		} else {
			out[string(fp.Name)] = Count{}
		}
	}
	return out
}

// Targets lists the failpoints the plan fails, in Failpoints order.
func (pl *Plan) Targets() []string {
	var out []string
	for _, fp := range Failpoints() {
		if pl.points[string(fp.Name)] {
			out = append(out, string(fp.Name))
		}
	}
	return out
}

// nodeOf maps a marker's where argument to a node name: node markers pass
// the node's name, store and catalog markers the store's path
// (<data dir>/<node>/node.db in the simulator).
func nodeOf(where string) string {
	if !strings.ContainsRune(where, filepath.Separator) {
		return where
	}
	return filepath.Base(filepath.Dir(where))
}

// streamSeed derives a stream's seed from the run's seed and the stream's
// key (FNV-1a, then splitmix64 to spread it).
func streamSeed(seed uint64, key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	z := h ^ seed*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// failpointNames returns the names of Failpoints, in order.
func failpointNames() []string {
	fps := Failpoints()
	out := make([]string, len(fps))
	for i, fp := range fps {
		out[i] = string(fp.Name)
	}
	return out
}
