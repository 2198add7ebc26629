package calibrate

import (
	"context"
	"math"
	"math/rand/v2"
	"net"
	"net/textproto"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFitRecoversLine: points on a known line, exact and with small noise,
// give back its slope and intercept.
func TestFitRecoversLine(t *testing.T) {
	seed := uint64(20)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for _, tc := range []struct {
		name             string
		intercept, slope float64
		xs               []float64
		noise            float64 // uniform in [-noise, noise]
		tol              float64 // relative
	}{
		{"cpu per message and per KiB", 250e-6, 6e-6, []float64{1, 4, 16, 64}, 0, 1e-9},
		{"fsync and bandwidth", 2e-3, 1.0 / 200e6, []float64{4096, 65536, 262144, 1048576}, 0, 1e-9},
		{"noisy, many points", 300e-6, 8e-6, []float64{1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128}, 2e-6, 0.05},
		{"flat", 1e-3, 0, []float64{1, 10, 100}, 0, 1e-9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pts []Point
			for _, x := range tc.xs {
				y := tc.intercept + tc.slope*x + tc.noise*(2*rng.Float64()-1)
				pts = append(pts, Point{x, y})
			}
			got, err := Fit(pts)
			require.NoError(t, err)
			assert.InDelta(t, tc.intercept, got.Intercept, tc.tol*tc.intercept+1e-15, "intercept")
			assert.InDelta(t, tc.slope, got.Slope, tc.tol*math.Abs(tc.slope)+1e-15, "slope")
			if tc.noise == 0 {
				assert.InDelta(t, 1, got.R2, 1e-9, "R2 of exact points")
			} else {
				assert.Greater(t, got.R2, 0.9, "R2 of slightly noisy points")
			}
		})
	}
}

func TestFitNeedsTwoDistinctX(t *testing.T) {
	for _, pts := range [][]Point{nil, {{1, 2}}, {{4, 1}, {4, 3}, {4, 2}}} {
		_, err := Fit(pts)
		assert.ErrorIs(t, err, ErrFewPoints, "points %v", pts)
	}
}

// TestFitR2: points off the line lower R2 below 1.
func TestFitR2(t *testing.T) {
	got, err := Fit([]Point{{0, 0}, {1, 2}, {2, 1}, {3, 3}})
	require.NoError(t, err)
	assert.InDelta(t, 0.8, got.Slope, 1e-12)
	assert.InDelta(t, 0.3, got.Intercept, 1e-12)
	assert.InDelta(t, 0.64, got.R2, 1e-12)
}

func TestSummarizeAndPercentile(t *testing.T) {
	s := Summarize([]float64{3, 1, 2, 10})
	assert.Equal(t, Summary{Median: 2.5, Min: 1, Max: 10}, s)
	assert.InDelta(t, 3.6, s.Spread(), 1e-12)
	assert.Equal(t, Summary{}, Summarize(nil))
	sorted := []float64{10, 20, 30, 40, 50}
	for _, tc := range []struct{ q, want float64 }{{0, 10}, {0.5, 30}, {0.9, 46}, {0.99, 49.6}, {1, 50}} {
		assert.InDelta(t, tc.want, Percentile(sorted, tc.q), 1e-9, "q %v", tc.q)
	}
}

// TestProbes: the probes measure something on this machine (the values
// depend on it: only that they are positive and ordered is asserted).
func TestProbes(t *testing.T) {
	samples, err := FsyncProbe(t.TempDir(), []int{4096, 65536}, 5)
	require.NoError(t, err)
	require.Len(t, samples, 2)
	for _, s := range samples {
		require.Len(t, s.Seconds, 5)
		assert.Greater(t, s.Seconds[0], 0.0)
		assert.LessOrEqual(t, s.Seconds[0], s.Seconds[4], "sorted")
	}
	rtt, err := EchoProbe(context.Background(), 50)
	require.NoError(t, err)
	require.Len(t, rtt, 50)
	assert.Greater(t, rtt[0], 0.0)
	assert.Positive(t, SelfCPU(), "this process has used CPU")
}

// TestNoopProbe: the NOOP probe speaks SMTP to a listener (here a minimal
// one that greets and answers NOOP), spaces its round trips, and fails
// clearly on a listener that does not answer 250.
func TestNoopProbe(t *testing.T) {
	serve := func(reply string) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			tp := textproto.NewConn(c)
			tp.PrintfLine("220 test ESMTP")
			for {
				line, err := tp.ReadLine()
				if err != nil || line == "QUIT" {
					return
				}
				tp.PrintfLine("%s", reply)
			}
		}()
		return l.Addr().String()
	}
	t0 := time.Now()
	rtt, err := NoopProbe(context.Background(), serve("250 2.0.0 OK"), 20, time.Millisecond)
	require.NoError(t, err)
	require.Len(t, rtt, 20)
	assert.Greater(t, rtt[0], 0.0)
	assert.LessOrEqual(t, rtt[0], rtt[19], "sorted")
	assert.GreaterOrEqual(t, time.Since(t0), 20*time.Millisecond, "one round trip per gap")

	_, err = NoopProbe(context.Background(), serve("502 5.5.1 no"), 3, time.Millisecond)
	assert.ErrorContains(t, err, "noop probe")
}

// TestParseHostBusy: the busy ticks are user, nice, system, irq, softirq
// and steal (not idle, not iowait) at USER_HZ.
func TestParseHostBusy(t *testing.T) {
	d, ok := parseHostBusy("cpu  100 20 30 5000 40 5 6 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
	require.True(t, ok)
	assert.Equal(t, 1680*time.Millisecond, d, "(100+20+30+5+6+7) ticks of 10 ms")
	_, ok = parseHostBusy("intr 1 2 3\n")
	assert.False(t, ok)
	_, ok = parseHostBusy("cpu 1 2 x 4 5 6 7 8\n")
	assert.False(t, ok)
}
