package sim

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/sim/simnet"
)

// TestCPUQuota: a node with cpu_quota 0.4 has one CPU serving at 0.4 of
// full speed: a 1 ms message holds it 2.5 ms, two queue behind each other,
// and the report counts 1 ms of CPU each; whole cores are untouched.
func TestCPUQuota(t *testing.T) {
	tests := []struct {
		quota     float64
		cores     int
		wantCores int
		wantHold  time.Duration // two 1 ms messages at once: the second's wait
	}{
		{0, 2, 2, time.Millisecond},
		{0, 1, 1, 2 * time.Millisecond},
		{0.4, 0, 1, 5 * time.Millisecond},
		{1.5, 0, 2, 1333334 * time.Nanosecond},
	}
	for _, tt := range tests {
		nd := NodeSpec{Name: "n1", CPUQuota: tt.quota, CPUCores: tt.cores, CPUPerMsg: Duration(time.Millisecond), CPUPerKiB: Duration(time.Nanosecond)}
		sc := Scenario{Nodes: []NodeSpec{nd}}
		var errs []string
		sc.validateNodes(func(key, f string, a ...any) { errs = append(errs, key) })
		require.Empty(t, errs, "quota %v", tt.quota)
		nd = sc.Nodes[0]
		assert.Equal(t, tt.wantCores, nd.CPUCores, "quota %v: cores", tt.quota)
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
			assert.Equal(t, tt.wantHold, max(a, b), "quota %v cores %d: the later of two messages", tt.quota, tt.cores)
			assert.Equal(t, 2*time.Millisecond, c.stats().CPUTime, "the CPU time counted is the work, not the hold")
		})
	}
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
