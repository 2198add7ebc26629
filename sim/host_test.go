package sim

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/sim/simnet"
)

// TestHostCPU: nodes on one host share its cores: two messages on two
// one-CPU nodes run one after the other on a one-CPU host and side by
// side on a two-CPU host; a message's host work (the load generator's)
// holds a host core that the nodes then wait for.
func TestHostCPU(t *testing.T) {
	for _, tt := range []struct {
		name       string
		hostCPUs   int
		clientWork time.Duration
		wantLast   time.Duration
	}{
		{"one host CPU: the two nodes take turns", 1, 0, 2 * time.Millisecond},
		{"two host CPUs: side by side", 2, 0, time.Millisecond},
		{"two host CPUs, 3 ms of client work on one", 2, 3 * time.Millisecond, 2 * time.Millisecond},
		{"one host CPU behind 3 ms of client work", 1, 3 * time.Millisecond, 5 * time.Millisecond},
	} {
		synctest.Test(t, func(t *testing.T) {
			n := simnet.NewNet(1, simnet.DefaultNetConfig())
			stop := n.Start()
			defer stop()
			h := newHostCPU(n, tt.hostCPUs, tt.clientWork)
			var nodes []*nodeCost
			for _, name := range []string{"n1", "n2"} {
				c := newNodeCost(n, NodeSpec{Name: name, CPUCores: 1, CPUPerMsg: Duration(time.Millisecond), CPUPerKiB: Duration(time.Nanosecond)}, nil)
				c.host = h
				nodes = append(nodes, c)
			}
			t0 := time.Now()
			h.message()
			done := make(chan time.Duration, 2)
			for _, c := range nodes {
				go func() { c.CPU(0); done <- time.Since(t0) }()
			}
			a, b := <-done, <-done
			assert.Equal(t, tt.wantLast, max(a, b), tt.name)
			time.Sleep(10 * time.Millisecond) // virtual: the client job ends too
			hs := h.stats()
			assert.Equal(t, 2*time.Millisecond+tt.clientWork, hs.BusyTime, "%s: the host counts every job's work", tt.name)
			assert.Equal(t, tt.clientWork, hs.ClientJob, tt.name)
			assert.Zero(t, h.busy, "%s: every core released", tt.name)
		})
	}
}

// TestHostRunEnds: a run on a host with cores to spare and no work of its
// own times every message as a run without a host does; a one-CPU host
// with client work makes the same load slower, and the report shows its
// utilisation.
func TestHostRunEnds(t *testing.T) {
	base := benchScenario(200, 100)
	base.Nodes = append([]NodeSpec(nil), base.Nodes...)
	for i := range base.Nodes {
		base.Nodes[i].CPUCores = 1
		base.Nodes[i].CPUPerMsg = Duration(time.Millisecond)
	}
	roomy, tight := base, base
	roomy.HostCPUs = 64
	tight.HostCPUs, tight.HostCPUPerMsg = 1, Duration(6*time.Millisecond)
	run := func(sc Scenario) *Report {
		rep, err := Run(t, sc, Options{DataDir: t.TempDir()})
		require.NoError(t, err)
		require.Equal(t, sc.Load.RatePerSec*sc.Duration.D().Seconds(), float64(rep.Offered))
		return rep
	}
	a, b, c := run(base), run(roomy), run(tight)
	assert.Nil(t, a.Host, "no host, no host report")
	require.NotNil(t, b.Host)
	assert.Equal(t, a.Latency, b.Latency, "a host with cores to spare changes no message's time")
	require.NotNil(t, c.Host)
	assert.Equal(t, a.Accepted, c.Accepted)
	assert.Greater(t, c.Latency.P50, a.Latency.P50, "on one host CPU the nodes and the client take turns")
	assert.InDelta(t, float64(c.Offered)*6e-3, c.Host.OutsideNodesSeconds, 1e-6, "6 ms of host work per message offered")
	assert.Greater(t, c.Host.Utilization, 0.0)
	assert.LessOrEqual(t, c.Host.Utilization, 1.0)
}

// TestHostValidate: host work needs a host.
func TestHostValidate(t *testing.T) {
	sc := benchScenario(10, 10)
	sc.HostCPUPerMsg = Duration(time.Millisecond)
	require.ErrorContains(t, sc.Validate(), "host_cpu_per_msg")
	sc.HostCPUs = -1
	require.ErrorContains(t, sc.Validate(), "host_cpus")
	sc.HostCPUs = 2
	require.NoError(t, sc.Validate())
}
