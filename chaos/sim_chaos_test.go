//go:build chaos

package chaos

// The simulator chaos suites. They need the failpoint markers compiled
// in, which only `make chaos` does (chaos/run.sh rewrites a scratch copy
// of the module with failpoint-ctl and runs `go test -tags chaos` there);
// under a plain `go test -tags chaos` they fail at once, saying so.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pingcap/failpoint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/fault"
	"mailarray/node/store"
	"mailarray/sim"
)

// defaultSeeds is the number of seeds per cell (CHAOS_SEEDS overrides):
// the matrix (25 cells) then takes about two minutes on two cores.
const defaultSeeds = 8

// regression is a seed beyond the default count that once found a bug.
type regression struct {
	cell string
	seed uint64
	bug  string
}

// regressions lists them: TestSimChaos runs them too, in their cells, so
// each bug stays covered after its fix. Only cells that replay exactly
// belong here (not the load.query ones).
func regressions() []regression {
	return []regression{
		{"store.write/during-rebuild", 14, "an acknowledged message stays pending forever after its listener crashed right after the 250"},
	}
}

// seedsOf lists the seeds of cell: 1..n, then its regression seeds.
func seedsOf(cell string, n int) []uint64 {
	var out []uint64
	for s := uint64(1); s <= uint64(n); s++ {
		out = append(out, s)
	}
	for _, r := range regressions() {
		if r.cell == cell && !slices.Contains(out, r.seed) {
			out = append(out, r.seed)
		}
	}
	return out
}

func chaosSeeds(t *testing.T) int {
	if v := os.Getenv("CHAOS_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "CHAOS_SEEDS")
		require.Positive(t, n, "CHAOS_SEEDS")
		return n
	}
	return defaultSeeds
}

// requireRewritten proves the markers are compiled in by reaching one
// directly: failpoint.EnableCall succeeds either way, only a call proves
// it.
func requireRewritten(t *testing.T) {
	t.Helper()
	st, err := store.Open(store.Options{Path: filepath.Join(t.TempDir(), "node.db")})
	require.NoError(t, err)
	defer st.Close()
	var fp Failpoint
	for _, f := range Failpoints() {
		if f.Name == fault.StoreSync {
			fp = f
		}
	}
	called := false
	require.NoError(t, failpoint.EnableCall(fp.Path(), func(where string, errp *error) {
		called = true
		*errp = ErrInjected
	}))
	err = st.Write(&store.Batch{PutCopies: []store.Copy{{ID: "probe", Data: []byte("probe")}}})
	require.NoError(t, failpoint.Disable(fp.Path()))
	if !called {
		t.Fatal("failpoint markers are not compiled in: run the chaos suites with `make chaos` " +
			"(chaos/run.sh rewrites a copy of the tree with failpoint-ctl), not plain go test")
	}
	require.ErrorIs(t, err, ErrInjected)
}

// TestSimChaosMarkers checks that the rewritten node code has one marker,
// fault.Inject's, in the package under which every Failpoint's Path is
// registered.
func TestSimChaosMarkers(t *testing.T) {
	requireRewritten(t)
	got := rewrittenMarkers(t, filepath.Join(repoRoot(t), "node"))
	assert.Equal(t, []string{fault.Package}, got)
	for _, fp := range Failpoints() {
		assert.Equal(t, fault.Package+"/"+string(fp.Name), fp.Path())
	}
}

// rewrittenMarkers lists the rewritten markers under dir, one entry per
// marker: failpoint.Call(_curpkg_(...), ...) in package directory d is
// mailarray/<d>.
func rewrittenMarkers(t *testing.T, dir string) []string {
	re := regexp.MustCompile(`failpoint\.Call\(_curpkg_\(`)
	root := filepath.Dir(dir)
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".go" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		for range re.FindAll(b, -1) {
			out = append(out, "mailarray/"+filepath.ToSlash(rel))
		}
		return nil
	})
	require.NoError(t, err)
	slices.Sort(out)
	return out
}

// TestSimChaosClock checks the plan's clock: the first delivery through
// the pipeline must come after the estimated load start and no later than
// the first acknowledged message.
func TestSimChaosClock(t *testing.T) {
	requireRewritten(t)
	cell := Cell{Group: "clock", Name: "none", Window: Window{0, time.Hour}}
	r := mustRunSim(t, cell, 1)
	first := r.plan.Counts()[string(fault.PipelineFilter)]
	require.Positive(t, first.Calls)
	var firstAck time.Duration = -1
	for _, rec := range r.rep.Records {
		if rec.Outcome == sim.Accepted && (firstAck < 0 || rec.Done < firstAck) {
			firstAck = rec.Done
		}
	}
	require.GreaterOrEqual(t, firstAck, time.Duration(0))
	assert.GreaterOrEqual(t, first.First, time.Duration(0), "pipeline ran before the estimated load start: LoadStart is late")
	assert.LessOrEqual(t, first.First, firstAck, "pipeline first ran after the first 250: LoadStart is early")
}

// TestSimChaosReplay runs cells twice: the same seed must give the same
// faults, network digest and findings, or the replay command a failure
// prints would not reproduce it. One cell is a mix; one pauses a node
// (time faults); one stalls a disk for 40 s (callers then resume with
// long-expired deadlines); the last queries the nodes' load (p2c).
func TestSimChaosReplay(t *testing.T) {
	requireRewritten(t)
	for _, id := range []string{"mix/crash-restart", "time/pause-reader", "disk/stall-listener", "load.query/during-rebuild"} {
		t.Run(id, func(t *testing.T) {
			if id == "load.query/during-rebuild" && os.Getenv("CHAOS_REPLAY_LOAD") != "1" {
				// Open: with load-querying strategies a run still does not
				// replay exactly even with the free-disk figure modeled;
				// the remaining source is not found yet. Every other cell
				// replays byte-identically. CHAOS_REPLAY_LOAD=1 runs it.
				t.Skip("known: load-querying runs do not replay exactly yet (CHAOS_REPLAY_LOAD=1 to run)")
			}
			i := slices.IndexFunc(Matrix(), func(c Cell) bool { return c.ID() == id })
			require.GreaterOrEqual(t, i, 0)
			cell := Matrix()[i]
			a, b := mustRunSim(t, cell, 1), mustRunSim(t, cell, 1)
			assert.Equal(t, a.plan.Counts(), b.plan.Counts(), "faults")
			// A known cause of a difference was node code reading the real
			// machine inside the simulator (Load().FreeDiskBytes was statfs
			// of the data directory); simulated nodes now report a fixed
			// figure.
			assert.Equal(t, a.rep.NetDigest, b.rep.NetDigest, "network digest: the run does not replay from its seed")
			ca, err := Check(a.rep, a.dir)
			require.NoError(t, err)
			cb, err := Check(b.rep, b.dir)
			require.NoError(t, err)
			assert.Equal(t, ca, cb, "findings")
		})
	}
}

// TestSimChaos runs the fault matrix: every failpoint in every phase where
// it is reached, and the mixed schedules, each over CHAOS_SEEDS seeds;
// after each run the checker compares every live node's files with the
// load generator's records. With CHAOS_RESULTS set it writes the summary
// there (results/chaos.md).
func TestSimChaos(t *testing.T) {
	requireRewritten(t)
	seeds := chaosSeeds(t)
	offset, soak := chaosSeedOffset(t) // make chaos-soak: soak_test.go
	sum := &Summary{Seeds: seeds}
	for _, r := range regressions() {
		if soak {
			break
		}
		sum.Regressions = append(sum.Regressions, fmt.Sprintf("%s seed %d: %s", r.cell, r.seed, r.bug))
	}
	start := time.Now()
	cells := Matrix()
	var groups []string
	for _, c := range cells {
		if !slices.Contains(groups, c.Group) {
			groups = append(groups, c.Group)
		}
	}
	for _, g := range groups {
		t.Run(g, func(t *testing.T) {
			for _, cell := range cells {
				if cell.Group != g {
					continue
				}
				t.Run(cell.Name, func(t *testing.T) {
					n := seeds
					if cell.Seeds > 0 && os.Getenv("CHAOS_SEEDS") == "" {
						n = cell.Seeds
					}
					for _, seed := range cellSeeds(cell.ID(), offset, soak, n) {
						t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
							defer func() {
								if t.Failed() {
									t.Logf("cell %s seed %d failed; replay: %s", cell.ID(), seed, replayFor(t.Name(), seed, seeds, soak))
								}
							}()
							rr := runCell(t, cell, seed)
							sum.Add(rr)
							if rr.Err != "" {
								t.Fatal(rr.Err)
							}
							for _, name := range rr.NotFired {
								c := rr.Counts[name]
								t.Errorf("failpoint %s never fired: %d calls, %d inside the window %v", name, c.Calls, c.Eligible, cell.Window)
							}
							for _, u := range rr.Unproven {
								t.Errorf("time fault not proven to fire: %s", u)
							}
							for _, e := range rr.FaultErrors {
								t.Errorf("scheduled fault did not apply: %s", e)
							}
							for _, v := range rr.Check.Violations() {
								t.Error(v)
							}
							if rr.SimLost != 0 {
								t.Errorf("the simulator's own check counts %d lost", rr.SimLost)
							}
							if rr.Check != nil && len(cell.Faults) > 0 {
								t.Logf("findings: lost %d, missing %d, under-replicated %d, pending %d, under-quorum %d, deleted-unasked %d, phantom holder %d, under-listed %d, unlisted copy %d, resurrected %d, diverging %d; dropped unsynced %v",
									rr.Check.Lost.Count, rr.Check.Missing.Count, rr.Check.UnderReplicated.Count, rr.Check.Pending.Count,
									rr.Check.UnderQuorum.Count, rr.Check.DeletedUnasked.Count, rr.Check.PhantomHolder.Count,
									rr.Check.UnderListed.Count, rr.Check.UnlistedCopy.Count, rr.Check.Resurrected.Count, rr.Check.Diverging, rr.Dropped)
							}
							t.Logf("fired %v; %d offered, %d acknowledged, %d refused, %d no reply; visible %d; nodes %s",
								firedOnly(rr.Counts), rr.Offered, rr.Accepted, rr.Rejected, rr.Failed, rr.Check.Visible, rr.Nodes)
						})
					}
				})
			}
		})
	}
	if out := os.Getenv("CHAOS_RESULTS"); out != "" {
		require.NoError(t, os.MkdirAll(filepath.Dir(out), 0o755))
		require.NoError(t, os.WriteFile(out, sum.Markdown(time.Since(start)), 0o644))
		t.Logf("summary: %s", out)
	}
	if out := os.Getenv("CHAOS_SOAK_JSON"); out != "" {
		writeSoakShard(t, out, offset, seeds, sum, time.Since(start))
	}
}

// firedOnly keeps the failpoints that fired.
func firedOnly(counts map[string]Count) map[string]int64 {
	out := map[string]int64{}
	for k, c := range counts {
		if c.Fired > 0 {
			out[k] = c.Fired
		}
	}
	return out
}
