package sim

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/sim/simnet"
)

// lossyConfig exercises every draw: jitter, bandwidth and loss (stream
// segments delayed by an RTO).
func lossyConfig() simnet.NetConfig {
	cfg := simnet.DefaultNetConfig()
	cfg.Link.LossRate = 0.01
	return cfg
}

func TestDeterminism(t *testing.T) {
	const seed, runs, clients, perClient = 42, 5, 4, 50
	var results []putResult
	for i := range runs {
		synctest.Test(t, func(t *testing.T) {
			results = append(results, putScenario(t, seed, lossyConfig(), clients, perClient))
		})
		r := results[i]
		t.Logf("seed %d run %d: digest %.16s db %.16s stored %d failed %d events %d (%.1f/PUT) virtual %v",
			seed, i, r.digest, r.dbDigest, r.stored, r.failed, r.events, float64(r.events)/(clients*perClient), r.virtual)
	}
	first := results[0]
	require.Equal(t, clients*perClient, first.stored)
	require.Zero(t, first.failed)
	for i, r := range results[1:] {
		assert.Equal(t, first.digest, r.digest, "run %d: same seed, same digest", i+1)
		assert.Equal(t, first.dbDigest, r.dbDigest, "run %d: same seed, same store", i+1)
		assert.Equal(t, first.virtual, r.virtual, "run %d: same seed, same virtual time", i+1)
	}

	var other putResult
	synctest.Test(t, func(t *testing.T) {
		other = putScenario(t, seed+1, lossyConfig(), clients, perClient)
	})
	t.Logf("seed %d: digest %.16s virtual %v", seed+1, other.digest, other.virtual)
	assert.NotEqual(t, first.digest, other.digest, "another seed, another run")
	assert.Equal(t, clients*perClient, other.stored)
}

func TestDeterminismMembershipAndFaults(t *testing.T) {
	// Partitions, crashes and membership timers go into the digest too.
	run := func(seed uint64) string {
		var d string
		synctest.Test(t, func(t *testing.T) {
			n := simnet.NewNet(seed, lossyConfig())
			stop := n.Start()
			c := NewCluster(n, DefaultMembershipConfig(), testMembers(4)...)
			n.AfterFunc(time.Second, "fault", func() {
				n.Partition([]string{"10.0.0.1"}, []string{"10.0.0.2"})
				c.Crash("n3")
			})
			n.AfterFunc(5*time.Second, "fault", func() {
				n.Heal()
				c.Restart("n3")
			})
			time.Sleep(10 * time.Second)
			c.For("n1").Close()
			stop()
			d = n.Digest()
		})
		return d
	}
	a := run(5)
	assert.Equal(t, a, run(5))
	assert.NotEqual(t, a, run(6))
}
