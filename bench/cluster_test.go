package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/sim"
)

// realScenario is a small array on real sockets: three nodes, a few
// seconds of load, a crash and a restart.
const realScenario = `
name: realsmall
seed: 3
duration: 4s
drain: 4s
mailboxes: 20
replicas: 2
dns_ttl: 1s
target_p99: 2s
nodes:
  - {name: n1}
  - {name: n2}
  - {name: n3}
load:
  senders: 4
  rate_per_sec: 40
  size: {dist: lognormal, median_bytes: 2048, sigma: 0.5, max_bytes: 65536}
  readers: 1
  read_interval: 1s
  read_max: 5
faults:
  - {at: 1500ms, action: crash, node: n3}
  - {at: 2s, action: partition, nodes: [n1]}
  - {at: 3s, action: restart, node: n3}
`

// TestRealCluster runs bench-real's path end to end: mailarray serve
// processes on loopback, the real-time load generator, a SIGKILL crash
// and a restart, the status read and the lost check.
func TestRealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds mailarray and runs three processes for ~15 s")
	}
	sc, err := sim.ParseScenario([]byte(realScenario))
	require.NoError(t, err)
	dir := t.TempDir()
	bin := filepath.Join(dir, "mailarray")
	build := exec.Command("go", "build", "-o", bin, "./cmd/mailarray")
	build.Dir = root(t)
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := StartCluster(ctx, DefaultClusterConfig(bin, filepath.Join(dir, "cluster"), sc))
	require.NoError(t, err)
	defer cl.Close()

	w0 := time.Now()
	rep, err := sim.RunReal(ctx, sc, cl.Target(), sim.RealOptions{Fault: cl.Fault, UnderReplicated: cl.UnderReplicated})
	require.NoError(t, err)
	require.NoError(t, cl.Fill(ctx, rep, time.Since(w0)))
	t.Logf("offered %d accepted %d rejected %d failed %d lost %d p99 %.1f ms faults %+v", rep.Offered, rep.Accepted, rep.Rejected, rep.Failed, rep.Lost, rep.Latency.P99, rep.Faults)

	assert.Greater(t, rep.Offered, 100, "about 40 msgs/s for 4 s")
	assert.Greater(t, rep.Accepted, rep.Offered/2)
	assert.Zero(t, rep.Lost, "lost: %v", rep.LostIDs)
	require.Len(t, rep.Faults, 3)
	assert.Empty(t, rep.Faults[0].Error, "crash is SIGKILL")
	assert.Contains(t, rep.Faults[1].Error, "not supported on real sockets", "partitions are skipped and say so")
	assert.Empty(t, rep.Faults[2].Error, "restart starts the node again")
	require.Len(t, rep.Nodes, 3)
	var copies int
	for _, n := range rep.Nodes {
		assert.Equal(t, "alive", n.State, n.Name)
		assert.Positive(t, n.CPUBusySeconds, "%s: CPU from /proc", n.Name)
		copies += n.Copies
	}
	assert.Positive(t, copies)
	assert.NotEmpty(t, rep.Timeline)
	assert.Positive(t, rep.Readers.Sessions)

	require.NoError(t, cl.Close())
	for _, n := range cl.nodes {
		select {
		case <-n.done:
		default:
			t.Errorf("%s still running after Close", n.Spec.Name)
		}
	}
	_, err = os.Stat(filepath.Join(dir, "cluster", "n1.log"))
	assert.NoError(t, err, "node logs are kept")
}
