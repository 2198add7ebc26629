package web

import (
	"crypto/rand"
	"crypto/sha256"
	"net"
	"net/netip"
	"sync"
	"time"
)

// session is one logged-in browser.
type session struct {
	mailbox  string
	created  time.Time
	lastSeen time.Time
}

// sessions maps session tokens to sessions, in memory: a node that
// restarts logs its users out, and a user is logged in on the node that
// served the login (the page keeps talking to that node). Tokens are
// stored as SHA-256 digests, so the table never holds a usable cookie.
// Safe for concurrent use.
type sessions struct {
	idle, maxAge time.Duration
	max          int

	mu   sync.Mutex
	byID map[[sha256.Size]byte]*session
}

func newSessions(idle, maxAge time.Duration, max int) *sessions {
	return &sessions{idle: idle, maxAge: maxAge, max: max, byID: map[[sha256.Size]byte]*session{}}
}

// create starts a session for mailbox and returns its token, or "" when
// the table is full of live sessions.
func (s *sessions) create(mailbox string, now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= s.max {
		s.sweepLocked(now)
		if len(s.byID) >= s.max {
			return ""
		}
	}
	token := rand.Text() // 26 base32 characters, 130 random bits
	s.byID[sha256.Sum256([]byte(token))] = &session{mailbox: mailbox, created: now, lastSeen: now}
	return token
}

// get returns the live session of token and extends its idle time.
func (s *sessions) get(token string, now time.Time) (session, bool) {
	if token == "" {
		return session{}, false
	}
	k := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[k]
	if !ok {
		return session{}, false
	}
	if s.expired(ss, now) {
		delete(s.byID, k)
		return session{}, false
	}
	ss.lastSeen = now
	return *ss, true
}

func (s *sessions) remove(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, sha256.Sum256([]byte(token)))
}

func (s *sessions) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.lastSeen) >= s.idle || now.Sub(ss.created) >= s.maxAge
}

// sweepLocked drops expired sessions: O(sessions), run only when the
// table is full.
func (s *sessions) sweepLocked(now time.Time) {
	for k, ss := range s.byID {
		if s.expired(ss, now) {
			delete(s.byID, k)
		}
	}
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// throttle counts login attempts per key (a client address, a mailbox) in
// fixed windows. An attempt counts from its start (begin), before the
// password is checked, and is taken back if it succeeds (succeeded): logins
// sent in parallel cannot all pass the check before the first failure is
// counted. Safe for concurrent use.
type throttle struct {
	window time.Duration
	max    int // failed (or in progress) attempts per window
	keys   int // bound on keys tracked

	mu     sync.Mutex
	counts map[string]window
}

type window struct {
	start    time.Time
	attempts int
}

func newThrottle(win time.Duration, max, keys int) *throttle {
	return &throttle{window: win, max: max, keys: keys, counts: map[string]window{}}
}

// begin counts an attempt by every key, or by none when one of them has
// used up its attempts: then it returns false and how long until that
// key's window ends.
func (t *throttle) begin(keys []string, now time.Time) (bool, time.Duration) {
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
				// Full of live keys (an attack from many addresses): the
				// keys already counted stay counted, new ones are not
				// (failing open, never locking everyone out); the login
				// delay still applies.
				continue
			}
			w = window{start: now}
		}
		w.attempts++
		t.counts[k] = w
	}
	return true, 0
}

// succeeded takes back the attempt begin counted for keys.
func (t *throttle) succeeded(keys []string) {
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
func (t *throttle) roomLocked(now time.Time) bool {
	if len(t.counts) < t.keys {
		return true
	}
	for k, w := range t.counts {
		if now.Sub(w.start) >= t.window {
			delete(t.counts, k)
		}
	}
	return len(t.counts) < t.keys
}

// addressKey is the unit a client address is counted by: the IPv4
// address, or the IPv6 /64 (one subscriber usually holds a whole /64, so
// counting single IPv6 addresses would be trivial to evade).
func addressKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
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
