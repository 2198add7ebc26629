package calibrate

import (
	"errors"
	"math"
	"slices"
)

// Point is one measurement: Y observed at X (CPU seconds per message at a
// message size in KiB; seconds per sync at a write size in bytes).
type Point struct{ X, Y float64 }

// Line is Y = Intercept + Slope*X, with R2 the share of Y's variance it
// explains (1: every point on the line).
type Line struct {
	Intercept, Slope, R2 float64
}

// ErrFewPoints is returned by Fit when the points do not determine a line:
// fewer than two distinct X.
var ErrFewPoints = errors.New("calibrate: a fit needs points at two or more distinct x")

// Fit is the ordinary least-squares line through pts. The cost model is
// linear in the size (cpu_per_msg + size/KiB * cpu_per_kib; disk_fsync +
// bytes/disk_bytes_per_sec): the intercept and slope are its parameters,
// and R2 says how well the linear model holds here.
func Fit(pts []Point) (Line, error) {
	n := float64(len(pts))
	var sx, sy float64
	for _, p := range pts {
		sx += p.X
		sy += p.Y
	}
	mx, my := sx/n, sy/n
	var sxx, sxy, syy float64
	for _, p := range pts {
		dx, dy := p.X-mx, p.Y-my
		sxx += dx * dx
		sxy += dx * dy
		syy += dy * dy
	}
	// Relative to the scale of X, so that sizes in bytes and in KiB are
	// judged alike.
	if len(pts) < 2 || sxx <= 1e-12*(mx*mx+1)*n {
		return Line{}, ErrFewPoints
	}
	l := Line{Slope: sxy / sxx}
	l.Intercept = my - l.Slope*mx
	l.R2 = 1
	if syy > 0 {
		var sse float64
		for _, p := range pts {
			r := p.Y - (l.Intercept + l.Slope*p.X)
			sse += r * r
		}
		l.R2 = 1 - sse/syy
	}
	return l, nil
}

// Summary is a figure over repeats: the median and the range.
type Summary struct {
	Median, Min, Max float64
}

// Spread is the range as a fraction of the median (0 when the median is).
func (s Summary) Spread() float64 {
	if s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / math.Abs(s.Median)
}

// Summarize is the median, smallest and largest of vals; zero for none.
// The median, not the mean: one repeat disturbed by the machine's other
// work should not move the figure.
func Summarize(vals []float64) Summary {
	if len(vals) == 0 {
		return Summary{}
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	return Summary{Median: Percentile(s, 0.5), Min: s[0], Max: s[len(s)-1]}
}

// Percentile is the q-quantile (0..1) of sorted values, interpolated
// linearly between the closest ranks; 0 for none.
func Percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (pos-float64(lo))*(sorted[hi]-sorted[lo])
}
