package throttle

import (
	"net"
	"sync"
)

// Conns counts the connections each client address (Key: an IPv4
// address or an IPv6 /64) holds open, and refuses one beyond max. SMTP,
// POP3 and IMAP share it so that no listener lets one address take all
// of its sessions: without it ~1,000 idle connections from one host shut
// everyone else out of a server whose only cap is global. The nil
// *Conns allows everything. Safe for concurrent use.
//
// The table holds only addresses with open connections, so its size is
// bounded by the listener's global session cap.
type Conns struct {
	mu   sync.Mutex
	max  int // SetMax
	open map[string]int
}

// NewConns returns a counter allowing max open connections per address.
func NewConns(max int) *Conns {
	if max < 1 {
		panic("throttle: invariant broken: NewConns max must be >= 1")
	}
	return &Conns{max: max, open: map[string]int{}}
}

// SetMax changes the cap (a configuration reload). Connections already
// open stay open; an address above a lowered cap gets no new one until
// it is back under it.
func (c *Conns) SetMax(max int) {
	if c == nil {
		return
	}
	if max < 1 {
		panic("throttle: invariant broken: Conns.SetMax max must be >= 1")
	}
	c.mu.Lock()
	c.max = max
	c.mu.Unlock()
}

// Acquire counts a connection from remote and returns its key, or ok
// false (nothing counted) when the address already holds max. Every
// successful Acquire must be followed by exactly one Release(key).
func (c *Conns) Acquire(remote net.Addr) (key string, ok bool) {
	key = AddrKey(remote)
	if c == nil {
		return key, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key] >= c.max {
		return key, false
	}
	c.open[key]++
	return key, true
}

// Release takes back one connection Acquire counted for key.
func (c *Conns) Release(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch n := c.open[key]; {
	case n > 1:
		c.open[key] = n - 1
	case n == 1:
		delete(c.open, key)
	default:
		panic("throttle: invariant broken: Conns.Release without Acquire for " + key)
	}
}

// Open is the number of connections key holds now.
func (c *Conns) Open(key string) int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open[key]
}
