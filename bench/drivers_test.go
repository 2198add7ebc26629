package bench

// The drivers of the sweeps. The simulator runs inside synctest, which
// needs a *testing.T, so the sweeps are tests, skipped unless asked for:
//
//	BENCH_SATURATION=1 go test ./bench -run '^TestSaturation$' -timeout 2h
//	BENCH_SCALE=1      go test ./bench -run '^TestScaleSweep$' -timeout 1h
//
// make bench runs both. Optional: BENCH_STRATEGIES=roundrobin,p2c limits
// the saturation search to some strategies (their entries replace the
// ones in an existing results/saturation.json); BENCH_SCALE_NODES=3,4,6
// limits the sweep's sizes.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"mailarray/bench/report"
	"mailarray/sim"
)

// root is the module's root directory.
func root(t *testing.T) string {
	wd, err := os.Getwd()
	require.NoError(t, err)
	r, err := ModuleRoot(wd)
	require.NoError(t, err)
	return r
}

// wallNow reads the machine's clock (sim.WallNow: the bubble does not fake
// it); only the sweeps' wall objects use it.
func wallNow() float64 { return sim.WallNow().Seconds() }

// progressLine prints one line of a sweep's progress on stderr.
func progressLine(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
}

// runOnce runs sc with a progress bar, in a data directory removed right
// after (a sweep's runs would otherwise keep gigabytes of stores until
// the test ends).
func runOnce(t *testing.T, sc sim.Scenario) (*sim.Report, error) {
	data, err := os.MkdirTemp("", "mailarray-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(data)
	return sim.Run(t, sc, sim.Options{DataDir: data, Progress: os.Stderr})
}

func TestSaturation(t *testing.T) {
	if os.Getenv("BENCH_SATURATION") == "" {
		t.Skip("set BENCH_SATURATION=1 to run the saturation search (make bench)")
	}
	dir := root(t)
	cfg := DefaultSaturationConfig()
	names := Strategies
	if v := os.Getenv("BENCH_STRATEGIES"); v != "" {
		names = strings.Split(v, ",")
		for _, n := range names {
			require.True(t, IsStrategy(n), "BENCH_STRATEGIES: %q is not a strategy scenario (%v)", n, Strategies)
		}
	}
	out := filepath.Join(dir, "results", "saturation.json")
	res := &report.Saturation{}
	if len(names) < len(Strategies) {
		if old, err := report.LoadSaturation(out); err == nil {
			res = old
		}
	}
	res.Kind = report.KindSaturation
	res.LoadSeconds, res.DrainSeconds = cfg.LoadDuration.Seconds(), cfg.Drain.Seconds()
	res.Criterion = cfg.Criterion()
	w0 := wallNow()
	for _, name := range names {
		path := filepath.Join(dir, "scenarios", name+".yaml")
		sc, err := sim.LoadScenario(path)
		require.NoError(t, err)
		target := sc.TargetP99.D()
		require.Positive(t, target, "%s: the saturation search needs target_p99", name)
		ss := report.StrategySaturation{Strategy: name, DNSStrategy: sc.DNSStrategy, PlacementStrategy: sc.PlacementStrategy,
			TargetP99Ms: float64(target.Milliseconds())}
		pass, fail, probes, err := cfg.Search(sc.Load.RatePerSec, func(rate float64) (report.Probe, error) {
			p0 := wallNow()
			p, err := probeInChild(t, path, sc, scenarioProbes(cfg, sc), rate)
			if err != nil {
				return p, err
			}
			verdict := "pass"
			if !p.Pass {
				verdict = "FAIL: " + p.Why
			}
			progressLine("saturation %s: %v msgs/s offered, %d senders: p99 %.1f ms, busiest %s %s %.0f%%: %s (wall %.1f s)",
				name, rate, p.Senders, p.P99Ms, p.Busiest, p.BusiestWhat, 100*p.BusiestFrac, verdict, wallNow()-p0)
			return p, nil
		})
		require.NoError(t, err)
		ss.SaturationMsgsPerSec, ss.FirstFailMsgsPerSec, ss.Probes = pass, fail, probes
		progressLine("saturation %s: sustains %v msgs/s (first failure at %v)", name, pass, fail)
		i := slices.IndexFunc(res.Strategies, func(x report.StrategySaturation) bool { return x.Strategy == name })
		if i >= 0 {
			res.Strategies[i] = ss
		} else {
			res.Strategies = append(res.Strategies, ss)
		}
	}
	// Table order is Strategies' order.
	slices.SortStableFunc(res.Strategies, func(a, b report.StrategySaturation) int {
		return slices.Index(Strategies, a.Strategy) - slices.Index(Strategies, b.Strategy)
	})
	res.Wall.Seconds = round(wallNow()-w0, 1)
	js, err := report.EncodeJSON(res)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(out, js, 0o644))
	t.Logf("saturation: %s", out)
}

// Environment of a saturation probe run in a child process.
const (
	envProbeScenario = "BENCH_PROBE_SCENARIO" // the strategy scenario's file
	envProbeRate     = "BENCH_PROBE_RATE"
	envProbeLoad     = "BENCH_PROBE_LOAD"    // the parent's SaturationConfig.LoadDuration
	envProbeDrain    = "BENCH_PROBE_DRAIN"   // its Drain
	envProbeSenderS  = "BENCH_PROBE_SENDERS" // its SenderSeconds
	envProbeOut      = "BENCH_PROBE_OUT"     // where the child writes its report.Probe
)

// scenarioProbes is cfg with the client pool sized by sc's target p99, as
// every search sizes it.
func scenarioProbes(cfg SaturationConfig, sc sim.Scenario) SaturationConfig {
	cfg.SenderSeconds = sc.TargetP99.D().Seconds()
	return cfg
}

// probeEnv is the environment that tells a child which probe to run: the
// scenario's file, the rate, and the parent's probe shape, so that the
// child runs exactly cfg.ProbeScenario (make truth's probes are longer
// than make bench's: a child that rebuilt the default shape ran them 3 s
// instead of 6 s, issue 20).
func probeEnv(path string, cfg SaturationConfig, rate float64) []string {
	return []string{
		envProbeScenario + "=" + path,
		envProbeRate + "=" + strconv.FormatFloat(rate, 'f', -1, 64),
		envProbeLoad + "=" + cfg.LoadDuration.String(),
		envProbeDrain + "=" + cfg.Drain.String(),
		envProbeSenderS + "=" + strconv.FormatFloat(cfg.SenderSeconds, 'f', -1, 64),
	}
}

// probeFromEnv is the probe scenario probeEnv describes.
func probeFromEnv(getenv func(string) string) (sim.Scenario, float64, error) {
	sc, err := sim.LoadScenario(getenv(envProbeScenario))
	if err != nil {
		return sim.Scenario{}, 0, err
	}
	rate, err := strconv.ParseFloat(getenv(envProbeRate), 64)
	if err != nil {
		return sim.Scenario{}, 0, fmt.Errorf("%s: %w", envProbeRate, err)
	}
	cfg := DefaultSaturationConfig()
	if cfg.LoadDuration, err = time.ParseDuration(getenv(envProbeLoad)); err != nil {
		return sim.Scenario{}, 0, fmt.Errorf("%s: %w", envProbeLoad, err)
	}
	if cfg.Drain, err = time.ParseDuration(getenv(envProbeDrain)); err != nil {
		return sim.Scenario{}, 0, fmt.Errorf("%s: %w", envProbeDrain, err)
	}
	if cfg.SenderSeconds, err = strconv.ParseFloat(getenv(envProbeSenderS), 64); err != nil {
		return sim.Scenario{}, 0, fmt.Errorf("%s: %w", envProbeSenderS, err)
	}
	return cfg.ProbeScenario(sc, rate), rate, nil
}

// probeInChild runs one probe of sc, the scenario at path, in a child
// process (this test binary, running TestSaturationProbe), so that a
// simulator crash fails that probe, with the crash as its reason, instead
// of the whole search. The child's output (its progress bar) goes to
// stderr.
func probeInChild(t *testing.T, path string, sc sim.Scenario, cfg SaturationConfig, rate float64) (report.Probe, error) {
	out := filepath.Join(t.TempDir(), "probe.json")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSaturationProbe$", "-test.count=1", "-test.timeout=1h")
	cmd.Env = append(append(os.Environ(), probeEnv(path, cfg, rate)...), envProbeOut+"="+out)
	var stderr bytes.Buffer
	cmd.Stdout = io.MultiWriter(os.Stderr, &stderr)
	cmd.Stderr = cmd.Stdout
	runErr := cmd.Run()
	b, err := os.ReadFile(out)
	if runErr != nil || err != nil {
		// The simulator failed: the probe fails, saying how.
		why := "simulator failed"
		if runErr != nil {
			why += " (" + runErr.Error() + ")"
		}
		if line := firstMatch(stderr.String(), "panic: "); line != "" {
			why += ": " + line
		}
		progressLine("probe at %v msgs/s: %s", rate, why)
		return report.Probe{OfferedRate: rate, Senders: cfg.ProbeScenario(sc, rate).Load.Senders, Why: why}, nil
	}
	var p report.Probe
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("bench: probe result: %w", err)
	}
	return p, nil
}

// firstMatch returns the first line of s that contains sub, trimmed.
func firstMatch(s, sub string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// TestSaturationProbe is one probe, run by probeInChild in a child process.
func TestSaturationProbe(t *testing.T) {
	if os.Getenv(envProbeScenario) == "" {
		t.Skip("a saturation probe, run by TestSaturation in a child process")
	}
	sc, rate, err := probeFromEnv(os.Getenv)
	require.NoError(t, err)
	rep, err := runOnce(t, sc)
	require.NoError(t, err)
	p, err := SummarizeProbe(rep, rate, sc.Load.Senders)
	require.NoError(t, err)
	b, err := json.Marshal(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(os.Getenv(envProbeOut), b, 0o644))
}

func TestScaleSweep(t *testing.T) {
	if os.Getenv("BENCH_SCALE") == "" {
		t.Skip("set BENCH_SCALE=1 to run the growth sweep (make bench SCENARIO=scale)")
	}
	dir := root(t)
	base, err := sim.LoadScenario(filepath.Join(dir, "scenarios", ScaleScenarioName+".yaml"))
	require.NoError(t, err)
	counts := ScaleNodeCounts
	if v := os.Getenv("BENCH_SCALE_NODES"); v != "" {
		counts = nil
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			require.NoError(t, err, "BENCH_SCALE_NODES")
			counts = append(counts, n)
		}
	}
	res := &report.Scale{
		Kind: report.KindScale, Scenario: base.Name,
		LoadSeconds: base.Duration.D().Seconds(), DrainSeconds: base.Drain.D().Seconds(),
		RatePerNode: round(base.Load.RatePerSec/float64(len(base.Nodes)), 3), Replicas: base.Replicas,
	}
	w0 := wallNow()
	for _, n := range counts {
		sc, err := ScaleScenario(base, n)
		require.NoError(t, err)
		p0 := wallNow()
		rep, err := runOnce(t, sc)
		require.NoError(t, err)
		p, err := ScalePoint(rep, sc)
		require.NoError(t, err)
		res.Points = append(res.Points, p)
		progressLine("scale: %d nodes, %v msgs/s offered: %.1f msgs/s accepted, %d lost, p99 %.1f ms, catalog %.0f B/node, peer %.0f B/msg (wall %.1f s)",
			n, sc.Load.RatePerSec, p.Throughput, p.Lost, p.P99Ms, p.CatalogBytesPerNode, p.PeerBytesPerMsg, wallNow()-p0)
	}
	res.Wall.Seconds = round(wallNow()-w0, 1)
	js, err := report.EncodeJSON(res)
	require.NoError(t, err)
	out := filepath.Join(dir, "results", "scale.json")
	require.NoError(t, os.WriteFile(out, js, 0o644))
	t.Logf("scale: %s", out)
}
