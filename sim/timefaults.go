package sim

import (
	"fmt"
	"math"

	"sync/atomic"
	"time"

	"mailarray/node/env"
)

// Time faults: a node's wall clock skewed and drifting, a paused node
// (SIGSTOP/SIGCONT), a slow or stalled link. Unlike crash or lossy_link,
// none of them makes anything fail: they delay, freeze or mislead.
const (
	// FaultSkewClock steps node's wall clock to offset from true time and
	// makes it drift by drift_ppm from then on.
	FaultSkewClock = "skew_clock"
	// FaultPause freezes node (SIGSTOP) until a resume or for `for`.
	FaultPause = "pause"
	// FaultResume resumes a paused node (SIGCONT).
	FaultResume = "resume"
	// FaultSlowLink sets the latency of the path between nodes (one or
	// two; one: every path of that node) to latency.
	FaultSlowLink = "slow_link"
	// FaultStallLink holds every packet on that path, losing none.
	FaultStallLink = "stall_link"
	// FaultRestoreLink gives the path the scenario's link model back and
	// releases what a stall held (also lifts a lossy_link).
	FaultRestoreLink = "restore_link"
)

var timeFaultActions = []string{FaultSkewClock, FaultPause, FaultResume, FaultSlowLink, FaultStallLink, FaultRestoreLink}

// Limits of the time faults.
const (
	maxClockOffset   = 24 * time.Hour
	maxClockDriftPPM = 100_000 // 10%: far beyond any crystal, still a clock
	maxLinkLatency   = time.Minute
)

func validateSkew(key string, offset Duration, ppm float64, bad func(key, f string, a ...any)) {
	if offset.D().Abs() > maxClockOffset {
		bad(key, "%v must be within ±%v", offset, maxClockOffset)
	}
	if math.IsNaN(ppm) || math.Abs(ppm) > maxClockDriftPPM {
		bad(key, "drift %v ppm must be within ±%d", ppm, maxClockDriftPPM)
	}
}

// validateTimeFault checks fault f (at key) of a time-fault action.
func (sc *Scenario) validateTimeFault(key string, f *FaultSpec, node func(key, name string), bad func(key, f string, a ...any)) {
	if f.For < 0 {
		bad(key+".for", "must be >= 0")
	}
	if f.For > 0 {
		switch f.Action {
		case FaultPause, FaultSlowLink, FaultStallLink:
		default:
			bad(key+".for", "only pause, slow_link and stall_link take a duration")
		}
		if end := sc.Duration + sc.Drain; f.At+f.For >= end {
			bad(key+".for", "%v after %v ends after the run (%v)", f.For, f.At, end)
		}
	}
	switch f.Action {
	case FaultSkewClock:
		node(key+".node", f.Node)
		validateSkew(key+".offset", f.Offset, f.DriftPPM, bad)
	case FaultPause, FaultResume:
		node(key+".node", f.Node)
	case FaultSlowLink, FaultStallLink, FaultRestoreLink:
		if len(f.Nodes) < 1 || len(f.Nodes) > 2 {
			bad(key+".nodes", "a %s names one or two nodes", f.Action)
		}
		for _, n := range f.Nodes {
			node(key+".nodes", n)
		}
		if f.Action == FaultSlowLink && (f.Latency <= 0 || f.Latency.D() > maxLinkLatency) {
			bad(key+".latency", "%v must be in (0, %v]", f.Latency, maxLinkLatency)
		}
	}
}

// countUndos counts the faults whose `for` schedules an undo: the fault
// channel must hold them too, since the driver must never block on it.
func countUndos(faults []FaultSpec) int {
	k := 0
	for _, f := range faults {
		if f.For > 0 {
			k++
		}
	}
	return k
}

// applyTimeFault performs a time fault; s.evidence gets what it did.
func (s *simulation) applyTimeFault(f FaultSpec) error {
	sn := s.byName[f.Node]
	switch f.Action {
	case FaultSkewClock:
		sn.clock.set(f.Offset.D(), f.DriftPPM)
		s.evidence = map[string]int64{"wall_offset_ms": sn.clock.Now().Sub(time.Now()).Milliseconds()}
	case FaultPause:
		if sn.state != stateAlive || sn.paused {
			return fmt.Errorf("sim: pause %s: node is %s", f.Node, s.stateOf(sn))
		}
		s.pauseNode(sn)
		s.leases.down(sn.spec.Name, sn.inc, time.Now())
	case FaultResume:
		if !sn.paused {
			return fmt.Errorf("sim: resume %s: node is %s", f.Node, s.stateOf(sn))
		}
		s.evidence = s.resumeNode(sn)
		s.leases.up(sn.spec.Name, sn.inc)
	case FaultSlowLink, FaultStallLink, FaultRestoreLink:
		s.linkFault(f)
	}
	if f.For > 0 {
		undo := FaultSpec{Action: FaultRestoreLink, Nodes: f.Nodes, Oneway: f.Oneway}
		if f.Action == FaultPause {
			undo = FaultSpec{Action: FaultResume, Node: f.Node}
		}
		undo.At = f.At + f.For
		s.net.AfterFunc(f.For.D(), "faults", func() { s.faultc <- undo })
	}
	return nil
}

func (s *simulation) stateOf(sn *simNode) string {
	if sn.paused {
		return "paused"
	}
	return sn.state
}

// linkFault changes the paths of f.Nodes: between the two, or from the one
// to every other node and client.
func (s *simulation) linkFault(f FaultSpec) {
	a := s.byName[f.Nodes[0]].ip
	var bs []string
	if len(f.Nodes) == 2 {
		bs = []string{s.byName[f.Nodes[1]].ip}
	} else {
		for _, other := range s.nodes {
			if other.ip != a {
				bs = append(bs, other.ip)
			}
		}
		bs = append(bs, s.load.clientIPs()...)
	}
	cfg := s.sc.Link.config()
	var held int
	var slowest time.Duration
	switch f.Action {
	case FaultRestoreLink:
		held, slowest = s.net.Held(a), s.net.MaxDelay(a)
	case FaultSlowLink:
		s.net.MaxDelay(a) // count from now
	}
	for _, b := range bs {
		switch f.Action {
		case FaultSlowLink:
			slow := cfg
			slow.Latency = f.Latency.D()
			s.net.SetPath(a, b, slow, f.Oneway)
		case FaultStallLink:
			s.net.StallLink(a, b, f.Oneway, true)
		case FaultRestoreLink:
			s.net.StallLink(a, b, f.Oneway, false)
			s.net.SetPath(a, b, cfg, f.Oneway)
		}
	}
	if f.Action == FaultRestoreLink {
		s.evidence = map[string]int64{"held_packets": int64(held), "max_delay_ms": slowest.Milliseconds()}
	}
}

// unpauseToCrash resumes a paused node's host and goroutines, without
// telling membership, just before it crashes: the parked goroutines must
// run to see their sockets closed, or the node's Close would wait for
// them forever.
func (s *simulation) unpauseToCrash(sn *simNode) {
	if !sn.paused {
		return
	}
	sn.paused = false
	sn.host.Resume()
	sn.cost.resume()
	s.cluster.clearPause(sn.spec.Name)
}

// resumeAll resumes every node still paused when the run ends, before
// teardown closes them.
func (s *simulation) resumeAll() {
	for _, sn := range s.nodes {
		if sn.paused {
			sn.paused = false
			sn.host.Resume()
			sn.cost.resume()
		}
	}
}

// skewClock is a node's wall clock (env.Clock): true (virtual) time plus
// an offset that drifts. Without a skew it is time.Now, exactly, so runs
// without clock faults are unchanged.
type skewClock struct {
	p atomic.Pointer[skew]
}

var _ env.Clock = (*skewClock)(nil)

type skew struct {
	offset time.Duration // at anchor
	ppm    float64
	anchor time.Time
}

func newSkewClock(offset time.Duration, ppm float64) *skewClock {
	c := &skewClock{}
	if offset != 0 || ppm != 0 {
		c.set(offset, ppm)
	}
	return c
}

// set steps the clock to offset from true time now, drifting by ppm from
// now on.
func (c *skewClock) set(offset time.Duration, ppm float64) {
	c.p.Store(&skew{offset: offset, ppm: ppm, anchor: time.Now()})
}

// Now is the node's wall time. A skewed reading carries no monotonic
// clock (Round(0)): a duration measured between two of them is the wall
// clock's, as a real node's would be, and nothing mistakes it for
// monotonic time.
func (c *skewClock) Now() time.Time {
	t := time.Now()
	s := c.p.Load()
	if s == nil {
		return t
	}
	d := s.offset
	if s.ppm != 0 {
		d += time.Duration(float64(t.Sub(s.anchor)) * s.ppm / 1e6)
	}
	return t.Add(d).Round(0)
}
