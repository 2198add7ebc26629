package sim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"mailarray/sim/simnet"
)

// TestRealRandMatchesSim: the real-time generator draws from the same
// streams as the simulator's (Net.Rand), so bench-real offers the same
// messages (arrival times, sizes, recipients) as the simulated run.
func TestRealRandMatchesSim(t *testing.T) {
	for _, seed := range []uint64{1, 7, 1 << 40} {
		n := simnet.NewNet(seed, simnet.DefaultNetConfig())
		for _, name := range []string{"load/arrivals", "load/sender0", "load/reader-dns1"} {
			sim, real := n.Rand(name), realRand(seed, name)
			for range 5 {
				assert.Equal(t, sim.Uint64(), real.Uint64(), "seed %d stream %s", seed, name)
			}
		}
	}
}

// TestRealEpisodes: under-replication samples become episodes as in the
// simulator's report.
func TestEpisodes(t *testing.T) {
	s := func(ms int64, under int64) sample { return sample{at: realTestMs(ms), under: under} }
	got := episodes([]sample{s(0, 0), s(250, 3), s(500, 1), s(750, 0), s(1000, 2)})
	assert.Len(t, got.Episodes, 2)
	assert.Equal(t, Episode{StartS: 0.25, EndS: 0.75, Seconds: 0.5}, got.Episodes[0])
	assert.Equal(t, Episode{StartS: 1, EndS: 1, Seconds: 0}, got.Episodes[1], "an episode open at the end closes at the last sample")
	assert.Equal(t, 0.5, got.Seconds)
}

func realTestMs(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
