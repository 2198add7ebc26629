package sim

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"

	"mailarray/sim/simnet"
)

// TestCPUQuota: a node with a cpu_quota runs at full speed until the
// 100 ms period's quota is spent, then waits for the next period, as CFS
// bandwidth control does; the report counts the work, not the hold; whole
// cores are never throttled.
func TestCPUQuota(t *testing.T) {
	tests := []struct {
		name      string
		quota     float64
		cores     int
		work      time.Duration // each of two messages arriving at once
		wantCores int
		wantLast  time.Duration // when the later of the two is done
	}{
		{"two whole cores", 0, 2, time.Millisecond, 2, time.Millisecond},
		{"one whole core", 0, 1, time.Millisecond, 1, 2 * time.Millisecond},
		// Go runs a quota on max(2, ceil(quota)) threads: two at once.
		{"0.4: Go's two threads, under the quota, full speed", 0.4, 0, time.Millisecond, 2, time.Millisecond},
		{"0.4 on one CPU: under the quota, full speed", 0.4, 1, time.Millisecond, 1, 2 * time.Millisecond},
		{"1.5: two CPUs", 1.5, 0, time.Millisecond, 2, time.Millisecond},
		{"2.5: three CPUs", 2.5, 0, time.Millisecond, 3, time.Millisecond},
		// 40 ms a period: 0-30 the first, 30-40 the second's first 10 ms,
		// throttled to 100, its last 20 ms to 120.
		{"0.4 on one CPU: throttled", 0.4, 1, 30 * time.Millisecond, 1, 120 * time.Millisecond},
		// 20 ms a period: the first runs 0-20 and 100-110; the second
		// 110-120 (the period's budget then spent) and 200-220.
		{"0.2 on one CPU: throttled twice", 0.2, 1, 30 * time.Millisecond, 1, 220 * time.Millisecond},
		// On two threads the jobs are charged one after the other: the
		// first takes 0-20 and 100-110, the second finds the budget spent
		// until 100, runs 100-110 beside it, then 200-220. (The kernel
		// would run both 0-10, 100-110 and 200-210: the model throttles
		// the later job a little early.)
		{"0.2 on Go's two threads: throttled twice", 0.2, 0, 30 * time.Millisecond, 2, 220 * time.Millisecond},
		// A whole core never waits for a period.
		{"one whole core, long", 0, 1, 30 * time.Millisecond, 1, 60 * time.Millisecond},
	}
	for _, tt := range tests {
		nd := NodeSpec{Name: "n1", CPUQuota: tt.quota, CPUCores: tt.cores, CPUPerMsg: Duration(tt.work), CPUPerKiB: Duration(time.Nanosecond)}
		nd = validNode(t, nd)
		assert.Equal(t, tt.wantCores, nd.CPUCores, "%s: cores", tt.name)
		synctest.Test(t, func(t *testing.T) {
			n := simnet.NewNet(1, simnet.DefaultNetConfig())
			stop := n.Start()
			defer stop()
			c := newNodeCost(n, nd, nil)
			t0 := time.Now()
			done := make(chan time.Duration, 2)
			for range 2 {
				go func() { c.CPU(0); done <- time.Since(t0) }()
			}
			a, b := <-done, <-done
			assert.Equal(t, tt.wantLast, max(a, b), "%s: the later of two messages", tt.name)
			assert.Equal(t, 2*tt.work, c.stats().CPUTime, "%s: the CPU time counted is the work, not the hold", tt.name)
		})
	}
}

// TestCFSHold: the bandwidth arithmetic alone, across period boundaries.
func TestCFSHold(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	q := &cfs{budget: 20 * ms}
	assert.Equal(t, 10*ms, q.hold(t0.Add(95*ms), 10*ms), "5 ms to the period's end, 5 in the next: no throttling")
	assert.Equal(t, 15*ms, q.hold(t0.Add(100*ms), 15*ms), "the rest of that period's budget and more: 5 ms used already, 15 left")
	assert.Equal(t, 100*ms, q.hold(t0.Add(115*ms), 15*ms), "budget spent at 115: throttled to 200, then 15 ms")
	assert.Equal(t, 205*ms, q.hold(t0.Add(215*ms), 45*ms), "0.2 of each period: 215-220, 300-320, 400-420 ms")
}

// TestCFSHoldSeveralCPUs: on several CPUs a job can start in a period that
// another job's hold has already run past; each period keeps its own
// budget (a single current period reset the next one's, and gave the
// later job a fresh budget: a 0.2 node then sustained 0.4).
func TestCFSHoldSeveralCPUs(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	q := &cfs{budget: 20 * ms}
	assert.Equal(t, 10*ms, q.hold(t0.Add(95*ms), 10*ms), "95-100 in the first period, 100-105 in the second")
	assert.Equal(t, 10*ms, q.hold(t0.Add(96*ms), 10*ms), "a second CPU: 96-100 (9 of the first period used), 100-106 (11 of the second)")
	assert.Equal(t, 121*ms, q.hold(t0.Add(97*ms), 30*ms), "97-100 (12 used), 100-109 (the second's 20), throttled to 200, 200-218")
	assert.Equal(t, 2*ms, q.hold(t0.Add(218*ms), 2*ms), "the third period has 2 ms left: 218-220")
	assert.Equal(t, 82500*time.Microsecond, q.hold(t0.Add(218500*time.Microsecond), time.Millisecond), "then nothing until 300")
	assert.Equal(t, ms, q.hold(t0.Add(time.Hour), ms), "an hour later: a fresh period")
	assert.Len(t, q.used, 1, "the periods that are over are dropped")
}

// TestCPUQuotaValidate: a quota decides the cores; a contradicting
// cpu_cores or a nonsense quota is refused.
func TestCPUQuotaValidate(t *testing.T) {
	for _, tt := range []struct {
		nd   NodeSpec
		want string
	}{
		{NodeSpec{Name: "n1", CPUQuota: 1.5, CPUCores: 1}, "nodes[0].cpu_cores"},
		{NodeSpec{Name: "n1", CPUQuota: -1}, "nodes[0].cpu_quota"},
		{NodeSpec{Name: "n1", CPUQuota: 0.001}, "nodes[0].cpu_quota"},
	} {
		sc := Scenario{Nodes: []NodeSpec{tt.nd}}
		var got []string
		sc.validateNodes(func(key, f string, a ...any) { got = append(got, key) })
		assert.Contains(t, got, tt.want, "%+v", tt.nd)
	}
	assert.Equal(t, 0.4, NodeSpec{CPUQuota: 0.4, CPUCores: 1}.CPUCapacity())
	assert.Equal(t, 4.0, NodeSpec{CPUCores: 4}.CPUCapacity())
}
