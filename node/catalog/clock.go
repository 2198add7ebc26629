package catalog

import "time"

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
