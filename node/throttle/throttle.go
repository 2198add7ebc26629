// Package throttle limits password guessing: it counts login attempts per
// key (a client address, a mailbox) in fixed windows, for POP3, IMAP and
// webmail alike, so that no access path is the weaker way in.
//
// An attempt is counted when it starts (Begin), before the password is
// checked, and taken back when it succeeds (Succeeded): attempts sent in
// parallel on many connections cannot all pass the check before the first
// failure is counted, as they could if only failures were recorded.
package throttle

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Throttle counts attempts per key. The zero of *Throttle (nil) counts
// nothing and allows everything: a disabled throttle. Safe for concurrent
// use.
type Throttle struct {
	window  time.Duration
	maxKeys int // bound on the keys tracked

	mu     sync.Mutex
	max    int // failed (or in progress) attempts per key and window; SetMax
	counts map[string]window
}

type window struct {
	start    time.Time
	attempts int
}

// New returns a throttle allowing max attempts per key in each window,
// tracking at most maxKeys keys. When the table is full of live keys, new
// keys are not counted (failing open: an attack from many addresses must
// not lock everyone out) while the keys already counted stay counted.
func New(win time.Duration, max, maxKeys int) *Throttle {
	return &Throttle{window: win, max: max, maxKeys: maxKeys, counts: map[string]window{}}
}

// SetMax changes the attempts allowed per key and window (a
// configuration reload); attempts already counted stay counted.
func (t *Throttle) SetMax(max int) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.max = max
	t.mu.Unlock()
}

// Begin counts an attempt by every key, or by none when one of them has
// used up its attempts: then it returns false and how long until that
// key's window ends.
func (t *Throttle) Begin(now time.Time, keys ...string) (bool, time.Duration) {
	if t == nil {
		return true, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if w, ok := t.counts[k]; ok && now.Sub(w.start) < t.window && w.attempts >= t.max {
			return false, t.window - now.Sub(w.start)
		}
	}
	for _, k := range keys {
		w, ok := t.counts[k]
		if !ok || now.Sub(w.start) >= t.window {
			if !t.roomLocked(now) {
				continue
			}
			w = window{start: now}
		}
		w.attempts++
		t.counts[k] = w
	}
	return true, 0
}

// Succeeded takes back the attempt Begin counted for keys: a login that
// worked, or one that could not be checked.
func (t *Throttle) Succeeded(keys ...string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if w, ok := t.counts[k]; ok && w.attempts > 0 {
			w.attempts--
			t.counts[k] = w
		}
	}
}

// roomLocked reports whether a key may be added, dropping expired ones
// when the table is full (O(keys), amortised over the keys added since).
func (t *Throttle) roomLocked(now time.Time) bool {
	if len(t.counts) < t.maxKeys {
		return true
	}
	for k, w := range t.counts {
		if now.Sub(w.start) >= t.window {
			delete(t.counts, k)
		}
	}
	return len(t.counts) < t.maxKeys
}

// Key is the unit a client address is counted by: the IPv4 address, or
// the IPv6 /64 (one subscriber usually holds a whole /64, so counting
// single IPv6 addresses would be trivial to evade). remote is host:port or
// a bare host; an address that is not IP (the simulator's) counts as
// itself.
func Key(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
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

// AddrKey is Key of a connection's remote address ("" for none).
func AddrKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	return Key(a.String())
}
