package bench

// The simulator's side of make truth: bench/cmd/truth writes the truth
// scenarios (one per strategy) and runs this test, which needs a
// *testing.T for the simulator (synctest):
//
//	TRUTH_SCENARIOS=dir TRUTH_STRATEGIES=roundrobin,leastload TRUTH_OUT=predicted.json \
//	  go test ./bench -run '^TestTruthPredict$'
//
// For each strategy: the nominal run (dir/truth-<strategy>.yaml as it is)
// and the saturation search with the simulator's probes in child
// processes (TestSaturationProbe), TRUTH_MAX_PROBES of them at most.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"mailarray/bench/report"
	"mailarray/sim"
)

func TestTruthPredict(t *testing.T) {
	dir := os.Getenv("TRUTH_SCENARIOS")
	if dir == "" {
		t.Skip("the simulator's side of make truth (bench/cmd/truth runs it)")
	}
	maxProbes := 0
	if v := os.Getenv("TRUTH_MAX_PROBES"); v != "" {
		var err error
		maxProbes, err = strconv.Atoi(v)
		require.NoError(t, err, "TRUTH_MAX_PROBES")
	}
	var out []TruthPrediction
	for _, name := range strings.Split(os.Getenv("TRUTH_STRATEGIES"), ",") {
		path := filepath.Join(dir, TruthScenarioName(name)+".yaml")
		sc, err := sim.LoadScenario(path)
		require.NoError(t, err)
		w0 := wallNow()
		rep, err := runOnce(t, sc)
		require.NoError(t, err)
		side := Side(rep)
		progressLine("truth %s predicted: nominal %v msgs/s: p50 %.1f ms, p99 %.1f ms, shares %v (wall %.1f s)",
			name, sc.Load.RatePerSec, side.P50Ms, side.P99Ms, side.CopyShare, wallNow()-w0)
		cfg := TruthSaturationConfig(sc, maxProbes)
		pass, fail, probes, err := cfg.Search(sc.Load.RatePerSec, func(rate float64) (report.Probe, error) {
			p, err := probeInChild(t, path, sc, cfg, rate)
			if err == nil {
				progressLine("truth %s predicted: probe %v msgs/s: pass %v %s", name, rate, p.Pass, p.Why)
			}
			return p, err
		})
		require.NoError(t, err)
		side.SaturationMsgsPerSec, side.FirstFailMsgsPerSec, side.Probes = pass, fail, probes
		out = append(out, TruthPrediction{Strategy: name, Side: side})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(os.Getenv("TRUTH_OUT"), b, 0o644))
}
