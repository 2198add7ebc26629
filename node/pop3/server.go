package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mailarray/node/loginlog"
	"mailarray/node/throttle"
)

// Backend authenticates users and opens their maildrops. Implemented by the
// node. Login is called concurrently from many sessions and must be safe for
// concurrent use.
type Backend interface {
	// Login checks the credentials and takes the mailbox's exclusive lock for
	// this session. Returns ErrAuth (wrong user or password) or ErrInUse
	// (another session holds the lock, maybe on another node), or another
	// error (temporary failure -> "-ERR [SYS/TEMP]").
	Login(ctx context.Context, user, pass string, remote net.Addr) (Maildrop, error)
}

// Maildrop is one locked mailbox for one session. Its methods are called
// from the session's goroutine only, never concurrently.
type Maildrop interface {
	// List is the maildrop's content at login, oldest first. ID is the unique
	// stable id used for UIDL (1-70 chars in 0x21-0x7E), Size the exact octet
	// count of the message as RETR sends it (CRLF line ends, before
	// dot-stuffing).
	List(ctx context.Context) ([]MessageInfo, error)
	// Open returns the whole message (CRLF line endings).
	Open(ctx context.Context, id string) (io.ReadCloser, error)
	// Commit deletes the given ids (UPDATE state after QUIT). Only called if
	// at least one message was deleted. An error is answered "-ERR
	// [SYS/TEMP] some deleted messages not removed" (RFC 1939 section 6);
	// it may leave the deletion partly done (a clustered backend may have
	// recorded it without confirming it everywhere), which that answer
	// allows.
	Commit(ctx context.Context, deleted []string) error
	// Close releases the lock. Always called once at session end (QUIT,
	// error, timeout, server close).
	Close() error
}

// MessageInfo describes one message of a maildrop.
type MessageInfo struct {
	// ID is the message's unique id (RFC 1939 §7 UIDL: 1 to 70 octets in
	// 0x21-0x7E, unique within the maildrop, stable across sessions).
	ID string
	// Size is the exact octet count RETR sends before dot-stuffing.
	Size int64
}

// Sentinel errors returned by Backend.Login.
var (
	// ErrAuth says the user does not exist or the password is wrong.
	// Answered "-ERR [AUTH]" (RFC 3206 §5).
	ErrAuth = errors.New("pop3: invalid credentials")
	// ErrInUse says another session holds the maildrop's lock. Answered
	// "-ERR [IN-USE]" (RFC 2449 §8.1.2).
	ErrInUse = errors.New("pop3: maildrop in use")
)

// ErrServerClosed is returned by Serve and ServeConn after Close.
var ErrServerClosed = errors.New("pop3: server closed")

// Config holds the server's limits. Build one with DefaultConfig and adjust.
type Config struct {
	// Hostname is named in the greeting.
	Hostname string
	// MaxLineBytes is the longest command line accepted, CRLF included.
	// RFC 2449 §4 raised the limit to 255 octets, so no smaller value is
	// valid; larger ones help clients with long passwords (tokens). A longer
	// line is answered "-ERR line too long" and discarded up to its LF.
	MaxLineBytes int
	// IdleTimeout is the autologout timer (RFC 1939 §3): a session that sends
	// no complete command for this long is closed without entering the UPDATE
	// state. The RFC requires at least 10 minutes; shorter values are for tests.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to the client (and a TLS handshake): a
	// client that stops reading is dropped after this long.
	WriteTimeout time.Duration
	// BackendTimeout bounds each Backend or Maildrop call (Login, List, Open,
	// Commit).
	BackendTimeout time.Duration
	// MaxFailedLogins is the number of failed PASS commands after which the
	// session is closed.
	MaxFailedLogins int
	// FailedLoginDelay is waited before answering a failed PASS, to slow
	// password guessing. Zero disables it. Server.Close interrupts it.
	FailedLoginDelay time.Duration
	// ThrottleWindow and ThrottleMaxFailures form the per-remote-address
	// throttle: once an address (an IPv4 address or an IPv6 /64) has failed
	// ThrottleMaxFailures logins within ThrottleWindow, PASS from it is
	// refused with "-ERR [SYS/TEMP]" without checking the password until the
	// window ends. ThrottleMaxFailures 0 disables the throttle.
	ThrottleWindow      time.Duration
	ThrottleMaxFailures int
	// ThrottleMaxAddrs bounds the throttle's table. When it is full of
	// unexpired entries, new addresses are not tracked (the throttle fails
	// open rather than locking everyone out) and a warning is logged.
	ThrottleMaxAddrs int
	// MaxSessions is the number of concurrent sessions. Beyond it a new
	// connection is greeted "-ERR [SYS/TEMP] too many sessions" and closed.
	MaxSessions int
	// MaxSessionsPerAddr is the number of concurrent sessions one client
	// address (an IPv4 address or an IPv6 /64, node/throttle) may hold;
	// beyond it a new connection from there is greeted "-ERR [SYS/TEMP]"
	// and closed, so one host cannot take all MaxSessions. 0: no cap.
	MaxSessionsPerAddr int
	// LoginTimeout bounds the AUTHORIZATION state: a session not logged in
	// this long after it connected is closed, however many commands it
	// sends meanwhile, so idle or dribbling unauthenticated connections
	// cannot hold sessions for IdleTimeout. 0: only IdleTimeout applies.
	LoginTimeout time.Duration
	// Logins, when set, is told every login attempt (node/loginlog); the
	// server logs each one anyway.
	Logins loginlog.Recorder
	// MaxBadCommands is the number of unknown, malformed, too long or
	// out-of-state commands after which the session is closed.
	MaxBadCommands int
	// MaxMessages bounds the messages shown in one session. A larger maildrop
	// shows its oldest MaxMessages; the rest appear once those are deleted.
	MaxMessages int
	// RequireTLS refuses USER and PASS on connections that are not TLS
	// (RFC 2595 §2.4) with "-ERR [AUTH]" and omits USER from CAPA there
	// (RFC 2449 §6.3: USER is listed only where it may be used), so a
	// client upgrades with STLS before sending a password.
	RequireTLS bool
	// TLS returns the configuration for STLS (RFC 2595). It is called for
	// each STLS, so certificates can be reloaded. Nil disables STLS. Implicit
	// TLS (port 995) is done by wrapping the listener with tls.NewListener;
	// such sessions count as secure and do not offer STLS.
	TLS func() *tls.Config
}

// Limits that Validate enforces on Config.
const (
	minLineBytes    = 255      // RFC 2449 §4
	maxLineBytesCap = 64 << 10 // one read buffer per session; keep it small
)

// DefaultConfig returns the limits for a production server.
func DefaultConfig() Config {
	return Config{
		Hostname:            "localhost",
		MaxLineBytes:        255,              // RFC 2449 §4
		IdleTimeout:         10 * time.Minute, // RFC 1939 §3 minimum
		WriteTimeout:        time.Minute,      // a client that reads nothing for a minute is gone
		BackendTimeout:      30 * time.Second, // catalog reads may cross the cluster
		MaxFailedLogins:     3,
		FailedLoginDelay:    time.Second,
		ThrottleWindow:      15 * time.Minute,
		ThrottleMaxFailures: 20,      // a few users behind one NAT mistyping, not a brute force
		ThrottleMaxAddrs:    1 << 16, // ~100 bytes each: a few MiB at most
		MaxSessions:         1000,
		MaxSessionsPerAddr:  50,          // a NATed office of mail clients, not one host's thousand sockets
		LoginTimeout:        time.Minute, // a client logs in within seconds; RFC 1939's 10 min is for idle users
		MaxBadCommands:      20,
		MaxMessages:         100_000, // LIST of 100k messages is ~1.5 MB
	}
}

// Validate rejects configurations that cannot work.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("pop3: config: "+format, args...))
		}
	}
	check(c.Hostname != "", "Hostname is empty")
	for _, r := range c.Hostname {
		if r < 0x21 || r > 0x7e {
			check(false, "Hostname %q has a character outside 0x21-0x7E", c.Hostname)
			break
		}
	}
	check(c.MaxLineBytes >= minLineBytes && c.MaxLineBytes <= maxLineBytesCap,
		"MaxLineBytes %d not in [%d, %d]", c.MaxLineBytes, minLineBytes, maxLineBytesCap)
	check(c.IdleTimeout > 0, "IdleTimeout %v must be positive", c.IdleTimeout)
	check(c.WriteTimeout > 0, "WriteTimeout %v must be positive", c.WriteTimeout)
	check(c.BackendTimeout > 0, "BackendTimeout %v must be positive", c.BackendTimeout)
	check(c.MaxFailedLogins > 0, "MaxFailedLogins %d must be positive", c.MaxFailedLogins)
	check(c.FailedLoginDelay >= 0, "FailedLoginDelay %v is negative", c.FailedLoginDelay)
	check(c.ThrottleMaxFailures >= 0, "ThrottleMaxFailures %d is negative", c.ThrottleMaxFailures)
	if c.ThrottleMaxFailures > 0 {
		check(c.ThrottleWindow > 0, "ThrottleWindow %v must be positive", c.ThrottleWindow)
		check(c.ThrottleMaxAddrs > 0, "ThrottleMaxAddrs %d must be positive", c.ThrottleMaxAddrs)
	}
	check(c.MaxSessions > 0, "MaxSessions %d must be positive", c.MaxSessions)
	check(c.MaxSessionsPerAddr >= 0, "MaxSessionsPerAddr %d is negative", c.MaxSessionsPerAddr)
	check(c.LoginTimeout >= 0, "LoginTimeout %v is negative", c.LoginTimeout)
	check(c.MaxBadCommands > 0, "MaxBadCommands %d must be positive", c.MaxBadCommands)
	check(c.MaxMessages > 0, "MaxMessages %d must be positive", c.MaxMessages)
	check(!c.RequireTLS || c.TLS != nil, "RequireTLS needs TLS")
	return errors.Join(errs...)
}

// Server is a POP3 server. It serves any number of listeners and
// connections; Close ends them all.
type Server struct {
	cfg     Config
	cfgErr  error
	backend Backend
	log     *slog.Logger

	// ctx is the parent of every backend call; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed by Close; it interrupts waits (login delay, accept backoff).
	done chan struct{}

	throttle *throttle.Throttle // nil: disabled
	perAddr  *throttle.Conns    // sessions per client address; nil: no cap
	nextID   atomic.Uint64

	mu          sync.Mutex
	maxSessions int // cfg.MaxSessions, then SetSessionLimits'
	closed      bool
	listeners   map[net.Listener]struct{}
	conns       map[net.Conn]struct{} // every open connection, session or rejected
	nsessions   int
	nrejecting  int
	wg          sync.WaitGroup // one per connection goroutine
}

// New returns a server for backend. An invalid cfg is reported by Serve and
// ServeConn. A nil log discards.
func New(cfg Config, b Backend, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:         cfg,
		maxSessions: cfg.MaxSessions,
		cfgErr:      cfg.Validate(),
		backend:     b,
		log:         log,
		ctx:         ctx,
		cancel:      cancel,
		done:        make(chan struct{}),
		listeners:   make(map[net.Listener]struct{}),
		conns:       make(map[net.Conn]struct{}),
	}
	if b == nil && s.cfgErr == nil {
		s.cfgErr = errors.New("pop3: nil Backend")
	}
	if cfg.ThrottleMaxFailures > 0 {
		s.throttle = throttle.New(cfg.ThrottleWindow, cfg.ThrottleMaxFailures, cfg.ThrottleMaxAddrs)
	}
	if cfg.MaxSessionsPerAddr > 0 {
		s.perAddr = throttle.NewConns(cfg.MaxSessionsPerAddr)
	}
	return s
}

// Serve accepts connections on l until Close, serving each in its own
// goroutine. It closes l when it returns, and returns ErrServerClosed after
// Close. For implicit TLS (POP3S, RFC 8314) pass a tls.NewListener.
func (s *Server) Serve(l net.Listener) error {
	defer l.Close()
	if s.cfgErr != nil {
		return s.cfgErr
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	// Back off on temporary accept errors (out of file descriptors), as
	// net/http does, so the loop does not spin.
	const backoffMin, backoffMax = 5 * time.Millisecond, time.Second
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, backoffMin), backoffMax)
				s.log.Warn("pop3: accept failed; retrying", "err", err, "backoff", backoff)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-s.done:
					t.Stop()
					return ErrServerClosed
				}
				continue
			}
			return fmt.Errorf("pop3: accept: %w", err)
		}
		backoff = 0
		run, ok := s.admit(c)
		if !ok {
			continue
		}
		go func() {
			defer s.wg.Done()
			run()
		}()
	}
}

// ServeConn serves one connection on the calling goroutine and returns when
// the session ends; it closes c. It returns ErrServerClosed if the server is
// closed. The simulator and tests use it with in-memory connections.
func (s *Server) ServeConn(c net.Conn) error {
	if s.cfgErr != nil {
		c.Close()
		return s.cfgErr
	}
	run, ok := s.admit(c)
	if !ok {
		return ErrServerClosed
	}
	defer s.wg.Done()
	run()
	return nil
}

// admit registers c and returns the function that serves it (a session or,
// beyond MaxSessions or MaxSessionsPerAddr, a rejection). The caller must
// call s.wg.Done after run. ok is false (and c closed) when the server is
// closed or c was dropped.
func (s *Server) admit(c net.Conn) (run func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, false
	}
	why := ""
	key, perAddrOK := "", true
	if s.nsessions >= s.maxSessions {
		why = "too many sessions"
	} else if key, perAddrOK = s.perAddr.Acquire(c.RemoteAddr()); !perAddrOK {
		why = "too many sessions from your address"
	}
	if why != "" {
		// Rejections cost a goroutine each until the greeting is written;
		// bound them too, and drop silently beyond.
		if s.nrejecting >= s.maxSessions {
			c.Close()
			return nil, false
		}
		s.nrejecting++
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		max := s.maxSessions
		return func() {
			s.reject(c, why, max)
			s.forget(c, &s.nrejecting)
		}, true
	}
	s.nsessions++
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return func() {
		newSession(s, c).run()
		s.perAddr.Release(key)
		s.forget(c, &s.nsessions)
	}, true
}

// SetSessionLimits replaces the session caps (a configuration reload):
// new connections are judged by them; sessions already open stay. The
// per-address cap applies only to a server created with one. Both >= 1.
func (s *Server) SetSessionLimits(maxSessions, maxPerAddr int) error {
	if maxSessions < 1 || maxPerAddr < 1 {
		return fmt.Errorf("pop3: session limits %d, %d per address must be >= 1", maxSessions, maxPerAddr)
	}
	s.perAddr.SetMax(maxPerAddr)
	s.mu.Lock()
	s.maxSessions = maxSessions
	s.mu.Unlock()
	return nil
}

// forget closes c and unregisters it.
func (s *Server) forget(c net.Conn, counter *int) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	*counter--
	s.mu.Unlock()
}

// reject greets c with the RFC 3206 §4 temporary failure code and closes it.
func (s *Server) reject(c net.Conn, why string, max int) {
	s.log.Warn("pop3: "+why+"; rejecting", "remote", loginlog.Remote(c.RemoteAddr()),
		"max", max)
	// A TLS listener's conn handshakes on this write: bound reads too.
	_ = c.SetDeadline(time.Now().Add(s.cfg.WriteTimeout))
	_, _ = io.WriteString(c, "-ERR [SYS/TEMP] "+why+", try again later\r\n")
}

// Close stops every listener, ends every session (without the UPDATE state;
// each maildrop's Close is called) and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		s.cancel()
		for l := range s.listeners {
			l.Close()
		}
		for c := range s.conns {
			c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// sleep waits d or until Close; it reports false if interrupted.
func (s *Server) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

// isTemporary reports whether an Accept error is worth retrying. Temporary
// is deprecated for most errors but still what accept(2) EMFILE and the
// simulator's network report.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
