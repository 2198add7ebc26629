package imap

// Password guessing: the per-connection limit (maxFailedLogins) alone
// costs a guesser nothing but a reconnect, so the server also counts
// failed logins per remote address across connections and answers each
// failure after a delay, as the POP3 server does (node/pop3:
// FailedLoginDelay, ThrottleWindow, ThrottleMaxFailures). Without them
// IMAP would be the way around POP3's throttle, since both check the same
// passwords. The limits are in Config; DefaultConfig takes POP3's.

import (
	"time"

	"mailarray/node/throttle"
)

// newLoginThrottle is the per-address throttle cfg describes.
func newLoginThrottle(cfg Config) *throttle.Throttle {
	return throttle.New(cfg.ThrottleWindow, cfg.ThrottleMaxFailures, cfg.ThrottleMaxAddrs)
}

// loginLimits returns the login throttle and the delay before answering a
// failed login.
func (s *Server) loginLimits() (*throttle.Throttle, time.Duration) {
	return s.logins, s.cfg.FailedLoginDelay
}
