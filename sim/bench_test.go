package sim

import (
	"testing"
	"testing/synctest"
	"time"

	"mailarray/sim/simnet"
)

// BenchmarkHTTPPutSim measures the simulator's speed: simulated HTTP PUTs
// (4 clients, keep-alive, bbolt Batch on the server, default LAN model) per
// wall second, and network events per PUT.
//
// synctest.Test needs a *testing.T, which a benchmark does not have, so the
// scenario runs as a test through testing.RunTests (the matcher accepts it
// whatever -run says). Its own wall clock (WallNow) times it, so -count and
// -cpu, which RunTests also honours, do not skew the figure.
func BenchmarkHTTPPutSim(b *testing.B) {
	const clients = 4
	perClient := max(b.N/clients, 1)
	var (
		r    putResult
		wall time.Duration
	)
	ok := testing.RunTests(func(string, string) (bool, error) { return true, nil }, []testing.InternalTest{{
		Name: "HTTPPutSim",
		F: func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w0 := WallNow()
				r = putScenario(t, 1, simnet.DefaultNetConfig(), clients, perClient)
				wall = WallSince(w0)
			})
		},
	}})
	if !ok || r.failed > 0 || r.stored != clients*perClient {
		b.Fatalf("scenario failed: ok=%v stored=%d failed=%d", ok, r.stored, r.failed)
	}
	puts := float64(clients * perClient)
	b.ReportMetric(puts/wall.Seconds(), "puts/wall-s")
	b.ReportMetric(float64(r.events)/puts, "events/put")
	b.ReportMetric(float64(wall.Nanoseconds())/puts, "wall-ns/put")
}
