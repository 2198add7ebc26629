package web

import (
	"crypto/rand"
	"crypto/sha256"
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
