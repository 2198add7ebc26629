package pop3

// The AUTHORIZATION state (RFC 1939 §4): USER and PASS, which load the
// maildrop and enter TRANSACTION, and STLS (RFC 2595 §4). dispatch
// (session.go) decides which state's commands may run.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"mailarray/node/loginlog"
)

// authAllowed says whether USER/PASS may be used on this connection.
func (s *session) authAllowed() bool {
	return s.secure || !s.cfg.RequireTLS
}

// cmdUser records the user name (RFC 1939 §7). The answer is always +OK so
// that USER does not reveal which mailboxes exist.
func (s *session) cmdUser(args []string) bool {
	if len(args) != 1 {
		return s.badCommand("syntax: USER name")
	}
	if !s.authAllowed() {
		s.refuseCleartext(args[0])
		return false
	}
	s.user = args[0]
	s.ok("send PASS")
	return false
}

// refuseCleartext answers USER or PASS sent before STLS where RequireTLS
// is set. [AUTH] (RFC 3206 §5) as Dovecot answers it: the client must
// change how it authenticates (use STLS, or POP3S), not retry as is.
func (s *session) refuseCleartext(user string) {
	s.recordLogin(user, loginlog.Refused, "cleartext authentication disallowed without TLS")
	s.errLine("[AUTH] plaintext authentication disallowed without TLS; use STLS")
}

// recordLogin logs a login attempt and tells Config.Logins.
func (s *session) recordLogin(user, result, reason string) {
	loginlog.Record(s.srv.log, s.cfg.Logins, loginlog.Event{Protocol: "pop3", Remote: loginlog.Remote(s.remote),
		Mailbox: user, Result: result, Reason: reason})
}

// cmdPass authenticates and locks the maildrop (RFC 1939 §7). Response codes:
// [AUTH] for bad credentials (RFC 3206 §5), [IN-USE] for a held lock
// (RFC 2449 §8.1.2), [SYS/TEMP] for backend failures and throttling
// (RFC 3206 §4).
func (s *session) cmdPass(args []string) bool {
	if len(args) != 1 {
		return s.badCommand("syntax: PASS password")
	}
	if !s.authAllowed() {
		s.refuseCleartext(s.user)
		s.user = ""
		return false
	}
	if s.user == "" {
		return s.badCommand("USER first")
	}
	user, pass := s.user, args[0]
	s.user = ""

	// Throttled: [SYS/TEMP], not [AUTH], since clients take [AUTH] to mean
	// a wrong password and may drop the saved one; the refusal is temporary.
	// The attempt counts from here, before the password is checked, so
	// guesses sent in parallel on many connections are all counted; a
	// login that works (or cannot be checked) gives it back.
	if ok, _ := s.srv.throttle.Begin(time.Now(), s.throttleKey); !ok {
		s.recordLogin(user, loginlog.Throttled, "too many failed logins from "+s.throttleKey)
		return s.failedLogin("[SYS/TEMP] too many failed logins from your address, try again later")
	}

	ctx, cancel := context.WithTimeout(s.srv.ctx, s.cfg.BackendTimeout)
	defer cancel()
	drop, err := s.srv.backend.Login(ctx, user, pass, s.remote)
	if err == nil && drop == nil {
		err = errors.New("pop3: backend returned no maildrop")
	}
	switch {
	case errors.Is(err, ErrAuth):
		s.recordLogin(user, loginlog.Failure, "invalid credentials")
		return s.failedLogin("[AUTH] invalid user name or password")
	case errors.Is(err, ErrInUse):
		s.srv.throttle.Succeeded(s.throttleKey) // the password was right
		s.recordLogin(user, loginlog.Error, "maildrop in use")
		s.errLine("[IN-USE] maildrop already locked by another session")
		return false
	case err != nil:
		s.srv.throttle.Succeeded(s.throttleKey) // not a guess: nothing was checked
		s.recordLogin(user, loginlog.Error, err.Error())
		s.errLine("[SYS/TEMP] temporary failure, try again later")
		return false
	}

	s.srv.throttle.Succeeded(s.throttleKey)
	s.recordLogin(user, loginlog.Success, "")
	list, err := drop.List(ctx)
	if err == nil {
		err = s.load(user, list)
	}
	if err != nil {
		s.log.Error("pop3: list maildrop", "user", user, "err", err)
		if cerr := drop.Close(); cerr != nil {
			s.log.Error("pop3: close maildrop", "user", user, "err", cerr)
		}
		s.errLine("[SYS/TEMP] cannot open maildrop, try again later")
		return false
	}
	s.drop = drop
	s.authUser = user
	s.state = stateTransaction
	s.log.Info("pop3: maildrop opened", "user", user, "messages", s.liveCount, "octets", s.liveSize)
	s.okCount("maildrop has ", s.liveCount, s.liveSize)
	return false
}

// failedLogin counts a failed PASS, waits FailedLoginDelay and answers text.
// After MaxFailedLogins the session ends.
func (s *session) failedLogin(text string) bool {
	s.failedLogins++
	if !s.srv.sleep(s.cfg.FailedLoginDelay) {
		s.reason = "server closed"
		return true
	}
	if s.failedLogins >= s.cfg.MaxFailedLogins {
		s.reason = "too many failed logins"
		s.errLine(text + "; too many failures, closing connection")
		return true
	}
	s.errLine(text)
	return false
}

// load checks the backend's listing and makes it the session's.
func (s *session) load(user string, list []MessageInfo) error {
	if len(list) > s.cfg.MaxMessages {
		s.log.Warn("pop3: maildrop larger than MaxMessages; showing the oldest",
			"user", user, "messages", len(list), "max", s.cfg.MaxMessages)
		list = list[:s.cfg.MaxMessages]
	}
	seen := make(map[string]struct{}, len(list))
	msgs := make([]message, len(list))
	var total int64
	for i, m := range list {
		if !validUID(m.ID) {
			return fmt.Errorf("pop3: message %d: invalid id %q", i+1, m.ID)
		}
		if _, dup := seen[m.ID]; dup {
			return fmt.Errorf("pop3: message %d: duplicate id %q", i+1, m.ID)
		}
		if m.Size < 0 {
			return fmt.Errorf("pop3: message %d: negative size %d", i+1, m.Size)
		}
		seen[m.ID] = struct{}{}
		msgs[i] = message{id: m.ID, size: m.Size}
		total += m.Size
	}
	s.msgs, s.liveCount, s.liveSize = msgs, len(msgs), total
	return nil
}

// validUID applies RFC 1939 §7: 1 to 70 characters in 0x21-0x7E.
func validUID(id string) bool {
	if len(id) == 0 || len(id) > maxUIDLBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// cmdStls upgrades the connection to TLS (RFC 2595 §4).
func (s *session) cmdStls(args []string) bool {
	if len(args) != 0 {
		return s.badCommand("syntax: STLS")
	}
	if s.secure {
		s.errLine("command not permitted when TLS active")
		return false
	}
	if s.cfg.TLS == nil {
		return s.badCommand("unknown command")
	}
	cfg := s.cfg.TLS()
	if cfg == nil {
		s.log.Error("pop3: STLS: TLS configuration unavailable")
		s.errLine("[SYS/TEMP] TLS not available, try again later")
		return false
	}
	s.ok("begin TLS negotiation")
	if err := s.bw.Flush(); err != nil {
		s.reason = "write: " + err.Error()
		return true
	}
	// Anything the client pipelined after STLS arrived in plaintext and
	// could have been injected by a man in the middle (CVE-2011-0411):
	// discard it. Resetting the reader below drops it.
	if n := s.br.Buffered(); n > 0 {
		s.log.Warn("pop3: discarding plaintext pipelined after STLS", "bytes", n)
	}
	tc := tls.Server(s.raw, cfg)
	if err := s.handshake(tc); err != nil {
		s.reason = "tls handshake: " + err.Error()
		return true
	}
	s.conn = tc
	s.dw.conn = tc
	s.br.Reset(tc)
	s.secure = true
	s.user = "" // RFC 2595 §4: the client starts over, CAPA included
	return false
}

// handshake runs a TLS handshake bounded by WriteTimeout and Server.Close.
func (s *session) handshake(tc *tls.Conn) error {
	_ = tc.SetDeadline(time.Now().Add(s.cfg.WriteTimeout))
	ctx, cancel := context.WithTimeout(s.srv.ctx, s.cfg.WriteTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.log.Info("pop3: tls handshake failed", "err", err)
		return err
	}
	_ = tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	s.log.Debug("pop3: tls established", "version", tls.VersionName(st.Version),
		"cipher", tls.CipherSuiteName(st.CipherSuite))
	return nil
}
