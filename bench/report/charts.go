package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart geometry. The PNGs are drawn at chartDPI so that text stays
// legible when GitHub scales them to the page width.
const (
	chartDPI    = 110
	chartWidth  = 8 * vg.Inch
	chartHeight = 4.5 * vg.Inch
	// chartTallHeight is a two-panel chart (throughput above latency).
	chartTallHeight = 6.5 * vg.Inch
	// logAxisSpread: a latency axis whose data spans more than this ratio
	// (max over min) is drawn on a log scale.
	logAxisSpread = 8
)

// Okabe-Ito colours: distinguishable by colour-blind readers, in the
// order series take them.
var palette = []color.Color{
	color.RGBA{0x00, 0x72, 0xB2, 0xff}, // blue
	color.RGBA{0xE6, 0x9F, 0x00, 0xff}, // orange
	color.RGBA{0x00, 0x9E, 0x73, 0xff}, // green
	color.RGBA{0xD5, 0x5E, 0x00, 0xff}, // vermillion
	color.RGBA{0xCC, 0x79, 0xA7, 0xff}, // purple
	color.RGBA{0x56, 0xB4, 0xE9, 0xff}, // sky blue
	color.RGBA{0x99, 0x99, 0x99, 0xff}, // grey
	color.RGBA{0x00, 0x00, 0x00, 0xff}, // black
	color.RGBA{0xF0, 0xE4, 0x42, 0xff}, // yellow
}

var (
	grey      = color.RGBA{0x88, 0x88, 0x88, 0xff}
	dashes    = []vg.Length{vg.Points(4), vg.Points(3)}
	lineWidth = vg.Points(1.5)
)

func colorAt(i int) color.Color { return palette[i%len(palette)] }

// newPlot returns a plot with a title, axis labels and a grid.
func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	if title != "" {
		// Below the title, inside the data area.
		p.Legend.YOffs = -vg.Points(14)
	}
	p.Legend.XOffs = vg.Points(6)
	p.X.Tick.Marker = cleanTicks{}
	p.Y.Tick.Marker = cleanTicks{}
	return p
}

// cleanTicks are the default ticks labelled without trailing zeros
// ("500", not "500.00"), with thousands separators.
type cleanTicks struct{}

func (cleanTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = cleanTicks{}.label(ts[i].Value)
		}
	}
	return ts
}

func (cleanTicks) label(v float64) string {
	if math.Abs(v) >= 10000 && v == math.Trunc(v) {
		return num(int64(v))
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// addLine adds a labelled line.
func addLine(p *plot.Plot, label string, xys plotter.XYs, c color.Color, dashed bool) error {
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("report: chart %q: %w", label, err)
	}
	l.Color = c
	l.Width = lineWidth
	if dashed {
		l.Dashes = dashes
	}
	p.Add(l)
	if label != "" {
		p.Legend.Add(label, l)
	}
	return nil
}

// addLinePoints adds a labelled line with a marker at each point.
func addLinePoints(p *plot.Plot, label string, xys plotter.XYs, c color.Color, shape draw.GlyphDrawer) error {
	if len(xys) == 0 {
		return nil
	}
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("report: chart %q: %w", label, err)
	}
	l.Color, l.Width = c, lineWidth
	s.Color, s.Shape, s.Radius = c, shape, vg.Points(3)
	p.Add(l, s)
	p.Legend.Add(label, l, s)
	return nil
}

// vline draws a dashed vertical marker from y0 to y1 at x, with a label
// at its top.
func vline(p *plot.Plot, x, y0, y1 float64, label string) error {
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: y0}, {X: x, Y: y1}})
	if err != nil {
		return err
	}
	l.Color, l.Width, l.Dashes = grey, vg.Points(1), dashes
	p.Add(l)
	if label != "" {
		lb, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: x, Y: y1}}, Labels: []string{label}})
		if err != nil {
			return err
		}
		for i := range lb.TextStyle {
			lb.TextStyle[i].Font.Size = vg.Points(9)
			lb.TextStyle[i].Color = grey
		}
		lb.Offset = vg.Point{X: vg.Points(2), Y: vg.Points(-10)}
		p.Add(lb)
	}
	return nil
}

// hline draws a dashed horizontal marker, in the legend as label.
func hline(p *plot.Plot, y, x0, x1 float64, label string, c color.Color) error {
	return addLine(p, label, plotter.XYs{{X: x0, Y: y}, {X: x1, Y: y}}, c, true)
}

// logX puts the x axis on a log scale.
func logX(p *plot.Plot) {
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = logTicks{}
}

// logY puts the y axis on a log scale.
func logY(p *plot.Plot) {
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks{}
}

// logTicks mark every 1..9 x 10^k and label 1, 2 and 5 x 10^k, so a log
// axis has a label every few centimetres.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= 0 {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		d := math.Pow(10, e)
		for m := 1.0; m < 10; m++ {
			v := m * d
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = cleanTicks{}.label(v)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// writePNG draws plots stacked vertically, their axes aligned, into a PNG
// file of the given size. The file is written only when its bytes change,
// so regenerating unchanged reports leaves the tree clean.
func writePNG(path string, w, h vg.Length, plots ...*plot.Plot) error {
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(chartDPI), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	rows := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		rows[i] = []*plot.Plot{p}
	}
	t := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8), PadY: vg.Points(12)}
	cs := plot.Align(rows, t, dc)
	for i, p := range plots {
		p.Draw(cs[i][0])
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return fmt.Errorf("report: chart %s: %w", path, err)
	}
	return writeIfChanged(path, buf.Bytes())
}

// writeIfChanged writes b to path unless the file already holds b.
func writeIfChanged(path string, b []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// timeUnit names the x axis of time series: virtual or wall seconds.
func timeUnit(r *Report) string {
	if r.Real() {
		return "time since load start (wall s)"
	}
	return "time since load start (virtual s)"
}

// faultLabel is a fault's short name on a chart.
func faultLabel(f Fault) string {
	who := f.Node
	if who == "" {
		who = strings.ReplaceAll(f.Nodes, "|", " from ")
	}
	if who == "" {
		return f.Action
	}
	return f.Action + " " + who
}

// throughputChart draws messages per second (offered, accepted, failed or
// rejected) over the run, and below it the p99 latency of each second,
// with the faults marked.
func throughputChart(r *Report, path string) error {
	top := newPlot(fmt.Sprintf("Throughput over time: %s", r.Scenario), "", "messages per second")
	bot := newPlot("", timeUnit(r), "p99 latency of the second (ms)")
	var off, acc, bad, p99 plotter.XYs
	maxY, maxP := 1.0, 1.0
	for _, s := range r.Timeline {
		x := float64(s.TS) + 0.5
		off = append(off, plotter.XY{X: x, Y: float64(s.Offered)})
		acc = append(acc, plotter.XY{X: x, Y: float64(s.Accepted)})
		bad = append(bad, plotter.XY{X: x, Y: float64(s.Failed + s.Rejected)})
		if s.Accepted > 0 {
			p99 = append(p99, plotter.XY{X: x, Y: s.P99Ms})
			maxP = max(maxP, s.P99Ms)
		}
		maxY = max(maxY, float64(s.Offered), float64(s.Accepted), float64(s.Failed+s.Rejected))
	}
	if err := addLine(top, "offered (arrivals)", off, grey, true); err != nil {
		return err
	}
	if err := addLine(top, "accepted (250)", acc, colorAt(0), false); err != nil {
		return err
	}
	if err := addLine(top, "failed or rejected", bad, colorAt(3), false); err != nil {
		return err
	}
	if err := addLine(bot, "p99 of messages accepted in the second", p99, colorAt(1), false); err != nil {
		return err
	}
	if r.TargetP99Ms > 0 {
		maxP = max(maxP, r.TargetP99Ms)
		if err := hline(bot, r.TargetP99Ms, 0, max(r.VirtualSeconds, float64(len(r.Timeline))), "target p99 "+msf(r.TargetP99Ms), colorAt(3)); err != nil {
			return err
		}
	}
	if load := r.LoadSeconds; load > 0 {
		if err := vline(top, load, 0, maxY*1.3, "load stops"); err != nil {
			return err
		}
	}
	for _, f := range r.Faults {
		if err := vline(top, f.AtS, 0, maxY*1.3, faultLabel(f)); err != nil {
			return err
		}
		if err := vline(bot, f.AtS, 0, maxP*1.3, ""); err != nil {
			return err
		}
	}
	end := max(r.VirtualSeconds, float64(len(r.Timeline)))
	top.X.Min, top.X.Max = 0, end
	bot.X.Min, bot.X.Max = 0, end
	top.Y.Min, top.Y.Max = 0, maxY*1.35
	bot.Y.Min, bot.Y.Max = 0, maxP*1.35
	top.Legend.Left = true
	bot.Legend.Left = true
	return writePNG(path, chartWidth, chartTallHeight, top, bot)
}

// nodesChart draws each node's share of the work and how busy it was.
func nodesChart(r *Report, path string) error {
	p := newPlot(fmt.Sprintf("Per-node load: %s", r.Scenario), "node", "fraction")
	var names []string
	var smtp, copies, bytesS, busy plotter.Values
	var smtpTotal int
	for _, n := range r.Nodes {
		smtpTotal += n.SMTPAccepted
	}
	for i := range r.Nodes {
		n := &r.Nodes[i]
		label := n.Name
		if n.State != "alive" {
			label += " (" + n.State + ")"
		}
		names = append(names, label)
		s := 0.0
		if smtpTotal > 0 {
			s = float64(n.SMTPAccepted) / float64(smtpTotal)
		}
		smtp = append(smtp, s)
		copies = append(copies, n.ShareCopies)
		bytesS = append(bytesS, n.ShareBytes)
		b, _ := Busy(r, n)
		busy = append(busy, b)
	}
	type series struct {
		label string
		v     plotter.Values
	}
	all := []series{
		{"share of SMTP sessions (250s)", smtp},
		{"share of live copies", copies},
		{"share of live bytes", bytesS},
		{"busy during the load (CPU or disk bandwidth, the larger)", busy},
	}
	w := vg.Points(float64(min(80/len(all), 16)))
	if len(r.Nodes) > 8 {
		w = vg.Points(float64(min(400/(len(all)*len(r.Nodes)), 16)))
	}
	ymax := 0.0
	for i, s := range all {
		b, err := plotter.NewBarChart(s.v, w)
		if err != nil {
			return fmt.Errorf("report: nodes chart: %w", err)
		}
		b.Color = colorAt(i)
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(i)-float64(len(all)-1)/2)
		p.Add(b)
		p.Legend.Add(s.label, b)
		for _, v := range s.v {
			ymax = max(ymax, v)
		}
	}
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = 0, max(ymax*1.45, 0.1)
	p.Legend.Left = true
	return writePNG(path, chartWidth, chartHeight, p)
}

// latencyChart draws the CDF of accepted messages' latency.
func latencyChart(r *Report, path string) error {
	p := newPlot(fmt.Sprintf("Latency CDF: %s (arrival to 250, accepted messages)", r.Scenario), "latency (ms)", "fraction of accepted messages")
	var xys plotter.XYs
	lo, hi := math.Inf(1), 0.0
	for _, c := range r.LatencyCDF {
		if c.Ms <= 0 {
			continue
		}
		xys = append(xys, plotter.XY{X: c.Ms, Y: c.P})
		lo, hi = min(lo, c.Ms), max(hi, c.Ms)
	}
	if len(xys) == 0 {
		p.Title.Text += ": no accepted messages"
		return writePNG(path, chartWidth, chartHeight, p)
	}
	if err := addLine(p, "latency CDF", xys, colorAt(0), false); err != nil {
		return err
	}
	if r.TargetP99Ms > 0 {
		hi = max(hi, r.TargetP99Ms)
		if err := addLine(p, "target p99 "+msf(r.TargetP99Ms), plotter.XYs{{X: r.TargetP99Ms, Y: 0}, {X: r.TargetP99Ms, Y: 1}}, colorAt(3), true); err != nil {
			return err
		}
	}
	for _, q := range []struct {
		p     float64
		label string
	}{{0.5, "p50 " + msf(r.Latency.P50)}, {0.99, "p99 " + msf(r.Latency.P99)}} {
		if err := addLine(p, "", plotter.XYs{{X: lo, Y: q.p}, {X: hi, Y: q.p}}, grey, true); err != nil {
			return err
		}
		lb, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: lo, Y: q.p}}, Labels: []string{q.label}})
		if err != nil {
			return err
		}
		lb.Offset = vg.Point{X: vg.Points(2), Y: vg.Points(-11)}
		for i := range lb.TextStyle {
			lb.TextStyle[i].Font.Size = vg.Points(9)
		}
		p.Add(lb)
	}
	if hi/lo > logAxisSpread {
		logX(p)
		p.X.Label.Text = "latency (ms, log scale)"
	}
	p.Y.Min, p.Y.Max = 0, 1.02
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.YOffs = vg.Points(20)
	return writePNG(path, chartWidth, chartHeight, p)
}

// ftoa formats a float for a tick label.
func ftoa(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
