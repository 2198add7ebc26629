package sim

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
		{"0.4: under the quota, full speed", 0.4, 0, time.Millisecond, 1, 2 * time.Millisecond},
		{"1.5: two CPUs", 1.5, 0, time.Millisecond, 2, time.Millisecond},
		// 40 ms a period: 0-30 the first, 30-40 the second's first 10 ms,
		// throttled to 100, its last 20 ms to 120.
		{"0.4: throttled", 0.4, 0, 30 * time.Millisecond, 1, 120 * time.Millisecond},
		// 20 ms a period: the first runs 0-20 and 100-110; the second
		// 110-120 (the period's budget then spent) and 200-220.
		{"0.2: throttled twice", 0.2, 0, 30 * time.Millisecond, 1, 220 * time.Millisecond},
		// A whole core never waits for a period.
		{"one whole core, long", 0, 1, 30 * time.Millisecond, 1, 60 * time.Millisecond},
	}
	for _, tt := range tests {
		nd := NodeSpec{Name: "n1", CPUQuota: tt.quota, CPUCores: tt.cores, CPUPerMsg: Duration(tt.work), CPUPerKiB: Duration(time.Nanosecond)}
		sc := Scenario{Nodes: []NodeSpec{nd}}
		var errs []string
		sc.validateNodes(func(key, f string, a ...any) { errs = append(errs, key) })
		require.Empty(t, errs, tt.name)
		nd = sc.Nodes[0]
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

// TestCPUQuotaValidate: a quota decides the cores; a contradicting
// cpu_cores or a nonsense quota is refused.
func TestCPUQuotaValidate(t *testing.T) {
	for _, tt := range []struct {
		nd   NodeSpec
		want string
	}{
		{NodeSpec{Name: "n1", CPUQuota: 0.4, CPUCores: 2}, "nodes[0].cpu_cores"},
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
