package sim

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/sim/simnet"
)

func testProfile(t *testing.T) CostProfile {
	t.Helper()
	p, err := LoadProfile(filepath.Join("testdata", ProfilesDir, "measured.yaml"))
	require.NoError(t, err)
	return p
}

// TestProfileRoundTrip: what Marshal writes, ParseProfile reads back
// unchanged (make calibrate writes, scenarios read).
func TestProfileRoundTrip(t *testing.T) {
	p := testProfile(t)
	assert.Equal(t, Duration(310*time.Microsecond), p.CPUPerMsg.Value)
	assert.Equal(t, int64(150_000_000), p.DiskBytesPerSec.Value)
	p.ReadCPUPerMsg = DurationFigure{Value: Duration(400 * time.Microsecond), Min: Duration(350 * time.Microsecond), Max: Duration(450 * time.Microsecond)}
	p.Method = []string{"cpu_per_msg: a fit", "disk_fsync: a probe"}
	b, err := p.Marshal()
	require.NoError(t, err)
	got, err := ParseProfile(b)
	require.NoError(t, err, "%s", b)
	assert.Equal(t, p, got, "profile after a round trip through YAML:\n%s", b)
}

// TestScenarioNamesProfile: a scenario naming a profile takes every cost
// field a node leaves unset, and the link, from it; what a node sets is
// kept.
func TestScenarioNamesProfile(t *testing.T) {
	sc, err := LoadScenario(filepath.Join("testdata", "profile-scenario.yaml"))
	require.NoError(t, err)
	n1, n2 := sc.Nodes[0], sc.Nodes[1]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"n1 cpu_per_msg", n1.CPUPerMsg, Duration(310 * time.Microsecond)},
		{"n1 cpu_per_kib", n1.CPUPerKiB, Duration(7 * time.Microsecond)},
		{"n1 cpu_background", n1.CPUBackground, 0.05},
		{"n1 cpu_per_msg_busy", n1.CPUPerMsgBusy, Duration(120 * time.Microsecond)},
		{"n2 cpu_per_msg_busy (its own)", n2.CPUPerMsgBusy, Duration(300 * time.Microsecond)},
		{"n1 disk_fsync", n1.DiskFsync, Duration(2500 * time.Microsecond)},
		{"n1 disk_bytes_per_sec", n1.DiskBytesPerSec, int64(150_000_000)},
		{"n2 cpu_per_msg (its own)", n2.CPUPerMsg, Duration(time.Millisecond)},
		{"n2 cpu_per_kib", n2.CPUPerKiB, Duration(7 * time.Microsecond)},
		{"n2 disk_fsync (its own)", n2.DiskFsync, Duration(4 * time.Millisecond)},
		{"link latency", sc.Link.Latency, Duration(25 * time.Microsecond)},
		{"link jitter", sc.Link.Jitter, Duration(10 * time.Microsecond)},
		{"link bandwidth (the default)", sc.Link.BytesPerSec, simnet.DefaultNetConfig().Link.BandwidthBytesPerSec},
		{"cpu_cores (not the profile's)", n1.CPUCores, 2},
	} {
		assert.Equal(t, tc.want, tc.got, tc.name)
	}
	// Validating again (the bench suite copies and revalidates) changes
	// nothing.
	again := sc
	require.NoError(t, again.Validate())
	assert.Equal(t, sc.Nodes, again.Nodes)
}

// TestScenarioLinkKeptFromProfile: a scenario that sets its link keeps it.
func TestScenarioLinkKeptFromProfile(t *testing.T) {
	sc, err := parseWithProfile(t, "name: t\nduration: 1s\ncost_profile: measured\nlink: {latency: 2ms}\nnodes: [{name: n1}]\nload: {rate_per_sec: 10}\n")
	require.NoError(t, err)
	assert.Equal(t, Duration(2*time.Millisecond), sc.Link.Latency)
	assert.Equal(t, Duration(0), sc.Link.Jitter)
}

// TestScenarioWithoutProfileUnchanged: naming no profile leaves the
// modeled defaults, even with a profile attached.
func TestScenarioWithoutProfileUnchanged(t *testing.T) {
	sc, err := parseWithProfile(t, "name: t\nduration: 1s\nnodes: [{name: n1}]\nload: {rate_per_sec: 10}\n")
	require.NoError(t, err)
	assert.Equal(t, Duration(100*time.Microsecond), sc.Nodes[0].CPUPerMsg)
	assert.Equal(t, int64(200_000_000), sc.Nodes[0].DiskBytesPerSec)
	assert.Equal(t, Duration(simnet.DefaultNetConfig().Link.Latency), sc.Link.Latency)
}

// parseWithProfile parses y as a file in testdata/ would be read, with
// testdata/profiles/ to draw on.
func parseWithProfile(t *testing.T, y string) (Scenario, error) {
	t.Helper()
	return parseScenario([]byte(y), "testdata")
}

func TestScenarioProfileErrors(t *testing.T) {
	base := "name: t\nduration: 1s\nnodes: [{name: n1}]\nload: {rate_per_sec: 10}\n"
	for _, tc := range []struct {
		name, yaml, dir, want string
	}{
		{"unknown profile", base + "cost_profile: nonesuch\n", "testdata", `cost_profile: unknown profile "nonesuch"`},
		{"no file read by ParseScenario", base + "cost_profile: measured\n", "", `cost_profile: unknown profile "measured"`},
		{"bad name", base + "cost_profile: ../measured\n", "testdata", "cost_profile: \"../measured\" must be a lowercase label"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseScenario([]byte(tc.yaml), tc.dir)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// A profile attached under another name is not the one named.
	sc := Scenario{Name: "t", Duration: Duration(time.Second), Nodes: []NodeSpec{{Name: "n1"}}, Load: LoadSpec{RatePerSec: 10}, CostProfile: "other"}
	sc.UseProfile(testProfile(t))
	assert.ErrorContains(t, sc.Validate(), `unknown profile "other"`)
}

func TestProfileValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(p *CostProfile)
		want string
	}{
		{"name", func(p *CostProfile) { p.Name = "Calibrated!" }, "name:"},
		{"repeats", func(p *CostProfile) { p.Repeats = 0 }, "repeats:"},
		{"cpu_per_msg unmeasured", func(p *CostProfile) { p.CPUPerMsg = DurationFigure{} }, "cpu_per_msg.value"},
		{"cpu_per_kib zero", func(p *CostProfile) { p.CPUPerKiB = DurationFigure{} }, "cpu_per_kib.value"},
		{"fsync outside its range", func(p *CostProfile) { p.DiskFsync.Max = p.DiskFsync.Value / 2 }, "disk_fsync: value"},
		{"bandwidth", func(p *CostProfile) { p.DiskBytesPerSec = RateFigure{} }, "disk_bytes_per_sec.value"},
		{"link latency", func(p *CostProfile) { p.LinkLatency = DurationFigure{} }, "link_latency.value"},
		{"background over a CPU", func(p *CostProfile) {
			p.CPUBackground = FractionFigure{Value: 1.5, Min: 1, Max: 2}
		}, "cpu_background.value"},
		{"background outside its range", func(p *CostProfile) { p.CPUBackground.Max = p.CPUBackground.Value / 2 }, "cpu_background: value"},
		{"negative read", func(p *CostProfile) {
			p.ReadCPUPerMsg = DurationFigure{Value: -1, Min: -1, Max: -1}
		}, "read_cpu_per_msg.value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testProfile(t)
			tc.edit(&p)
			err := p.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := ParseProfile([]byte("name: x\ncolour: blue\n"))
	assert.ErrorContains(t, err, "field colour not found")
}
