package node

// Password guessing over IMAP: the per-connection limit
// (imapMaxFailedLogins) alone costs a guesser nothing but a reconnect, so
// the IMAP service also counts failed logins per remote address across
// connections and answers each failure after a delay, as the POP3 server
// does (node/pop3: FailedLoginDelay, ThrottleWindow, ThrottleMaxFailures).
// Without them IMAP would be the way around POP3's throttle, since both
// check the same passwords.

import (
	"time"

	"mailarray/node/throttle"
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

// newIMAPLoginThrottle is the per-address throttle with max attempts per
// window.
func newIMAPLoginThrottle(max int) *throttle.Throttle {
	return throttle.New(imapThrottleWindow, max, imapThrottleMaxAddrs)
}

// loginLimits returns the login throttle and the delay before answering a
// failed login.
func (svc *imapService) loginLimits() (*throttle.Throttle, time.Duration) {
	svc.loginMu.Lock()
	defer svc.loginMu.Unlock()
	return svc.logins, svc.loginDelay
}
