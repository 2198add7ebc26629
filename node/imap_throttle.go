package node

// Password guessing over IMAP: the per-connection limit
// (imapMaxFailedLogins) alone costs a guesser nothing but a reconnect, so
// the IMAP service also counts failed logins per remote address across
// connections and answers each failure after a delay, as the POP3 server
// does (node/pop3: FailedLoginDelay, ThrottleWindow, ThrottleMaxFailures).
// Without them IMAP would be the way around POP3's throttle, since both
// check the same passwords.

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// IMAP login limits: POP3's defaults (node/pop3 DefaultConfig), so neither
// protocol is the weaker way in.
const (
	// imapFailedLoginDelay is waited before answering a failed login.
	imapFailedLoginDelay = time.Second
	// imapThrottleWindow and imapThrottleMaxFailures: an address (IPv4, or
	// an IPv6 /64) that failed that many logins in the window is refused
	// without a password check until the window ends.
	imapThrottleWindow      = 15 * time.Minute
	imapThrottleMaxFailures = 20
	// imapThrottleMaxAddrs bounds the table; when it is full of live
	// entries new addresses are not counted (fail open, never lock everyone
	// out), while the addresses already counted stay counted.
	imapThrottleMaxAddrs = 1 << 16
)

// loginThrottle counts login attempts per key in fixed windows. An attempt
// is counted when it starts (begin), before the password is checked, and
// taken back when it succeeds: attempts made in parallel on many
// connections cannot all pass the check before the first failure is
// counted. Safe for concurrent use.
type loginThrottle struct {
	mu      sync.Mutex
	window  time.Duration
	max     int           // attempts that may fail per window
	maxKeys int           // bound on the table
	delay   time.Duration // before answering a failure
	keys    map[string]loginWindow
}

type loginWindow struct {
	start    time.Time
	attempts int // failed or in progress
}

func newLoginThrottle() *loginThrottle {
	return &loginThrottle{window: imapThrottleWindow, max: imapThrottleMaxFailures, maxKeys: imapThrottleMaxAddrs,
		delay: imapFailedLoginDelay, keys: map[string]loginWindow{}}
}

// begin counts an attempt of key. It returns false, counting nothing, when
// key has used up its attempts in the current window.
func (t *loginThrottle) begin(key string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.keys[key]
	if !ok || now.Sub(w.start) >= t.window {
		if len(t.keys) >= t.maxKeys {
			for k, old := range t.keys {
				if now.Sub(old.start) >= t.window {
					delete(t.keys, k)
				}
			}
			if len(t.keys) >= t.maxKeys {
				return true // full of live entries: not counted
			}
		}
		w = loginWindow{start: now}
	}
	if w.attempts >= t.max {
		return false
	}
	w.attempts++
	t.keys[key] = w
	return true
}

// succeeded takes back the attempt begin counted for key: a login that
// worked, or one that could not be checked.
func (t *loginThrottle) succeeded(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w, ok := t.keys[key]; ok && w.attempts > 0 {
		w.attempts--
		t.keys[key] = w
	}
}

// failDelay is how long to wait before answering a failed login.
func (t *loginThrottle) failDelay() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.delay
}

// loginThrottleKey is the unit counted: the IPv4 address, or the IPv6 /64
// (one subscriber usually holds a whole /64). Addresses that are not IP
// (the simulator's) count as themselves.
func loginThrottleKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		host = a.String()
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
