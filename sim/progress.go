package sim

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progressAfter: runs shorter than this (wall) show no progress bar;
// progressEvery: the bar is redrawn at most this often (wall).
const (
	progressAfter = 2 * time.Second
	progressEvery = 250 * time.Millisecond
)

// progress is a progress bar in virtual time on a terminal (stderr). It is
// moved by the sampler, a driver callback that runs whether or not a bar
// is shown, so showing one changes nothing in the run; it only writes to
// its writer, never into the report.
type progress struct {
	w      io.Writer
	name   string
	total  time.Duration
	wall0  time.Duration
	shown  time.Duration // wall time of the last redraw
	bar    *progressbar.ProgressBar
	closed bool
}

func newProgress(w io.Writer, sc Scenario) *progress {
	return &progress{w: w, name: sc.Name, total: sc.Duration.D() + sc.Drain.D(), wall0: WallNow()}
}

// update shows virtual time at of the run, and the messages accepted so
// far per wall second.
func (p *progress) update(at time.Duration, s *simulation) {
	if p == nil || p.w == nil || p.closed {
		return
	}
	wall := WallSince(p.wall0)
	if p.bar == nil {
		if wall < progressAfter {
			return
		}
		p.bar = progressbar.NewOptions64(p.total.Milliseconds(),
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionThrottle(0),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	if wall-p.shown < progressEvery {
		return
	}
	p.shown = wall
	acc := s.accepted()
	p.bar.Describe(fmt.Sprintf("%s %5.1fs virtual | %d accepted | %.0f msgs/wall-s", p.name, at.Seconds(), acc, float64(acc)/wall.Seconds()))
	p.bar.Set64(min(at.Milliseconds(), p.total.Milliseconds()))
}

func (p *progress) finish() {
	if p == nil || p.bar == nil || p.closed {
		return
	}
	p.closed = true
	p.bar.Finish()
	fmt.Fprintln(p.w)
}
