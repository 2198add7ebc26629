package report

import (
	"bytes"
	"flag"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// update rewrites the golden pages: go test ./bench/report -update
var update = flag.Bool("update", false, "rewrite testdata/*.golden.md")

func load(t *testing.T, name string) *Report {
	t.Helper()
	r, err := LoadFile(filepath.Join("testdata", name+".json"))
	require.NoError(t, err)
	return r
}

func TestFormat(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{num(0), "0"},
		{num(999), "999"},
		{num(24097), "24,097"},
		{num(-1234567), "-1,234,567"},
		{rate(401.617), "401.6"},
		{rate(400), "400"},
		{rate(5600), "5,600"},
		{msf(0.5), "0.50 ms"},
		{msf(12.589), "12.6 ms"},
		{msf(254.2), "254 ms"},
		{msf(14375.3), "14,375 ms"},
		{pct(0.25), "25.0%"},
		{pct(0.0026), "0.26%"},
		{pct(0), "0.0%"},
		{bytesSI(999), "999 B"},
		{bytesSI(9074), "9.1 kB"},
		{bytesSI(162.3e6), "162.3 MB"},
		{kib(4096), "4.0 KiB"},
		{kib(1 << 20), "1.0 MiB"},
		{plural(1, "window"), "1 window"},
		{plural(3, "window"), "3 windows"},
		{fmtList([]string{"a", "b", "c"}), "a, b and c"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.got)
	}
}

func TestDerive(t *testing.T) {
	r := load(t, "roundrobin")
	f := Derive(r)
	assert.Equal(t, "n4", f.Slowest, "lowest weight")
	assert.Equal(t, "n1", f.Fastest, "highest weight")
	assert.InDelta(t, 1.0/9, f.SlowWeightShare, 1e-9)
	assert.Equal(t, "n4", f.Busiest, "the slow node does the most CPU work per message")
	assert.Equal(t, "CPU", f.BusiestWhat)
	var n4 Node
	for _, n := range r.Nodes {
		if n.Name == "n4" {
			n4 = n
		}
	}
	assert.Equal(t, n4.ShareCopies, f.SlowCopyShare)
	assert.InDelta(t, n4.CPUBusySeconds/(2*r.LoadSeconds), f.BusiestFrac, 1e-9)
}

func TestLargeFraction(t *testing.T) {
	tests := []struct {
		name  string
		size  Size
		limit float64
		want  float64
	}{
		{"median at the limit", Size{Dist: "lognormal", MedianBytes: 1 << 20, Sigma: 1, MaxBytes: 4 << 20}, 1 << 20, 0.5},
		{"max below the limit", Size{Dist: "lognormal", MedianBytes: 4096, Sigma: 1, MaxBytes: 1 << 19}, 1 << 20, 0},
		{"fixed above", Size{Dist: "fixed", MedianBytes: 2 << 20, MaxBytes: 2 << 20}, 1 << 20, 1},
		{"fixed below", Size{Dist: "fixed", MedianBytes: 4096, MaxBytes: 1 << 20}, 1 << 20, 0},
	}
	for _, tt := range tests {
		assert.InDelta(t, tt.want, largeFraction(tt.size, tt.limit), 1e-9, tt.name)
	}
	// The strategy scenarios' load: ln(256) sigmas out.
	assert.Less(t, largeFraction(Size{Dist: "lognormal", MedianBytes: 4096, Sigma: 1, MaxBytes: 1 << 20}, 1<<20), 1e-6)
}

// render renders r into a temporary directory and returns the page and
// the directory.
func render(t *testing.T, r *Report) ([]byte, string) {
	t.Helper()
	dir := t.TempDir()
	md, err := RenderScenario(r, Options{ImgDir: filepath.Join(dir, "img"), ImgRel: "img"})
	require.NoError(t, err)
	return md, dir
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden.md")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./bench/report -update to create it")
	assert.Equal(t, string(want), string(got), "page differs from %s (rerun with -update if the change is intended)", path)
}

func TestRenderScenarioGolden(t *testing.T) {
	for _, name := range []string{"failover", "real"} {
		t.Run(name, func(t *testing.T) {
			r := load(t, name)
			md, dir := render(t, r)
			golden(t, name, md)
			for _, f := range ChartFiles(r.Scenario) {
				b, err := os.ReadFile(filepath.Join(dir, "img", f))
				require.NoError(t, err)
				img, err := png.Decode(bytes.NewReader(b))
				require.NoError(t, err, f)
				assert.GreaterOrEqual(t, img.Bounds().Dx(), 800, f)
				assert.Contains(t, string(md), "img/"+f, "the page links %s", f)
			}
		})
	}
}

func TestRenderScenarioContent(t *testing.T) {
	md, _ := render(t, load(t, "failover"))
	s := string(md)
	for _, want := range []string{
		"# Scenario `failover` (simulator, virtual time)",
		"## Figures", "## Nodes", "## Charts", "## Faults and their effect", "## Wall clock (machine-dependent)",
		"crash n2 at 20.0 s",
		"make bench SCENARIO=failover",
	} {
		assert.Contains(t, s, want)
	}
	// Wall figures appear only in their section.
	before, _, ok := strings.Cut(s, "## Wall clock")
	require.True(t, ok)
	assert.NotContains(t, before, "wall second")

	real, _ := render(t, load(t, "real"))
	assert.Contains(t, string(real), "real sockets, wall-clock time")
	assert.Contains(t, string(real), "cannot be imposed")
}

// TestRenderPendingAtEnd: acknowledged messages whose commit was still in
// flight when the run ended are said, apart from lost ones; a page without
// them does not mention them.
func TestRenderPendingAtEnd(t *testing.T) {
	r := load(t, "failover")
	md, _ := render(t, r)
	assert.NotContains(t, string(md), "not yet committed")
	r.PendingAtEnd = 34
	md, _ = render(t, r)
	assert.Contains(t, string(md), "lost none. 34 acknowledged messages were durable but not yet committed when the run ended")
}

// TestRenderDeterministic: the same JSON gives the same page and the same
// PNG bytes, so regenerating reports leaves the tree unchanged.
func TestRenderDeterministic(t *testing.T) {
	r := load(t, "failover")
	md1, d1 := render(t, r)
	md2, d2 := render(t, r)
	assert.Equal(t, md1, md2)
	for _, f := range ChartFiles(r.Scenario) {
		a, err := os.ReadFile(filepath.Join(d1, "img", f))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(d2, "img", f))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(a, b), "%s differs between two renders", f)
	}
}

func comparison(t *testing.T) *Comparison {
	c := &Comparison{Strategies: []string{"roundrobin", "weighted", "hash"}, Reports: map[string]*Report{}, Real: map[string]*Report{}}
	for _, n := range c.Strategies {
		c.Reports[n] = load(t, n)
	}
	c.Reports["failover"] = load(t, "failover")
	r := load(t, "real")
	c.Real[r.Scenario] = r
	s, err := LoadSaturation(filepath.Join("testdata", "saturation.json"))
	require.NoError(t, err)
	c.Saturation = s
	return c
}

func TestRenderComparison(t *testing.T) {
	c := comparison(t)
	dir := t.TempDir()
	md, err := RenderComparison(c, Options{ImgDir: filepath.Join(dir, "img"), ImgRel: "img"})
	require.NoError(t, err)
	golden(t, "comparison", md)
	s := string(md)
	for _, want := range []string{"[roundrobin](roundrobin.md)", "[failover](failover.md)", "## Saturation", "## Real sockets", "compare-strategies.png"} {
		assert.Contains(t, s, want)
	}
	for _, f := range []string{"compare-strategies.png", "compare-saturation.png"} {
		_, err := os.Stat(filepath.Join(dir, "img", f))
		assert.NoError(t, err, f)
	}
}

// TestVerdicts checks that the "why" text follows the numbers, not a
// script: swap two strategies' figures and the winner changes.
func TestVerdicts(t *testing.T) {
	c := comparison(t)
	v := strings.Join(verdicts(c.rows()), "\n")
	assert.Contains(t, v, "**Median latency: weighted**", "weighted has the lowest p50 in the fixture")
	assert.Contains(t, v, "**Throughput: a tie**")
	assert.Contains(t, v, "**Tail latency: a tie**")

	// Make hash the fastest at the median: the verdict must follow.
	c.Reports["hash"].Latency.P50 = 1
	v = strings.Join(verdicts(c.rows()), "\n")
	assert.Contains(t, v, "**Median latency: hash**")
	assert.NotContains(t, v, "escapes", "the 50% explanation no longer separates the strategies, so it is not claimed")

	// Make throughput differ by more than the tie threshold.
	c.Reports["roundrobin"].Throughput = 300
	v = strings.Join(verdicts(c.rows()), "\n")
	assert.Contains(t, v, "**Throughput: ")
	assert.NotContains(t, v, "**Throughput: a tie**")
}

func TestKind(t *testing.T) {
	for _, tt := range []struct {
		json, want string
	}{
		{`{"kind":"saturation"}`, KindSaturation},
		{`{"kind":"scale"}`, KindScale},
		{`{"scenario":"x"}`, ""},
	} {
		got, err := Kind([]byte(tt.json))
		require.NoError(t, err)
		assert.Equal(t, tt.want, got, tt.json)
	}
	_, err := Decode([]byte(`{"kind":"scale"}`))
	assert.Error(t, err, "a sweep is not a scenario report")
	_, err = LoadSaturation(filepath.Join("testdata", "failover.json"))
	assert.Error(t, err)
}

func TestRenderScale(t *testing.T) {
	s := &Scale{Kind: KindScale, Scenario: "scale", LoadSeconds: 5, DrainSeconds: 3, RatePerNode: 100, Replicas: 2}
	for i, n := range []int{3, 6, 12} {
		f := float64(n)
		s.Points = append(s.Points, ScalePoint{Nodes: n, OfferedRate: 100 * f, Throughput: 100 * f, ThroughputPerNode: 100,
			CatalogBytesPerNode: 70_000 * f, CopyBytesPerNode: 3e6, PeerBytesPerMsg: 9000 + 500*f, MirrorPayloadBytesPerMsg: 6700,
			OtherPeerBytesPerMsg: 2300 + 500*f, P50Ms: 10, P99Ms: 20 + float64(i)})
	}
	dir := t.TempDir()
	md, err := RenderScale(s, Options{ImgDir: dir, ImgRel: "img"})
	require.NoError(t, err)
	out := string(md)
	assert.Contains(t, out, "throughput went from 300 to 1,200 msgs/s (4x; growth exponent 1.00")
	assert.Contains(t, out, "(exponent 1.00)", "catalog per node linear in the node count")
	for _, f := range []string{"scale-throughput.png", "scale-catalog.png", "scale-peer.png"} {
		_, err := os.Stat(filepath.Join(dir, f))
		assert.NoError(t, err, f)
	}
}
