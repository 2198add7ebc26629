package chaos

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"mailarray/node/catalog"
	"mailarray/node/store"
	"mailarray/sim"
)

// TimeCells are the cells of the time faults (sim/timefaults.go): no
// failpoint fails, the schedule itself is the fault. What proves that each
// fired is in the report (ProveFaults): every fault and its undo applied
// without error, and its effect measured.
func TimeCells() []Cell {
	return []Cell{
		{Group: "time", Name: "pause-listener",
			Doc:    "n2 is paused (SIGSTOP) 1 s into the load for 31 s, longer than PendingTimeout (30 s): the transactions it listens to freeze, the others declare it failed and resolve what it left pending; then it resumes (SIGCONT) with 16 s left to settle",
			Window: Window{time.Second, 32 * time.Second},
			Faults: []string{"{at: 1s, action: pause, node: n2, for: 31s}"}},
		{Group: "time", Name: "pause-short",
			Doc:    "n3 is paused for 3 s mid-load, longer than detection (1 s): it is declared failed, then refutes and rejoins",
			Window: Window{time.Second, 4 * time.Second},
			Faults: []string{"{at: 1s, action: pause, node: n3, for: 3s}"}},
		{Group: "time", Name: "skew-clocks",
			Doc:    "n2's wall clock is stepped 30 s ahead and n3's 30 s behind as the load starts, both drifting (±500 ppm)",
			Window: Window{0, 3 * time.Second},
			Faults: []string{
				"{at: 0s, action: skew_clock, node: n2, offset: 30s, drift_ppm: 500}",
				"{at: 0s, action: skew_clock, node: n3, offset: -30s, drift_ppm: -500}"}},
		{Group: "time", Name: "stall-link",
			Doc:    "the n1-n2 link holds every packet both ways for 5 s mid-load (no loss; membership sees both alive)",
			Window: Window{time.Second, 6 * time.Second},
			Faults: []string{"{at: 1s, action: stall_link, nodes: [n1, n2], for: 5s}"}},
		{Group: "time", Name: "slow-link",
			Doc:    "every path of n4 takes 300 ms one way for 4 s mid-load",
			Window: Window{time.Second, 5 * time.Second},
			Faults: []string{"{at: 1s, action: slow_link, nodes: [n4], latency: 300ms, for: 4s}"}},
		{Group: "time", Name: "crash-reader",
			Doc:    "busy readers (" + busyReadersDoc + "); n2 crashes 2 s into the load and stays down: a session it served holds the hot mailbox's lease",
			Window: Window{2 * time.Second, 3 * time.Second},
			Faults: []string{"{at: 500ms, action: slow_link, nodes: [n2], latency: 200ms, for: 20s}", "{at: 2s, action: crash, node: n2}"}},
		{Group: "time", Name: "pause-reader",
			Doc:    "busy readers (" + busyReadersDoc + "); n2 is paused 2 s into the load for 20 s: its sessions freeze holding their leases",
			Window: Window{2 * time.Second, 22 * time.Second},
			Faults: []string{"{at: 500ms, action: slow_link, nodes: [n2], latency: 200ms, for: 20s}", "{at: 2s, action: pause, node: n2, for: 20s}"}},
	}
}

// busyReaders are the cells whose POP3 readers keep one hot mailbox
// locked most of the time, so that a crash or a pause is likely to catch
// a session holding its lease: the lease rule's cells.
var busyReaders = map[string]bool{"time/crash-reader": true, "time/pause-reader": true}

const busyReadersDoc = "8 readers every ~100 ms, up to 20 messages each, recipients Zipf s=3: one mailbox gets most of the mail"

// tweakScenario adjusts the base scenario for the cells that need another
// load.
func tweakScenario(c Cell, sc *sim.Scenario) {
	if busyReaders[c.ID()] {
		sc.Load.Readers = 8
		sc.Load.ReadInterval = sim.Duration(100 * time.Millisecond)
		sc.Load.ReadMax = 20
		sc.Load.ZipfS = 3
	}
}

// ProveFaults checks that the time faults of cell fired in the run of
// rep (node files under dir): each applied without error with its undo,
// and had its effect. It returns what is not proven; empty for a cell
// without time faults.
func ProveFaults(cell Cell, rep *sim.Report, dir string) []string {
	var out []string
	byAction := map[string][]sim.FaultResult{}
	for _, f := range rep.Faults {
		if f.Error != "" {
			out = append(out, fmt.Sprintf("fault %s %s%s at %.3fs failed: %s", f.Action, f.Node, f.Nodes, f.AtS, f.Error))
		}
		byAction[f.Action] = append(byAction[f.Action], f)
	}
	// A skewed node that took no SMTP mail in the run leaves nothing to
	// compare (at some seeds one listener gets none in the 3 s of load):
	// the cell is proven if another skewed listener shows its offset.
	var skewNoMail []string
	skewProven := 0
	for _, line := range cell.Faults {
		var f sim.FaultSpec
		if err := yaml.Unmarshal([]byte(line), &f); err != nil {
			out = append(out, fmt.Sprintf("fault %q: %v", line, err))
			continue
		}
		switch f.Action {
		case sim.FaultPause:
			out = append(out, provePause(f, byAction[sim.FaultResume])...)
		case sim.FaultSkewClock:
			why := proveSkew(f, rep, dir)
			if len(why) > 0 && strings.Contains(why[0], noMailToCompare) {
				skewNoMail = append(skewNoMail, why...)
				continue
			}
			skewProven += btoi(len(why) == 0)
			out = append(out, why...)
		case sim.FaultStallLink, sim.FaultSlowLink:
			out = append(out, proveLink(f, byAction[sim.FaultRestoreLink])...)
		}
	}
	if len(skewNoMail) > 0 && skewProven == 0 {
		out = append(out, skewNoMail...)
	}
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// noMailToCompare marks proveSkew's answer for a skewed node that
// accepted no mail.
const noMailToCompare = "nothing to compare"

// provePause: the resume came, the node sent and received nothing while
// paused, and the pause held packets or parked goroutines.
func provePause(f sim.FaultSpec, resumes []sim.FaultResult) []string {
	i := slices.IndexFunc(resumes, func(r sim.FaultResult) bool { return r.Node == f.Node })
	if i < 0 {
		return []string{fmt.Sprintf("pause %s: no resume in the report", f.Node)}
	}
	ev := resumes[i].Evidence
	var out []string
	if ev["sent"] != 0 || ev["received"] != 0 {
		out = append(out, fmt.Sprintf("pause %s: the paused node exchanged packets: %v", f.Node, ev))
	}
	if ev["held_packets"]+ev["parked"] == 0 {
		out = append(out, fmt.Sprintf("pause %s: nothing was held or parked: %v", f.Node, ev))
	}
	// The resume is applied when the fault goroutine gets to it: late, if
	// another fault it applies waits (a crash waits for the node's
	// goroutines).
	if want := f.For.D().Milliseconds(); want > 0 && ev["paused_ms"] < want {
		out = append(out, fmt.Sprintf("pause %s: paused %d ms, want at least %d", f.Node, ev["paused_ms"], want))
	}
	return out
}

// proveLink: the link was restored, and the stall held packets or the
// slow link delayed one by at least its latency.
func proveLink(f sim.FaultSpec, restores []sim.FaultResult) []string {
	nodes := strings.Join(f.Nodes, ",")
	i := slices.IndexFunc(restores, func(r sim.FaultResult) bool { return r.Nodes == nodes })
	if i < 0 {
		return []string{fmt.Sprintf("%s %s: no restore_link in the report", f.Action, nodes)}
	}
	ev := restores[i].Evidence
	switch {
	case f.Action == sim.FaultStallLink && ev["held_packets"] == 0:
		return []string{fmt.Sprintf("stall_link %s: held nothing: %v", nodes, ev)}
	case f.Action == sim.FaultSlowLink && ev["max_delay_ms"] < f.Latency.D().Milliseconds():
		return []string{fmt.Sprintf("slow_link %s: slowest packet %d ms, latency %v: %v", nodes, ev["max_delay_ms"], f.Latency, ev)}
	}
	return nil
}

// skewTolerance bounds how far a skewed listener's stamps may stray from
// the skew the fault set (the drift over the run, rounding).
const skewTolerance = time.Second

// proveSkew: the messages the skewed node accepted carry its skewed wall
// clock. Their catalog entries' Received stamps, less the virtual time of
// their 250, sit f.Offset away from those of the unskewed listeners, and
// their versions are no older than their stamps (the hybrid clock
// followed the skewed wall clock).
func proveSkew(f sim.FaultSpec, rep *sim.Report, dir string) []string {
	skewed := map[string]bool{}
	for _, g := range rep.Config.Faults {
		if g.Action == sim.FaultSkewClock {
			skewed[g.Node] = true
		}
	}
	entries, err := catalogEntries(rep, dir)
	if err != nil {
		return []string{fmt.Sprintf("skew_clock %s: %v", f.Node, err)}
	}
	var mine, plain []time.Duration
	for _, rec := range rep.Records {
		e, ok := entries[rec.CopyID()]
		if rec.Outcome != sim.Accepted || !ok || rec.Done < f.At.D() {
			continue
		}
		d := time.Duration(e.Received) - rec.Done
		switch {
		case rec.Node == f.Node:
			mine = append(mine, d)
			if e.Version < uint64(e.Received) {
				return []string{fmt.Sprintf("skew_clock %s: %s has version %d below its Received %d", f.Node, e.ID, e.Version, e.Received)}
			}
		case !skewed[rec.Node]:
			plain = append(plain, d)
		}
	}
	if len(mine) == 0 || len(plain) == 0 {
		return []string{fmt.Sprintf("skew_clock %s: %d messages accepted by it, %d by unskewed listeners: nothing to compare", f.Node, len(mine), len(plain))}
	}
	got := median(mine) - median(plain)
	if (got - f.Offset.D()).Abs() > skewTolerance {
		return []string{fmt.Sprintf("skew_clock %s: its Received stamps are %v off the others', want %v", f.Node, got, f.Offset)}
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// catalogEntries is the union of the live nodes' catalogs (first node's
// version of an entry wins).
func catalogEntries(rep *sim.Report, dir string) (map[string]catalog.Entry, error) {
	out := map[string]catalog.Entry{}
	for _, nr := range rep.Nodes {
		if nr.State != "alive" {
			continue
		}
		st, err := store.Open(store.Options{Path: filepath.Join(dir, nr.Name, storeFile), OpenTimeout: checkerOpenTimeout})
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", nr.Name, err)
		}
		cat, err := catalog.Open(st, slog.New(slog.DiscardHandler))
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("node %s: %w", nr.Name, err)
		}
		cat.ForEach(func(e *catalog.Entry) bool {
			if _, ok := out[e.ID]; !ok {
				out[e.ID] = *e
			}
			return true
		})
		st.Close()
	}
	return out, nil
}
