package chaos

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"mailarray/sim"
)

// simDataDir is a fresh directory for a run's node files, in memory when
// the machine has /dev/shm (file I/O is most of a short run's wall time),
// removed after the test.
func simDataDir(t *testing.T) string {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "mailarray-chaos-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// initialNodes counts the nodes sim.Run starts before the load.
func initialNodes(sc sim.Scenario) int {
	n := 0
	for _, spec := range sc.Nodes {
		if !spec.Spare {
			n++
		}
	}
	return n
}

// simRun is one finished run: its report, data directory and plan.
type simRun struct {
	rep  *sim.Report
	dir  string
	plan *Plan
}

// runSim runs cell with seed under its fault plan; the node files stay in
// the returned directory until the test ends. An error means the run did
// not finish (the simulator failed or panicked).
func runSim(t *testing.T, cell Cell, seed uint64) (simRun, error) {
	t.Helper()
	sc, err := cell.Scenario(seed)
	if err != nil {
		return simRun{}, err
	}
	plan := NewPlan(seed, cell.Targets, cell.Window, cell.Probability, LoadStart(initialNodes(sc)))
	disable, err := plan.Enable()
	if err != nil {
		return simRun{}, err
	}
	defer disable()
	dir := simDataDir(t)
	opts := sim.Options{DataDir: dir}
	if os.Getenv("SIM_LOG") != "" {
		opts.Log = os.Stderr
	}
	rep, err := guardedRun(t, sc, opts)
	if err != nil {
		return simRun{}, fmt.Errorf("cell %s seed %d: %w", cell.ID(), seed, err)
	}
	return simRun{rep: rep, dir: dir, plan: plan}, nil
}

// mustRunSim is runSim for tests that cannot go on without the run.
func mustRunSim(t *testing.T, cell Cell, seed uint64) simRun {
	t.Helper()
	r, err := runSim(t, cell, seed)
	require.NoError(t, err)
	return r
}

// guardedRun is sim.Run, with a panic turned into an error: a synctest
// deadlock (goroutines left blocked when the run ends) panics, and one bad
// run must not end the whole suite before its summary is written. The
// blocked goroutines stay blocked in their dead bubble.
func guardedRun(t *testing.T, sc sim.Scenario, opts sim.Options) (rep *sim.Report, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the simulator panicked: %v", r)
		}
	}()
	return sim.Run(t, sc, opts)
}

// runCell runs cell with seed and checks the invariants; a run that did
// not finish is reported in RunResult.Err.
func runCell(t *testing.T, cell Cell, seed uint64) RunResult {
	t.Helper()
	rr := RunResult{Cell: cell.ID(), Seed: seed}
	r, err := runSim(t, cell, seed)
	if err != nil {
		rr.Err = err.Error()
		return rr
	}
	res, err := Check(r.rep, r.dir)
	if err != nil {
		rr.Err = err.Error()
		return rr
	}
	rr.Counts, rr.Check = r.plan.Counts(), res
	rr.Offered, rr.Accepted, rr.Rejected, rr.Failed, rr.SimLost = r.rep.Offered, r.rep.Accepted, r.rep.Rejected, r.rep.Failed, r.rep.Lost
	rr.Dropped = r.rep.DroppedCopies
	for _, n := range r.rep.Nodes {
		rr.Nodes += fmt.Sprintf("%s:%s/%d smtp/%d copies/%d rebuilt ", n.Name, n.State, n.SMTPAccepted, n.Copies, n.RebuiltCopies)
	}
	for _, name := range cell.Targets {
		if rr.Counts[name].Fired == 0 {
			rr.NotFired = append(rr.NotFired, name)
		}
	}
	rr.Unproven = ProveFaults(cell, r.rep, r.dir)
	// Scheduled faults prove they fired by applying without error.
	for _, f := range r.rep.Faults {
		if f.Error != "" {
			rr.FaultErrors = append(rr.FaultErrors, fmt.Sprintf("%s %s at %.3fs: %s", f.Action, f.Node, f.AtS, f.Error))
		}
	}
	// A fault with a length (for:) adds its own undo (resume, restore_link).
	if len(r.rep.Faults) < len(cell.Faults) {
		rr.FaultErrors = append(rr.FaultErrors, fmt.Sprintf("%d of %d scheduled faults applied before the run ended", len(r.rep.Faults), len(cell.Faults)))
	}
	return rr
}

// replayCommand is the one command that reruns the test called name
// (t.Name()) with the failpoints compiled in; seeds is the suite's seed
// count, which a seed beyond the default needs.
func replayCommand(name string, seeds, defaultSeeds int) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	prefix := os.Getenv("CHAOS_REPLAY")
	if prefix == "" {
		prefix = "make chaos CHAOS_RUN="
	}
	if seeds != defaultSeeds {
		prefix = "CHAOS_SEEDS=" + strconv.Itoa(seeds) + " " + prefix
	}
	return prefix + "'" + strings.Join(parts, "/") + "'"
}
