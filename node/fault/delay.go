package fault

import (
	"fmt"
	"strings"
	"time"
)

// Delays is a fault hook (env.FaultHook) that fails nothing and makes the
// steps at its points wait: a real process's emulated slow hardware. The
// truth run (make truth) gives one node `--test-fault store.sync=8ms`, so
// that every group commit of that node waits 8 ms before its real sync,
// as a slower disk would, on a host that has one disk for every node.
//
// It is data, parsed from the command line (ParseDelay), never compiled
// in: a node without --test-fault has no hook at all.
type Delays map[Point]time.Duration

// Fault waits the point's delay, if any, and lets the step go on.
func (d Delays) Fault(p Point) error {
	if w := d[p]; w > 0 {
		time.Sleep(w)
	}
	return nil
}

// Limits of a delay: beyond a second a node would miss its peers'
// timeouts, which is no longer a slow disk but a broken one.
const maxDelay = time.Second

// ParseDelay reads "point=duration" (store.sync=8ms) into d.
func (d Delays) ParseDelay(s string) error {
	name, dur, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("fault: %q is not point=duration", s)
	}
	p := Point(strings.TrimSpace(name))
	known := false
	for _, q := range Points() {
		known = known || q == p
	}
	if !known {
		return fmt.Errorf("fault: %q is not a fault point (%v)", p, Points())
	}
	w, err := time.ParseDuration(strings.TrimSpace(dur))
	if err != nil {
		return fmt.Errorf("fault: %s: %w", p, err)
	}
	if w <= 0 || w > maxDelay {
		return fmt.Errorf("fault: %s: delay %v must be in (0, %v]", p, w, maxDelay)
	}
	d[p] = w
	return nil
}
