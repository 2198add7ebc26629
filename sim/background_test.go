package sim

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/sim/simnet"
)

// TestBackgroundCPU: a running node with cpu_background 0.2 on one whole
// CPU burns 2 ms of every 10 ms whatever its load; it counts as CPU time,
// a message arriving behind a background job waits for it, and nothing
// burns before the node runs, while it is paused or after it stops.
func TestBackgroundCPU(t *testing.T) {
	nd := NodeSpec{Name: "n1", CPUCores: 1, CPUPerMsg: Duration(time.Millisecond), CPUPerKiB: Duration(time.Nanosecond), CPUBackground: 0.2}
	runCost(t, nd, func(t *testing.T, c *nodeCost) {

		time.Sleep(time.Second)
		assert.Zero(t, c.stats().CPUTime, "a node not yet running burns nothing")

		c.setRunning(true)
		time.Sleep(time.Second + time.Millisecond) // 100 ticks, each ended
		assert.Equal(t, 200*time.Millisecond, c.stats().CPUTime, "0.2 of a CPU for 1 s")
		assert.Equal(t, c.stats().CPUTime, c.stats().BgTime)

		// A tick has just started a 2 ms job (at t = 1 s + 10 ms k): a
		// message arriving 1 ms into it waits 1 ms, then takes its 1 ms.
		time.Sleep(9 * time.Millisecond) // t = tick + 0 (1.010 s after start)
		time.Sleep(time.Millisecond)
		t0 := time.Now()
		c.CPU(0)
		assert.Equal(t, 2*time.Millisecond, time.Since(t0), "the message waits behind the background job")

		c.pause()
		before := c.stats().BgTime
		time.Sleep(time.Second)
		assert.LessOrEqual(t, c.stats().BgTime-before, 2*time.Millisecond, "a paused node burns nothing (one job may have started)")
		c.resume()

		c.setRunning(false)
		before = c.stats().BgTime
		time.Sleep(time.Second)
		assert.Equal(t, before, c.stats().BgTime, "a stopped node burns nothing")
	})
}

// TestBackgroundCPUQuota: on a quota the background jobs spend the
// period's budget as messages do: with 0.15 of a CPU on a 0.2 quota, 13.5
// of the first period's 20 ms are gone by 91.5 ms, so a 15 ms message
// starting then runs 6.5 ms, is throttled to the period's end at 100 ms,
// and runs its last 8.5 ms: 17 ms.
func TestBackgroundCPUQuota(t *testing.T) {
	nd := NodeSpec{Name: "n1", CPUQuota: 0.2, CPUPerMsg: Duration(15 * time.Millisecond), CPUPerKiB: Duration(time.Nanosecond), CPUBackground: 0.15}
	runCost(t, validNode(t, nd), func(t *testing.T, c *nodeCost) {
		c.setRunning(true)
		time.Sleep(91500 * time.Microsecond) // the 90 ms tick's 1.5 ms job just ended
		t0 := time.Now()
		c.CPU(0)
		assert.Equal(t, 17*time.Millisecond, time.Since(t0))
		c.setRunning(false)
	})
}

// TestBackgroundValidate: the background is a share of the node's capacity
// that leaves room for messages.
func TestBackgroundValidate(t *testing.T) {
	for _, tt := range []struct {
		nd NodeSpec
		ok bool
	}{
		{NodeSpec{Name: "n1", CPUBackground: 0.5}, true},
		{NodeSpec{Name: "n1", CPUQuota: 0.2, CPUBackground: 0.1}, true},
		{NodeSpec{Name: "n1", CPUQuota: 0.2, CPUBackground: 0.19}, false},
		{NodeSpec{Name: "n1", CPUBackground: -0.1}, false},
	} {
		sc := Scenario{Nodes: []NodeSpec{tt.nd}}
		var got []string
		sc.validateNodes(func(key, f string, a ...any) { got = append(got, key) })
		if tt.ok {
			assert.Empty(t, got, "%+v", tt.nd)
		} else {
			assert.Contains(t, got, "nodes[0].cpu_background", "%+v", tt.nd)
		}
	}
}

// TestBackgroundRunEnds: a whole run with background CPU ends, reports the
// background in each node's CPU time, and takes capacity from messages:
// the same load is slower with it than without. (The jobs re-arm
// forever; a teardown that left them on never returned.)
func TestBackgroundRunEnds(t *testing.T) {
	base := benchScenario(200, 100)
	withBg := base
	withBg.Nodes = append([]NodeSpec(nil), base.Nodes...)
	for i := range withBg.Nodes {
		withBg.Nodes[i].CPUCores = 1
		withBg.Nodes[i].CPUPerMsg = Duration(2 * time.Millisecond)
		withBg.Nodes[i].CPUBackground = 0.5
	}
	without := withBg
	without.Nodes = append([]NodeSpec(nil), withBg.Nodes...)
	for i := range without.Nodes {
		without.Nodes[i].CPUBackground = 0
	}
	run := func(sc Scenario) *Report {
		rep, err := Run(t, sc, Options{DataDir: t.TempDir()})
		require.NoError(t, err)
		require.Equal(t, sc.Load.RatePerSec*sc.Duration.D().Seconds(), float64(rep.Offered))
		return rep
	}
	a, b := run(without), run(withBg)
	assert.Equal(t, a.Accepted, b.Accepted, "the load is light enough for both")
	for i := range b.Nodes {
		assert.Greater(t, b.Nodes[i].CPUUtilization, a.Nodes[i].CPUUtilization+0.3, "node %s: the background's half CPU shows", b.Nodes[i].Name)
	}
	assert.Greater(t, b.Latency.P50, a.Latency.P50, "messages wait behind background jobs")
}

// TestIdleCPU: idle CPU (cpu_idle 0.3 on one whole CPU) burns 3 ms of
// every 10 ms on an idle node, holds no CPU (a message arriving at any
// time takes its own CPU time only), and is preempted by work: a node
// kept busy burns none.
func TestIdleCPU(t *testing.T) {
	nd := NodeSpec{Name: "n1", CPUCores: 1, CPUPerMsg: Duration(5 * time.Millisecond), CPUPerKiB: Duration(time.Nanosecond), CPUIdle: 0.3}
	runCost(t, nd, func(t *testing.T, c *nodeCost) {

		c.setRunning(true)
		time.Sleep(time.Second + time.Millisecond) // 100 ticks
		assert.Equal(t, 300*time.Millisecond, c.stats().IdleTime, "0.3 of an idle CPU for 1 s")
		assert.Equal(t, c.stats().IdleTime, c.stats().CPUTime, "idle CPU counts as CPU time")
		assert.Zero(t, c.stats().BgTime)

		for _, at := range []time.Duration{0, 500 * time.Microsecond, 3 * time.Millisecond} {
			time.Sleep(at)
			t0 := time.Now()
			c.CPU(0)
			assert.Equal(t, 5*time.Millisecond, time.Since(t0), "a message %v after a tick waits for nothing", at)
		}

		// Busy back to back for a second: no idle CPU in any of its
		// periods (the first tick may still see the gap before it).
		time.Sleep(10*time.Millisecond - time.Since(time.Now().Truncate(10*time.Millisecond)))
		before := c.stats().IdleTime
		end := time.Now().Add(time.Second)
		for time.Now().Before(end) {
			c.CPU(0)
		}
		assert.LessOrEqual(t, c.stats().IdleTime-before, 3*time.Millisecond, "a busy node burns no idle CPU")

		c.setRunning(false)
		before = c.stats().IdleTime
		time.Sleep(time.Second)
		assert.Equal(t, before, c.stats().IdleTime, "a stopped node burns nothing")
	})
}

// TestIdleCPUQuota: on a quota, idle CPU spends the period's budget (the
// kernel throttles a spinning thread like any other): with 0.15 of a CPU
// on a 0.2 quota, 13.5 of the first period's 20 ms are gone by 91.5 ms,
// so a 15 ms message then runs 6.5 ms, waits for the period's end at
// 100 ms and runs 8.5 ms: 17 ms. A node throttled by its messages spins
// nothing: its budget goes to them.
func TestIdleCPUQuota(t *testing.T) {
	nd := NodeSpec{Name: "n1", CPUQuota: 0.2, CPUPerMsg: Duration(15 * time.Millisecond), CPUPerKiB: Duration(time.Nanosecond), CPUIdle: 0.15}
	runCost(t, validNode(t, nd), func(t *testing.T, c *nodeCost) {
		c.setRunning(true)
		time.Sleep(91500 * time.Microsecond)
		t0 := time.Now()
		c.CPU(0)
		assert.Equal(t, 17*time.Millisecond, time.Since(t0))

		// Saturate it from 200 ms: 28 messages of 15 ms on both CPUs at
		// once, 420 ms of work: 21 periods of its 20 ms budget if the idle
		// CPU spends none of it (at 1.5 ms a tick it would take 84).
		time.Sleep(200*time.Millisecond - time.Since(t0.Truncate(100*time.Millisecond)))
		start, before := time.Now(), c.stats().IdleTime
		done := make(chan struct{})
		for range 2 {
			go func() {
				for range 14 {
					c.CPU(0)
				}
				done <- struct{}{}
			}()
		}
		<-done
		<-done
		assert.LessOrEqual(t, c.stats().IdleTime-before, 3*time.Millisecond, "a saturated node spins (almost) nothing")
		assert.InDelta(t, float64(2100*time.Millisecond), float64(time.Since(start)), float64(100*time.Millisecond), "its budget goes to its messages")
		c.setRunning(false)
	})
}

// TestIdleRunEnds: a whole run with idle CPU ends, reports it in each
// node's CPU, and changes no message's timing on whole CPUs: the same
// run without it has the same latencies, exactly.
func TestIdleRunEnds(t *testing.T) {
	base := benchScenario(200, 100)
	withIdle := base
	withIdle.Nodes = append([]NodeSpec(nil), base.Nodes...)
	for i := range withIdle.Nodes {
		withIdle.Nodes[i].CPUCores = 1
		withIdle.Nodes[i].CPUPerMsg = Duration(2 * time.Millisecond)
		withIdle.Nodes[i].CPUIdle = 0.5
	}
	without := withIdle
	without.Nodes = append([]NodeSpec(nil), withIdle.Nodes...)
	for i := range without.Nodes {
		without.Nodes[i].CPUIdle = 0
	}
	run := func(sc Scenario) *Report {
		rep, err := Run(t, sc, Options{DataDir: t.TempDir()})
		require.NoError(t, err)
		require.Equal(t, sc.Load.RatePerSec*sc.Duration.D().Seconds(), float64(rep.Offered))
		return rep
	}
	a, b := run(without), run(withIdle)
	assert.Equal(t, a.Accepted, b.Accepted)
	for i := range b.Nodes {
		assert.Greater(t, b.Nodes[i].CPUUtilization, a.Nodes[i].CPUUtilization+0.2, "node %s: the idle CPU shows", b.Nodes[i].Name)
	}
	assert.Equal(t, a.Latency, b.Latency, "no message waits for idle CPU")
}

// validNode is nd as a scenario's validation fills it in (a quota's
// cores, the defaults).
func validNode(t *testing.T, nd NodeSpec) NodeSpec {
	t.Helper()
	sc := Scenario{Nodes: []NodeSpec{nd}}
	var errs []string
	sc.validateNodes(func(key, f string, a ...any) { errs = append(errs, key) })
	require.Empty(t, errs, "%+v", nd)
	return sc.Nodes[0]
}

// runCost runs f in a synctest bubble with a running simulated network and
// nd's hardware on it.
func runCost(t *testing.T, nd NodeSpec, f func(t *testing.T, c *nodeCost)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		n := simnet.NewNet(1, simnet.DefaultNetConfig())
		stop := n.Start()
		defer stop()
		f(t, newNodeCost(n, nd, nil))
	})
}

// TestBusyCharge: with cpu_per_msg_busy a message that finds the node's
// CPU idle costs cpu_per_msg, and one that arrives while it works (a job
// running or queued) costs cpu_per_msg_busy: three arriving together on
// one CPU take 5 + 1 + 1 ms, not 15; a message after the node went idle
// again costs 5 ms once more. Without the figure every message costs
// cpu_per_msg.
func TestBusyCharge(t *testing.T) {
	burst := func(t *testing.T, c *nodeCost, n int) time.Duration {
		t0 := time.Now()
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() { defer wg.Done(); c.CPU(0) }()
		}
		wg.Wait()
		return time.Since(t0)
	}
	nd := NodeSpec{Name: "n1", CPUCores: 1, CPUPerMsg: Duration(5 * time.Millisecond), CPUPerKiB: Duration(time.Nanosecond),
		CPUPerMsgBusy: Duration(time.Millisecond)}
	runCost(t, nd, func(t *testing.T, c *nodeCost) {
		assert.Equal(t, 7*time.Millisecond, burst(t, c, 3), "the first wakes the node, the others ride")
		assert.Equal(t, 7*time.Millisecond, c.stats().CPUTime)
		time.Sleep(time.Second)
		assert.Equal(t, 5*time.Millisecond, burst(t, c, 1), "an idle node pays the whole charge again")
	})
	nd.CPUPerMsgBusy = 0
	runCost(t, nd, func(t *testing.T, c *nodeCost) {
		assert.Equal(t, 15*time.Millisecond, burst(t, c, 3), "without the figure every message costs cpu_per_msg")
	})
}

// TestBusyChargeThrottled: a node held by its quota is at work: a message
// arriving while another waits out a throttled period costs
// cpu_per_msg_busy.
func TestBusyChargeThrottled(t *testing.T) {
	nd := NodeSpec{Name: "n1", CPUQuota: 0.1, CPUCores: 1, CPUPerMsg: Duration(15 * time.Millisecond), CPUPerKiB: Duration(time.Nanosecond),
		CPUPerMsgBusy: Duration(2 * time.Millisecond)}
	runCost(t, validNode(t, nd), func(t *testing.T, c *nodeCost) {
		// The first message spends the period's 10 ms and is throttled to
		// 100 ms, then runs its last 5 ms: done at 105 ms. The second,
		// arriving at 50 ms while the first is held, queues and then runs
		// its 2 ms: done at 107 ms.
		t0 := time.Now()
		done := make(chan time.Duration, 1)
		go func() { c.CPU(0); done <- time.Since(t0) }()
		time.Sleep(50 * time.Millisecond)
		c.CPU(0)
		assert.Equal(t, 107*time.Millisecond, time.Since(t0))
		assert.Equal(t, 105*time.Millisecond, <-done)
		assert.Equal(t, 17*time.Millisecond, c.stats().CPUTime)
	})
}
