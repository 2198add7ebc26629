package catalog

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Option configures Open.
type Option func(*Catalog)

// WithWall makes the replica's hybrid logical clock follow now instead of
// time.Now: the node's wall clock (env.Env.Wall), which the simulator can
// skew and make drift. Versions are compared across nodes (the higher
// wins), so a node whose clock runs ahead stamps versions ahead of the
// others', and one behind is pulled forward by every version it sees.
func WithWall(now func() time.Time) Option {
	return func(c *Catalog) { c.wall = now }
}

// wallNanos is the wall clock's reading in unix nanoseconds.
func (c *Catalog) wallNanos() uint64 {
	if c.wall == nil {
		return uint64(time.Now().UnixNano())
	}
	return uint64(c.wall().UnixNano())
}

// MaxAhead bounds how far ahead of this replica's wall clock an entry's
// version may be. Versions are hybrid-clock stamps that every replica
// adopts (the highest seen wins), so one stamp near 2^64, from a hostile
// or broken peer, would push every clock of the array to its end and
// overflow it. A legitimately skewed node is off by seconds, not an hour;
// one further ahead than this has its entries refused (logged and counted,
// FutureRefused) until its clock is fixed: its writes fail their quorum
// rather than drag the array's clocks along.
const MaxAhead = time.Hour

// ErrFutureVersion is returned by CheckVersion for an entry whose version
// is more than MaxAhead ahead of this replica's wall clock.
var ErrFutureVersion = errors.New("catalog: entry version too far ahead of this node's clock")

// CheckVersion refuses an entry from a peer whose version is more than
// MaxAhead ahead of the wall clock (counted in FutureRefused). Apply
// checks its entries itself; callers that install a peer's entry another
// way (a copy PUT with its pending entry) call it first.
func (c *Catalog) CheckVersion(e *Entry) error {
	limit := c.wallNanos() + uint64(MaxAhead)
	if e.Version <= limit {
		return nil
	}
	c.futureRefused.Add(1)
	return fmt.Errorf("%w: %s version %d is %s ahead (limit %s)", ErrFutureVersion, e.ID, e.Version, aheadBy(e.Version, limit-uint64(MaxAhead)), MaxAhead)
}

// FutureRefused is how many entries CheckVersion and Apply refused for a
// version too far ahead (for metrics).
func (c *Catalog) FutureRefused() int64 { return c.futureRefused.Load() }

// dropFuture returns entries without those too far ahead, logging them
// (one line per batch: a bad peer's entries come back every anti-entropy
// round).
func (c *Catalog) dropFuture(entries []Entry) []Entry {
	now := c.wallNanos()
	limit := now + uint64(MaxAhead)
	var kept []Entry
	refused := 0
	for i := range entries {
		if entries[i].Version <= limit {
			if refused > 0 {
				kept = append(kept, entries[i])
			}
			continue
		}
		if refused == 0 {
			kept = append(kept, entries[:i]...)
			c.log.Warn("catalog: refused entries stamped too far in the future; is a peer's clock wrong?",
				"id", entries[i].ID, "origin", entries[i].Origin, "ahead", aheadBy(entries[i].Version, now), "limit", MaxAhead.String())
		}
		refused++
	}
	if refused == 0 {
		return entries
	}
	c.futureRefused.Add(int64(refused))
	if refused > 1 {
		c.log.Warn("catalog: entries refused in this batch for versions too far ahead", "count", refused)
	}
	return kept
}

// observeLocked moves the hybrid clock up to a version seen, but never
// past MaxAhead of the wall clock: entries that reached the store some
// other way (an old release, a copy PUT) cannot run the clock to its end.
func (c *Catalog) observeLocked(v uint64) {
	if v > c.wallNanos()+uint64(MaxAhead) {
		return
	}
	c.clock = max(c.clock, v)
}

func aheadBy(v, now uint64) string {
	if v-now > uint64(math.MaxInt64) {
		return "more than 292 years"
	}
	return time.Duration(v - now).String()
}
