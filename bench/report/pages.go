package report

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg/draw"
)

// RenderSaturation returns results/saturation.md: every probe of every
// strategy's search, and the p99-against-load chart.
func RenderSaturation(s *Saturation, o Options) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# Saturation search\n\n")
	fmt.Fprintf(&b, "For each strategy scenario, the highest offered load the array sustains. A probe passes when %s. The search doubles the offered rate from the scenario's own until a probe fails, then bisects between the highest pass and the lowest failure. Every probe has the scenario's cluster, strategies, seed and load shape; only the rate, the duration and the client pool (at least rate x target p99 senders) change. Figures are virtual time; rerun with `make bench-saturation`.\n\n", s.Criterion)
	img := "compare-saturation.png"
	if err := saturationChart(s, filepath.Join(o.ImgDir, img)); err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, "![p99 latency against offered load, per strategy](%s)\n\n", filepath.ToSlash(filepath.Join(o.ImgRel, img)))
	for _, ss := range s.Strategies {
		fmt.Fprintf(&b, "## %s\n\n", code(ss.Strategy))
		fmt.Fprintf(&b, "DNS %s, placement %s, target p99 %s: sustained **%s msgs/s**", code(ss.DNSStrategy), code(ss.PlacementStrategy), msf(ss.TargetP99Ms), satCell(&ss))
		if ss.FirstFailMsgsPerSec > 0 {
			fmt.Fprintf(&b, "; first failure at %s msgs/s", rate(ss.FirstFailMsgsPerSec))
		}
		b.WriteString(".\n\n")
		var rows [][]string
		for i, p := range ss.Probes {
			v := "pass"
			if !p.Pass {
				v = "fail: " + p.Why
			}
			acc, p50, p99, share := fmt.Sprintf("%s / %s", num(p.Accepted), num(p.Offered)), msf(p.P50Ms), msf(p.P99Ms), pct(p.SlowCopyShare)
			if p.Offered == 0 {
				acc, p50, p99, share = "n/a", "n/a", "n/a", "n/a"
			}
			rows = append(rows, []string{num(i + 1), rate(p.OfferedRate), num(p.Senders), acc, num(p.Lost), p50, p99, probeBusiest(&p), share, v})
		}
		table(&b, []string{"probe", "offered (msgs/s)", "senders", "accepted / offered", "lost", "p50", "p99", "busiest node", "slowest node's share of copies", "verdict"}, "rrrrrrrlrl", rows)
	}
	fmt.Fprintf(&b, "## Wall clock (machine-dependent)\n\nThe whole search took %s of wall time on the machine that generated this page.\n", secs(s.Wall.Seconds))
	return []byte(b.String()), nil
}

// growthExponent is k in y ~ x^k between two points.
func growthExponent(x0, y0, x1, y1 float64) float64 {
	if x0 <= 0 || y0 <= 0 || x1 <= x0 || y1 <= 0 {
		return 0
	}
	return math.Log(y1/y0) / math.Log(x1/x0)
}

// RenderScale returns results/scale.md and writes its charts: throughput,
// catalog bytes per node and peer bytes per message against node count.
func RenderScale(s *Scale, o Options) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# Growth: the scale sweep\n\n")
	if len(s.Points) == 0 {
		b.WriteString("No points.\n")
		return []byte(b.String()), nil
	}
	first, last := s.Points[0], s.Points[len(s.Points)-1]
	nr := float64(last.Nodes) / float64(first.Nodes)
	var counts []string
	for _, p := range s.Points {
		counts = append(counts, num(p.Nodes))
	}
	fmt.Fprintf(&b, "The array of [`scenarios/%s.yaml`](../scenarios/%s.yaml) at %s nodes (all alike), under load proportional to its size: %s msgs/s offered per node, with senders, readers and mailboxes growing alike, so that every node has the same work at every size. Each point is a %s run plus a %s drain in the simulator (virtual time), R=%d. Rerun with `make bench SCENARIO=%s`.\n\n",
		s.Scenario, s.Scenario, fmtList(counts), rate(s.RatePerNode), secs(s.LoadSeconds), secs(s.DrainSeconds), s.Replicas, s.Scenario)

	// What grew, and how fast, from the first and last points.
	tx := growthExponent(float64(first.Nodes), first.Throughput, float64(last.Nodes), last.Throughput)
	cx := growthExponent(float64(first.Nodes), first.CatalogBytesPerNode, float64(last.Nodes), last.CatalogBytesPerNode)
	ox := growthExponent(float64(first.Nodes), first.OtherPeerBytesPerMsg, float64(last.Nodes), last.OtherPeerBytesPerMsg)
	fmt.Fprintf(&b, "From %d to %d nodes (%sx): throughput went from %s to %s msgs/s (%sx; growth exponent %.2f, 1 is linear), %s per node at the end",
		first.Nodes, last.Nodes, ftoa(math.Round(nr*10)/10), rate(first.Throughput), rate(last.Throughput), ftoa(math.Round(last.Throughput/math.Max(first.Throughput, 1e-9)*10)/10), tx, rate(last.ThroughputPerNode))
	lost, bad := 0, 0
	for _, p := range s.Points {
		lost += p.Lost
		bad += p.NotAccepted
	}
	fmt.Fprintf(&b, "; %s messages were lost and %s not accepted over the whole sweep. ", num(lost), num(bad))
	fmt.Fprintf(&b, "Every node keeps the whole catalog, so at constant work per node the catalog each node stores grows with the array: %s to %s per node (exponent %.2f). ",
		bytesSI(first.CatalogBytesPerNode), bytesSI(last.CatalogBytesPerNode), cx)
	totalFirst, totalLast := first.Throughput*first.PeerBytesPerMsg, last.Throughput*last.PeerBytesPerMsg
	otherFirst, otherLast := first.Throughput*first.OtherPeerBytesPerMsg, last.Throughput*last.OtherPeerBytesPerMsg
	fmt.Fprintf(&b, "Peer traffic per message went from %s to %s: the mirroring payload, (R-1) x the mean message, stays near %s, while the rest (catalog entries pushed to every node, anti-entropy rounds, load polls, protocol overhead) went from %s to %s per message (exponent %.2f). That is the cost of a catalog replicated on every node: the array's total peer traffic went from %s/s to %s/s, %sx for %sx the nodes (exponent %.2f), and its catalog and control part from %s/s to %s/s (exponent %.2f).\n\n",
		bytesSI(first.PeerBytesPerMsg), bytesSI(last.PeerBytesPerMsg), bytesSI(last.MirrorPayloadBytesPerMsg), bytesSI(first.OtherPeerBytesPerMsg), bytesSI(last.OtherPeerBytesPerMsg), ox,
		bytesSI(totalFirst), bytesSI(totalLast), ftoa(math.Round(totalLast/math.Max(totalFirst, 1e-9)*10)/10), ftoa(math.Round(nr*10)/10),
		growthExponent(float64(first.Nodes), totalFirst, float64(last.Nodes), totalLast),
		bytesSI(otherFirst), bytesSI(otherLast), growthExponent(float64(first.Nodes), otherFirst, float64(last.Nodes), otherLast))

	var rows [][]string
	for _, p := range s.Points {
		rows = append(rows, []string{num(p.Nodes), rate(p.OfferedRate), rate(p.Throughput), rate(p.ThroughputPerNode), msf(p.P50Ms), msf(p.P99Ms),
			bytesSI(p.CatalogBytesPerNode), num(int64(p.CatalogEntriesPerNode)), bytesSI(p.PeerBytesPerMsg), bytesSI(p.MirrorPayloadBytesPerMsg), bytesSI(p.OtherPeerBytesPerMsg),
			ftoa(p.CPUMsPerMsg), num(p.Lost)})
	}
	table(&b, []string{"nodes", "offered (msgs/s)", "accepted (msgs/s)", "per node", "p50", "p99", "catalog per node", "catalog entries per node", "peer bytes per msg", "of which mirroring payload", "of which catalog and control", "CPU ms per msg (all nodes)", "lost"}, "rrrrrrrrrrrrr", rows)

	charts := []struct {
		file, alt string
		draw      func(*Scale, string) error
	}{
		{"scale-throughput.png", "throughput against node count, with linear growth for reference", scaleThroughputChart},
		{"scale-catalog.png", "catalog bytes per node against node count", scaleCatalogChart},
		{"scale-peer.png", "peer bytes per message against node count", scalePeerChart},
	}
	for _, c := range charts {
		if err := c.draw(s, filepath.Join(o.ImgDir, c.file)); err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "![%s](%s)\n\n", c.alt, filepath.ToSlash(filepath.Join(o.ImgRel, c.file)))
	}
	fmt.Fprintf(&b, "## Wall clock (machine-dependent)\n\nThe sweep took %s of wall time on the machine that generated this page; the simulator's own cost per message is the network events per message, which grow with the node count as the peer traffic does.\n", secs(s.Wall.Seconds))
	return []byte(b.String()), nil
}

// headroom leaves space above the data for the legend.
func headroom(p *plot.Plot, xys ...plotter.XYs) {
	m := 0.0
	for _, x := range xys {
		for _, v := range x {
			m = max(m, v.Y)
		}
	}
	p.Y.Min, p.Y.Max = 0, m*1.3
}

func scaleXYs(s *Scale, y func(ScalePoint) float64) plotter.XYs {
	var out plotter.XYs
	for _, p := range s.Points {
		out = append(out, plotter.XY{X: float64(p.Nodes), Y: y(p)})
	}
	return out
}

func scaleThroughputChart(s *Scale, path string) error {
	p := newPlot("Growth: throughput", "nodes", "messages per second (virtual)")
	first := s.Points[0]
	ideal := scaleXYs(s, func(q ScalePoint) float64 { return first.Throughput * float64(q.Nodes) / float64(first.Nodes) })
	if err := addLine(p, "linear growth from the smallest array", ideal, grey, true); err != nil {
		return err
	}
	if err := addLinePoints(p, "offered", scaleXYs(s, func(q ScalePoint) float64 { return q.OfferedRate }), colorAt(1), draw.SquareGlyph{}); err != nil {
		return err
	}
	acc := scaleXYs(s, func(q ScalePoint) float64 { return q.Throughput })
	if err := addLinePoints(p, "accepted", acc, colorAt(0), draw.CircleGlyph{}); err != nil {
		return err
	}
	headroom(p, ideal, acc)
	p.X.Min = 0
	p.Legend.Left = true
	return writePNG(path, chartWidth, chartHeight, p)
}

func scaleCatalogChart(s *Scale, path string) error {
	p := newPlot("Growth: what each node stores", "nodes", "bytes stored per node (MB)")
	cat := scaleXYs(s, func(q ScalePoint) float64 { return q.CatalogBytesPerNode / 1e6 })
	copies := scaleXYs(s, func(q ScalePoint) float64 { return q.CopyBytesPerNode / 1e6 })
	if err := addLinePoints(p, "catalog bytes per node (every node keeps every entry)", cat, colorAt(0), draw.CircleGlyph{}); err != nil {
		return err
	}
	if err := addLinePoints(p, "message copies per node", copies, colorAt(2), draw.SquareGlyph{}); err != nil {
		return err
	}
	headroom(p, cat, copies)
	p.X.Min = 0
	p.Legend.Left = true
	return writePNG(path, chartWidth, chartHeight, p)
}

func scalePeerChart(s *Scale, path string) error {
	p := newPlot("Growth: node-to-node traffic per message", "nodes", "peer bytes per accepted message (kB)")
	headroom(p, scaleXYs(s, func(q ScalePoint) float64 { return q.PeerBytesPerMsg / 1e3 }))
	for i, ser := range []struct {
		label string
		y     func(ScalePoint) float64
		shape draw.GlyphDrawer
	}{
		{"all peer traffic", func(q ScalePoint) float64 { return q.PeerBytesPerMsg / 1e3 }, draw.CircleGlyph{}},
		{"mirroring payload: (R-1) x mean message", func(q ScalePoint) float64 { return q.MirrorPayloadBytesPerMsg / 1e3 }, draw.SquareGlyph{}},
		{"catalog pushes, anti-entropy and control", func(q ScalePoint) float64 { return q.OtherPeerBytesPerMsg / 1e3 }, draw.TriangleGlyph{}},
	} {
		if err := addLinePoints(p, ser.label, scaleXYs(s, ser.y), colorAt(i), ser.shape); err != nil {
			return err
		}
	}
	p.X.Min = 0
	p.Legend.Left = true
	return writePNG(path, chartWidth, chartHeight, p)
}
