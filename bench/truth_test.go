package bench

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/sim"
)

// testProfile is a cost profile with round figures.
func testProfile() sim.CostProfile {
	d := func(v time.Duration) sim.DurationFigure {
		return sim.DurationFigure{Value: sim.Duration(v), Min: sim.Duration(v), Max: sim.Duration(v)}
	}
	return sim.CostProfile{Name: "testhost", Repeats: 1,
		CPUPerMsg: d(900 * time.Microsecond), CPUPerKiB: d(20 * time.Microsecond),
		DiskFsync: d(2 * time.Millisecond), DiskBytesPerSec: sim.RateFigure{Value: 1e8, Min: 1e8, Max: 1e8},
		LinkLatency: d(50 * time.Microsecond), LinkJitter: d(10 * time.Microsecond)}
}

// TestTruthScenario: the truth scenario is the strategy scenario on the
// truth array: its strategies and load shape, the array's quotas and
// weights, the profile's costs, the slow node's delay on top of the
// profile's sync; and it reads back from the file the probes load.
func TestTruthScenario(t *testing.T) {
	strat, err := sim.LoadScenario(filepath.Join(root(t), "scenarios", "weighted.yaml"))
	require.NoError(t, err)
	sc, err := TruthScenario(strat, DefaultTruthArray(), testProfile(), 120, 4*time.Second, time.Second)
	require.NoError(t, err)
	assert.Equal(t, "truth-weighted", sc.Name)
	assert.Equal(t, strat.DNSStrategy, sc.DNSStrategy)
	assert.Equal(t, strat.PlacementStrategy, sc.PlacementStrategy)
	assert.Equal(t, 120.0, sc.Load.RatePerSec)
	assert.Equal(t, sim.Duration(TruthDNSTTL), sc.DNSTTL, "the smallest TTL: six lookups per sender and probe")
	assert.Equal(t, strat.Load.Size, sc.Load.Size, "the load's shape is the strategy scenario's")
	assert.Equal(t, sim.Duration(50*time.Microsecond), sc.Link.Latency, "the profile's link")
	quota := 0.0
	for i, n := range sc.Nodes {
		a := DefaultTruthArray()[i]
		assert.Equal(t, a.CPUQuota, n.CPUQuota, n.Name)
		assert.Equal(t, a.Weight, n.Weight, n.Name)
		assert.Equal(t, min(runtime.NumCPU(), 2), n.CPUCores, "%s: Go's GOMAXPROCS in a container with a quota under 2", n.Name)
		assert.Equal(t, sim.Duration(900*time.Microsecond), n.CPUPerMsg, "%s: the profile's cost", n.Name)
		assert.Equal(t, sim.Duration(2*time.Millisecond+a.SyncDelay), n.DiskFsync, "%s: profile sync + delay", n.Name)
		quota += n.CPUQuota
	}
	assert.LessOrEqual(t, quota, 1.6+1e-9, "the quotas leave the load generator its share of 2 cores")
	assert.Equal(t, runtime.NumCPU(), sc.HostCPUs, "the containers share this machine")
	assert.Equal(t, 8*time.Millisecond, sc.Nodes[3].DiskFsync.D()-2*time.Millisecond, "n4 is the slow disk")

	path, err := WriteScenario(t.TempDir(), sc)
	require.NoError(t, err)
	back, err := sim.LoadScenario(path)
	require.NoError(t, err)
	assert.Equal(t, sc.Nodes, back.Nodes)
	assert.Equal(t, sc.Load, back.Load)
	assert.Equal(t, sc.Link, back.Link)
	assert.Equal(t, "testhost", back.Profile().Name)

	cfg := TruthSaturationConfig(sc, 3)
	assert.Equal(t, 3, cfg.MaxProbes)
	assert.Equal(t, TruthProbeLoad, cfg.LoadDuration, "the same probe on both sides, longer than the simulator search's")
	assert.Equal(t, sc.TargetP99.D().Seconds(), cfg.SenderSeconds)
}

// TestContainerArgs: each container gets its quota, the slow node alone
// its --test-fault with the gate, and every node joins the others.
func TestContainerArgs(t *testing.T) {
	strat, err := sim.LoadScenario(filepath.Join(root(t), "scenarios", "roundrobin.yaml"))
	require.NoError(t, err)
	sc, err := TruthScenario(strat, DefaultTruthArray(), testProfile(), 100, 4*time.Second, time.Second)
	require.NoError(t, err)
	cfg := DefaultContainerConfig(t.TempDir(), sc, map[string]time.Duration{"n4": 8 * time.Millisecond})
	require.NoError(t, cfg.Validate())
	a := &ContainerArray{cfg: cfg, network: "net"}
	for i, spec := range sc.Nodes {
		a.nodes = append(a.nodes, &containerNode{spec: spec, ip: "172.30.77." + string(rune('1'+i)), name: "c-" + spec.Name})
	}
	args := func(i int) []string { return a.runArgs(a.nodes[i], "/u", "0123456789abcdef0123") }
	assert.Subset(t, args(0), []string{"--cpus", "0.6"})
	assert.NotContains(t, args(0), "--test-fault")
	assert.Subset(t, args(3), []string{"--cpus", "0.2", "--test-faults-allowed", "--test-fault", "store.sync=8ms"})
	assert.Subset(t, args(1), []string{"--placement-strategy", sc.PlacementStrategy, "--weight", "2"})
	joins := 0
	for _, x := range args(2) {
		if x == "--join" {
			joins++
		}
	}
	assert.Equal(t, 3, joins, "joins the three others")
	cfg.Subnet = "10.0.0.0/16"
	assert.Error(t, cfg.Validate())
}

// A probe's child process runs the parent's probe, not the default shape:
// make truth's 6 s probes ran 3 s on the simulator's side while the
// child rebuilt DefaultSaturationConfig's (issue 20).
func TestProbeEnvCarriesTheProbeShape(t *testing.T) {
	path := filepath.Join(root(t), "scenarios", "roundrobin.yaml")
	sc, err := sim.LoadScenario(path)
	require.NoError(t, err)
	cfg := TruthSaturationConfig(sc, 0)
	require.NotEqual(t, DefaultSaturationConfig().LoadDuration, cfg.LoadDuration, "the test needs a shape other than the default")
	env := map[string]string{}
	for _, kv := range probeEnv(path, cfg, 370) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	child, rate, err := probeFromEnv(func(k string) string { return env[k] })
	require.NoError(t, err)
	assert.Equal(t, 370.0, rate)
	want := cfg.ProbeScenario(sc, 370)
	assert.Equal(t, want.Duration, child.Duration)
	assert.Equal(t, want.Drain, child.Drain)
	assert.Equal(t, want.Load, child.Load)
	assert.Equal(t, fmt.Sprintf("%+v", want), fmt.Sprintf("%+v", child))
}
