package node

import (
	"time"

	"mailarray/node/loginlog"
)

// AccessLimits are the access servers' defences (issue 18): per-address
// session caps (an IPv4 address or an IPv6 /64 counts as one client, as
// node/throttle keys them), a short login timeout before authentication,
// the SMTP tarpit for unknown recipients, and whether passwords may be
// sent without TLS. Each key is a flag of `mailarray serve` too.
type AccessLimits struct {
	// POP3MaxSessionsPerIP and IMAPMaxSessionsPerIP bound the sessions
	// one client address holds at once (SMTP's is smtp-max-sessions-per-ip),
	// so one host cannot take all of pop3-max-sessions / imap-max-sessions
	// and shut everyone else out. Raise them for a big office behind one
	// NAT address. >= 1.
	POP3MaxSessionsPerIP int `yaml:"pop3-max-sessions-per-ip"`
	IMAPMaxSessionsPerIP int `yaml:"imap-max-sessions-per-ip"`
	// POP3LoginTimeout and IMAPLoginTimeout bound the time from connect to
	// a successful login, whatever the client sends meanwhile; the idle
	// timers (pop3-idle-timeout, IMAP's 30 min) apply only after it.
	// >= 1s.
	POP3LoginTimeout time.Duration `yaml:"pop3-login-timeout"`
	IMAPLoginTimeout time.Duration `yaml:"imap-login-timeout"`
	// SMTPRcptTarpitAfter: after that many unknown recipients in one SMTP
	// session, each further one is answered SMTPRcptTarpitDelay late;
	// the SMTPMaxUnknownRcpts-th gets 421 4.7.0 and the connection is
	// closed. SMTPMaxUnknownRcptsPerIP bounds the unknown recipients one
	// client address names in 15 minutes across sessions; past it the
	// next gets the delay and the 421. All >= 1 (the delay >= 0).
	SMTPRcptTarpitAfter      int           `yaml:"smtp-rcpt-tarpit-after"`
	SMTPRcptTarpitDelay      time.Duration `yaml:"smtp-rcpt-tarpit-delay"`
	SMTPMaxUnknownRcpts      int           `yaml:"smtp-max-unknown-rcpts"`
	SMTPMaxUnknownRcptsPerIP int           `yaml:"smtp-max-unknown-rcpts-per-ip"`
	// AllowCleartextAuth says whether POP3 USER/PASS and IMAP LOGIN or
	// AUTHENTICATE PLAIN are accepted on a connection that is not TLS.
	// Unset, it is false when tls-cert is set (clients must STLS or
	// STARTTLS first; POP3 CAPA then omits USER, IMAP advertises
	// LOGINDISABLED, as Dovecot's auth_allow_cleartext = no) and true on
	// a node without TLS, which then warns at start that passwords cross
	// the network in clear. Loopback connections are not exempt: a local
	// port forward or proxy (ssh -L, stunnel, a container's proxy) makes
	// remote clients look local, so the exemption would quietly reopen
	// what the setting closes; set it to true for such a setup instead.
	AllowCleartextAuth *bool `yaml:"allow-cleartext-auth"`
}

// DefaultAccessLimits returns the production defaults.
func DefaultAccessLimits() AccessLimits {
	return AccessLimits{
		POP3MaxSessionsPerIP:     50,          // a NATed office's mail clients, not one host's thousand sockets
		IMAPMaxSessionsPerIP:     50,          // an IMAP client holds a few connections per account
		POP3LoginTimeout:         time.Minute, // a client logs in within seconds
		IMAPLoginTimeout:         time.Minute,
		SMTPRcptTarpitAfter:      3,               // a typo or two is not a probe
		SMTPRcptTarpitDelay:      5 * time.Second, // a 1,000-name dictionary takes over an hour
		SMTPMaxUnknownRcpts:      10,
		SMTPMaxUnknownRcptsPerIP: 50,
	}
}

// CleartextAuthAllowed is AllowCleartextAuth resolved: false where TLS is
// configured unless allowed, true where the node has no TLS unless
// forbidden.
func (c *Config) CleartextAuthAllowed() bool {
	if c.AllowCleartextAuth != nil {
		return *c.AllowCleartextAuth
	}
	return c.TLSCert == ""
}

// validate fills zero limits (a Config built without DefaultConfig) and
// rejects nonsense.
func (a *AccessLimits) validate(c *Config, bad func(key, f string, args ...any)) {
	d := DefaultAccessLimits()
	for _, f := range []struct {
		key string
		v   *int
		def int
	}{
		{"pop3-max-sessions-per-ip", &a.POP3MaxSessionsPerIP, d.POP3MaxSessionsPerIP},
		{"imap-max-sessions-per-ip", &a.IMAPMaxSessionsPerIP, d.IMAPMaxSessionsPerIP},
		{"smtp-rcpt-tarpit-after", &a.SMTPRcptTarpitAfter, d.SMTPRcptTarpitAfter},
		{"smtp-max-unknown-rcpts", &a.SMTPMaxUnknownRcpts, d.SMTPMaxUnknownRcpts},
		{"smtp-max-unknown-rcpts-per-ip", &a.SMTPMaxUnknownRcptsPerIP, d.SMTPMaxUnknownRcptsPerIP},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 1 {
			bad(f.key, "%d must be >= 1", *f.v)
		}
	}
	for _, f := range []struct {
		key string
		v   *time.Duration
		def time.Duration
		min time.Duration
	}{
		{"pop3-login-timeout", &a.POP3LoginTimeout, d.POP3LoginTimeout, time.Second},
		{"imap-login-timeout", &a.IMAPLoginTimeout, d.IMAPLoginTimeout, time.Second},
		{"smtp-rcpt-tarpit-delay", &a.SMTPRcptTarpitDelay, d.SMTPRcptTarpitDelay, 0},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < f.min {
			bad(f.key, "%v must be >= %v", *f.v, f.min)
		}
	}
	if a.AllowCleartextAuth != nil && !*a.AllowCleartextAuth && c.TLSCert == "" && (c.POP3Addr != "" || c.IMAPAddr != "") {
		bad("allow-cleartext-auth", "false needs tls-cert: without TLS no POP3 or IMAP client could log in")
	}
}

// warnCleartext says loudly, once at start, that passwords may cross the
// network in clear: the node serves POP3 or IMAP without TLS.
func (n *Node) warnCleartext() {
	if !n.conf().CleartextAuthAllowed() || (n.conf().POP3Addr == "" && n.conf().IMAPAddr == "") {
		return
	}
	if n.conf().TLSCert == "" {
		n.log.Warn("node: INSECURE: POP3/IMAP accept passwords in cleartext: no tls-cert is configured; set tls-cert and tls-key so clients can STLS/STARTTLS (and cleartext logins are then refused)")
		return
	}
	n.log.Warn("node: INSECURE: allow-cleartext-auth is true: POP3/IMAP accept passwords before STLS/STARTTLS")
}

// recordLogin counts a login attempt of any access protocol
// (mailarray_logins_total); the server that saw it has logged it.
func (n *Node) recordLogin(ev loginlog.Event) {
	n.metrics.logins.WithLabelValues(ev.Protocol, ev.Result).Inc()
}
