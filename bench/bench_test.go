package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/bench/report"
	"mailarray/sim"
)

// TestScenariosParse: every shipped scenario is valid, and the names the
// suite lists exist.
func TestScenariosParse(t *testing.T) {
	dir := filepath.Join(root(t), "scenarios")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	names := map[string]bool{}
	for _, f := range files {
		sc, err := sim.LoadScenario(f)
		require.NoError(t, err, f)
		assert.Equal(t, strings.TrimSuffix(filepath.Base(f), ".yaml"), sc.Name, "%s: name must match the file name (results/<name>.json)", f)
		names[sc.Name] = true
	}
	for _, n := range append(append([]string{}, Strategies...), ScaleScenarioName, "failover", "rebuild", "scaleout", "partition", "hotspot") {
		assert.True(t, names[n], "scenarios/%s.yaml is missing", n)
	}
}

// TestSuiteConsistent: the strategy scenarios run the same cluster and
// load as the base; only the name and the strategies differ. Otherwise
// the comparison would compare more than strategies.
func TestSuiteConsistent(t *testing.T) {
	dir := filepath.Join(root(t), "scenarios")
	base, err := sim.LoadScenario(filepath.Join(dir, BaseScenario+".yaml"))
	require.NoError(t, err)
	norm := func(sc sim.Scenario) sim.Scenario {
		sc.Name, sc.DNSStrategy, sc.PlacementStrategy = "", "", ""
		return sc
	}
	want := fmt.Sprintf("%+v", norm(base))
	for _, name := range Strategies {
		sc, err := sim.LoadScenario(filepath.Join(dir, name+".yaml"))
		require.NoError(t, err)
		assert.Equal(t, want, fmt.Sprintf("%+v", norm(sc)), "%s differs from %s in more than its strategies", name, BaseScenario)
		assert.Empty(t, sc.Faults, name)
		assert.Positive(t, sc.TargetP99, "%s: the saturation search needs target_p99", name)
	}
}

// fakeProbe passes below capacity.
func fakeProbe(capacity float64, calls *[]float64) func(float64) (report.Probe, error) {
	return func(rate float64) (report.Probe, error) {
		*calls = append(*calls, rate)
		return report.Probe{OfferedRate: rate, Pass: rate <= capacity}, nil
	}
}

func TestSearch(t *testing.T) {
	cfg := DefaultSaturationConfig()
	tests := []struct {
		name      string
		start     float64
		capacity  float64
		wantPass  float64
		wantFail  float64
		maxProbes int
	}{
		{"doubles then bisects", 400, 5700, 5600, 6000, 8},
		{"start fails: halves", 400, 120, 100, 150, 8},
		{"never fails: stops at the cap", 400, 1e9, 51200, 0, 8},
		{"nothing passes", 400, 10, 0, 50, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []float64
			pass, fail, probes, err := cfg.Search(tt.start, fakeProbe(tt.capacity, &calls))
			require.NoError(t, err)
			assert.LessOrEqual(t, len(probes), tt.maxProbes, "probes: %v", calls)
			if tt.wantFail > 0 && tt.wantPass > 0 {
				assert.LessOrEqual(t, pass, tt.capacity)
				assert.Greater(t, fail, tt.capacity)
				// Within the resolution or one rate step, or out of probes.
				if len(probes) < cfg.MaxProbes && fail-pass > cfg.RateStep {
					assert.LessOrEqual(t, (fail-pass)/pass, cfg.Resolution+1e-9, "probes: %v", calls)
				}
			}
			assert.Equal(t, tt.wantPass, pass, "probes: %v", calls)
			assert.Equal(t, tt.wantFail, fail, "probes: %v", calls)
			for _, r := range calls {
				assert.Zero(t, int(r)%int(cfg.RateStep), "rate %v is not a multiple of the step", r)
			}
		})
	}
}

func TestSearchError(t *testing.T) {
	cfg := DefaultSaturationConfig()
	_, _, _, err := cfg.Search(400, func(float64) (report.Probe, error) { return report.Probe{}, os.ErrDeadlineExceeded })
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	cfg.MaxProbes = 0
	_, _, _, err = cfg.Search(400, fakeProbe(1000, new([]float64)))
	assert.Error(t, err, "invalid config")
}

func TestProbeScenario(t *testing.T) {
	sc, err := sim.LoadScenario(filepath.Join(root(t), "scenarios", "failover.yaml"))
	require.NoError(t, err)
	cfg := DefaultSaturationConfig()
	cfg.SenderSeconds = 0.25
	p := cfg.ProbeScenario(sc, 4000)
	require.NoError(t, p.Validate())
	assert.Equal(t, sim.Duration(3*time.Second), p.Duration)
	assert.Equal(t, sim.Duration(2*time.Second), p.Drain)
	assert.Equal(t, 4000.0, p.Load.RatePerSec)
	assert.Equal(t, 1000, p.Load.Senders, "rate x target p99")
	assert.Empty(t, p.Faults, "probes run no faults")
	assert.Equal(t, sc.Nodes, p.Nodes)
	assert.Equal(t, 32, cfg.ProbeScenario(sc, 40).Load.Senders, "never fewer than the scenario's senders")
	assert.Equal(t, 4096, ProbeSenders(32, 1e6, 0.25), "capped at the simulator's limit")
}

func TestVerdict(t *testing.T) {
	r := &report.Report{Report: sim.Report{Scenario: "x", Offered: 100, Accepted: 100, TargetP99Ms: 250, Latency: report.Latency{P99: 100}}}
	assert.True(t, Verdict(r, 100, 32).Pass)
	r.Latency.P99 = 300
	p := Verdict(r, 100, 32)
	assert.False(t, p.Pass)
	assert.Contains(t, p.Why, "p99 300.0 ms > target 250 ms")
	r.Latency.P99, r.Failed, r.Accepted = 100, 1, 99
	assert.Contains(t, Verdict(r, 100, 32).Why, "1 of 100 not accepted")
	r.Failed, r.Accepted, r.Lost = 0, 100, 2
	assert.Contains(t, Verdict(r, 100, 32).Why, "2 lost")
	assert.Zero(t, Verdict(r, 100, 32).HostUtil, "no host, none reported")
	r.Host = &sim.HostReport{CPUs: 2, BusySeconds: 3, Utilization: 0.75}
	assert.Equal(t, 0.75, Verdict(r, 100, 32).HostUtil, "the shared host's busy share")
}

func TestScaleScenario(t *testing.T) {
	base, err := sim.LoadScenario(filepath.Join(root(t), "scenarios", ScaleScenarioName+".yaml"))
	require.NoError(t, err)
	k := len(base.Nodes)
	for _, n := range ScaleNodeCounts {
		sc, err := ScaleScenario(base, n)
		require.NoError(t, err)
		require.NoError(t, sc.Validate(), "%d nodes", n)
		require.Len(t, sc.Nodes, n)
		assert.Equal(t, "n1", sc.Nodes[0].Name)
		assert.Equal(t, fmt.Sprintf("n%d", n), sc.Nodes[n-1].Name)
		assert.InDelta(t, base.Load.RatePerSec*float64(n)/float64(k), sc.Load.RatePerSec, 1e-9, "rate per node constant")
		assert.GreaterOrEqual(t, sc.Load.Senders*k, base.Load.Senders*n, "senders grow with the nodes")
		assert.GreaterOrEqual(t, sc.Mailboxes*k, base.Mailboxes*n)
		assert.Equal(t, base.Nodes[0].CPUCores, sc.Nodes[n-1].CPUCores, "nodes are copies of the template")
	}
	assert.Equal(t, 3, len(base.Nodes), "the base is the sweep's first point")

	bad := base
	bad.Faults = []sim.FaultSpec{{Action: sim.FaultHeal}}
	_, err = ScaleScenario(bad, 4)
	assert.Error(t, err)
	_, err = ScaleScenario(base, 0)
	assert.Error(t, err)
	bad = base
	bad.Nodes = append([]sim.NodeSpec{}, base.Nodes...)
	bad.Nodes[1].Spare = true
	_, err = ScaleScenario(bad, 4)
	assert.Error(t, err)
}

func TestPointOf(t *testing.T) {
	r := &report.Report{
		Config: report.Config{Replicas: 2, Nodes: make([]report.NodeSpec, 4)},
		Report: sim.Report{
			Scenario: "scale", Accepted: 1000, AcceptedBytes: 6_000_000, Throughput: 200,
			Network: report.Network{PeerBytesPerMsg: 9000, Events: 40000},
			Nodes: []report.Node{
				{Name: "n1", State: "alive", CatalogBytes: 100, CatalogEntries: 1000, CPUBusySeconds: 1},
				{Name: "n2", State: "alive", CatalogBytes: 300, CatalogEntries: 1000, CPUBusySeconds: 1},
				{Name: "n3", State: "crashed", CatalogBytes: 0, CPUBusySeconds: 0.5},
			},
		},
	}
	p := PointOf(r, 200, 8, 400)
	assert.Equal(t, 4, p.Nodes)
	assert.Equal(t, 50.0, p.ThroughputPerNode)
	assert.Equal(t, 200.0, p.CatalogBytesPerNode, "mean over live nodes")
	assert.Equal(t, 6000.0, p.MirrorPayloadBytesPerMsg, "(R-1) x mean size")
	assert.Equal(t, 3000.0, p.OtherPeerBytesPerMsg)
	assert.Equal(t, 2.5, p.CPUMsPerMsg, "all nodes' CPU, crashed ones included")
	assert.Equal(t, 40.0, p.EventsPerMsg)
}
