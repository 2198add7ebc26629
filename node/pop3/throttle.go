package pop3

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// throttle counts failed logins per remote address in fixed windows. It is
// safe for concurrent use.
type throttle struct {
	window      time.Duration
	maxFailures int
	maxAddrs    int

	mu    sync.Mutex
	addrs map[string]throttleEntry
}

type throttleEntry struct {
	start    time.Time // start of the entry's window
	failures int
}

func newThrottle(window time.Duration, maxFailures, maxAddrs int) *throttle {
	return &throttle{window: window, maxFailures: maxFailures, maxAddrs: maxAddrs,
		addrs: make(map[string]throttleEntry)}
}

// blocked reports whether key has used up its failures for the current window.
func (t *throttle) blocked(key string, now time.Time) bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.addrs[key]
	if !ok {
		return false
	}
	if now.Sub(e.start) >= t.window {
		delete(t.addrs, key)
		return false
	}
	return e.failures >= t.maxFailures
}

// fail records a failed login from key. It reports false when the table is
// full of live entries and key could not be tracked.
func (t *throttle) fail(key string, now time.Time) bool {
	if t == nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.addrs[key]
	if ok && now.Sub(e.start) >= t.window {
		ok = false
	}
	if !ok {
		if len(t.addrs) >= t.maxAddrs {
			t.sweep(now)
			if len(t.addrs) >= t.maxAddrs {
				return false
			}
		}
		e = throttleEntry{start: now}
	}
	e.failures++
	t.addrs[key] = e
	return true
}

// sweep drops expired entries. O(entries), run only when the table is full,
// so its cost is amortised over at least the entries added since the last.
func (t *throttle) sweep(now time.Time) {
	for k, e := range t.addrs {
		if now.Sub(e.start) >= t.window {
			delete(t.addrs, k)
		}
	}
}

// throttleKey is the unit the throttle counts: the IPv4 address, or the
// IPv6 /64 (one subscriber usually holds a whole /64, so counting single
// IPv6 addresses would be trivial to evade). Addresses that are not IP
// (the simulator's) count as themselves.
func throttleKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	s := a.String()
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = s
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
