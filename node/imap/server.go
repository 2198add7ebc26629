package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailarray/node/catalog"
	"mailarray/node/loginlog"
	"mailarray/node/throttle"
)

// Limits and timings of the IMAP server.
const (
	// pollEvery is how often an idling session retries a UID assignment
	// that could not complete (catalog changes wake it at once).
	pollEvery = time.Second
	// assignBackoffMax bounds the wait between failed assignments.
	assignBackoffMax = 30 * time.Second
	// maxFailedLogins: after that many refused logins a session refuses
	// every further login without checking it.
	maxFailedLogins = 3
	// fetchWindow bounds the copies FETCH reads ahead from other nodes.
	fetchWindow = 128
	// maxFlags and maxFlagBytes bound one message's flags (the catalog
	// entry carries them to every node).
	maxFlags     = 64
	maxFlagBytes = 128
	// inbox is the one folder.
	inbox = "INBOX"
	// delim is the hierarchy delimiter LIST reports.
	delim = '/'
)

// systemFlags are the flags SELECT announces; PERMANENTFLAGS adds \*
// (keywords may be created).
var systemFlags = []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft}

// Backend authenticates users and opens their mailboxes. Implemented by the
// node (node/imap_backend.go). Login is called concurrently from many
// sessions and must be safe for concurrent use.
type Backend interface {
	// Login checks the credentials and returns the user's mailbox. It
	// returns ErrAuth for a wrong user or password (answered NO
	// [AUTHENTICATIONFAILED] after Config.FailedLoginDelay); any other
	// error is a temporary failure, logged and answered NO [UNAVAILABLE].
	// IMAP takes no lock at login: sessions share the mailbox.
	Login(username, password string) (Mailbox, error)
}

// Mailbox is one user's mailbox over the catalog, as Login returned it. A
// session calls it from its connection's goroutine, from the goroutine its
// IDLE runs on (never at the same time: see session), and Read and
// ReadBatch also from FETCH's read-ahead goroutines; many sessions may
// share one mailbox. Implementations must be safe for concurrent use. A
// Mailbox holds no lock and needs no closing.
type Mailbox interface {
	// Name is the mailbox's address, as in catalog.Entry.Mailbox: the
	// key Server.CatalogChanged matches changes on.
	Name() string
	// List returns the mailbox's committed live entries, in any order.
	// The slice is the caller's; the entries' slices are shared (read
	// only).
	List() []catalog.Entry
	// Get returns any entry by id, as the catalog has it now (deleted
	// ones too: callers check Live).
	Get(id string) (catalog.Entry, bool)
	// MaxUID is the highest UID the catalog knows for the mailbox.
	MaxUID() uint32
	// AssignUIDs gives a UID to every committed entry without one, and a
	// fresh one to every entry but the first (in ByArrival order) sharing
	// one, and returns once the assignment is applied here. nil also when
	// there was nothing to do. Sessions show only entries with a UID.
	AssignUIDs(ctx context.Context) error
	// Local reports whether this node holds a copy of e: Read reads it
	// from disk, and FETCH reads other copies ahead (ReadBatch).
	Local(e *catalog.Entry) bool
	// Read returns e's message (CRLF line ends) from any live copy.
	Read(ctx context.Context, e *catalog.Entry) ([]byte, error)
	// ReadBatch reads entries' messages, result i for entry i, in as few
	// round trips and store reads as it can. The copies, this node's and
	// the other holders', may be read into buf (grown as needed, returned
	// for the next call; nil: the results are the caller's): their results
	// are valid until buf is given to ReadBatch again.
	ReadBatch(ctx context.Context, entries []catalog.Entry, buf []byte) ([]ReadResult, []byte)
	// StoreFlags writes a new version of each of the changed entries
	// (their flags changed, nothing else) and makes it durable here
	// before it returns; it then pushes them to the other nodes, which
	// may be left to anti-entropy (no error). A returned error means
	// nothing may have been stored.
	StoreFlags(ctx context.Context, changed []catalog.Entry) error
	// Expunge deletes ids and returns nil once every node has the
	// deletion. It returns an error wrapping ErrInUse if another access
	// path holds the mailbox exclusively (a POP3 session), or ErrIncomplete
	// if the deletion is applied here but not yet confirmed everywhere.
	Expunge(ctx context.Context, ids []string) error
}

// ReadResult is one message read by Mailbox.ReadBatch.
type ReadResult struct {
	Data []byte
	Err  error
}

// Sentinel errors the Backend and Mailbox return.
var (
	// ErrAuth: Backend.Login's wrong user or password.
	ErrAuth = errors.New("imap: invalid credentials")
	// ErrInUse: Mailbox.Expunge found the mailbox held by another session.
	// Answered NO [INUSE] (RFC 5530).
	ErrInUse = errors.New("imap: mailbox in use")
	// ErrIncomplete: Mailbox.Expunge applied the deletion here but not
	// everywhere. Answered NO [UNAVAILABLE]: the client retries.
	ErrIncomplete = errors.New("imap: deletion not confirmed everywhere")
)

// Config holds the server's settings. Build one with DefaultConfig and
// adjust.
type Config struct {
	// Log receives the server's messages ("imap: ..."); go-imap's own go
	// to it at debug level with listener=imap.
	Log *slog.Logger
	// TLS is offered by STARTTLS (RFC 9051 section 6.2.1); nil disables
	// it.
	TLS *tls.Config
	// RequireTLS refuses LOGIN and AUTHENTICATE on connections that are
	// not TLS (NO [PRIVACYREQUIRED]) and advertises LOGINDISABLED and no
	// AUTH= there (RFC 9051 section 6.2.3, RFC 3501 section 6.2.3), so a
	// client sends its password only after STARTTLS; implicit-TLS (IMAPS)
	// connections count as TLS. It is POP3's RequireTLS.
	RequireTLS bool
	// MaxSessions bounds concurrent sessions; beyond it a connection is
	// greeted BYE [UNAVAILABLE].
	MaxSessions int
	// MaxSessionsPerAddr bounds the concurrent sessions of one client
	// address (an IPv4 address or an IPv6 /64, node/throttle); beyond it
	// a connection from there is greeted BYE [UNAVAILABLE], so one host
	// cannot take all MaxSessions. 0: no cap.
	MaxSessionsPerAddr int
	// LoginTimeout bounds the not-authenticated state: a session not
	// logged in this long after it connected gets BYE and is closed,
	// whatever it sends meanwhile (imapserver's own timer restarts with
	// every command). 0: no bound.
	LoginTimeout time.Duration
	// Logins, when set, is told every login attempt (node/loginlog); the
	// server logs each one anyway.
	Logins loginlog.Recorder
	// FailedLoginDelay is waited before answering a failed login, to slow
	// password guessing. Close interrupts it.
	FailedLoginDelay time.Duration
	// ThrottleWindow and ThrottleMaxFailures: an address (IPv4, or an
	// IPv6 /64) that failed that many logins in the window is refused
	// without a password check until the window ends (throttle.go).
	ThrottleWindow      time.Duration
	ThrottleMaxFailures int
	// ThrottleMaxAddrs bounds the throttle's table; when it is full of
	// live entries new addresses are not counted (fail open, never lock
	// everyone out), while the addresses already counted stay counted.
	ThrottleMaxAddrs int
	// Latency, if set, is told how long each login, select, fetch, store
	// and expunge took (the node's mailarray_imap_seconds).
	Latency func(op string, d time.Duration)
	// ChargeCPU, if set, is charged each message's size as FETCH sends it
	// (the simulator's cost model).
	ChargeCPU func(bytes int)
}

// DefaultConfig returns the settings for a production server: the login
// limits are POP3's (node/pop3 DefaultConfig), so neither protocol is the
// weaker way in.
func DefaultConfig() Config {
	return Config{
		Log:                 slog.New(slog.DiscardHandler),
		MaxSessions:         1000,
		MaxSessionsPerAddr:  50,          // as POP3: a NATed office, not one host's thousand sockets
		LoginTimeout:        time.Minute, // as POP3
		FailedLoginDelay:    time.Second,
		ThrottleWindow:      15 * time.Minute,
		ThrottleMaxFailures: 20,
		ThrottleMaxAddrs:    1 << 16,
	}
}

// Server is the IMAP server and the state its sessions share. It serves
// any number of listeners; Close ends them all.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	srv     *imapserver.Server

	// ctx is the parent of every session's context; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu          sync.Mutex
	maxSessions int // cfg.MaxSessions, then SetSessionLimits'
	sessions    map[*session]struct{}
	closed      bool
	wg          sync.WaitGroup // one per session, done at its Close
	byes        sync.WaitGroup // Bye's writers, ended by Close at the latest

	// logins counts login attempts per remote address across connections
	// (throttle.go).
	logins *throttle.Throttle
	// perAddr counts open sessions per client address.
	perAddr *throttle.Conns

	// Catalog change notification, per mailbox that a session has
	// selected: watching counts them so the hook costs one atomic load
	// when no session is selected.
	watching atomic.Int64
	wmu      sync.Mutex
	watched  map[string]*mailboxWatch
}

type mailboxWatch struct {
	gen  uint64
	subs map[chan struct{}]struct{}
}

// New returns a server over backend. Serve it on listeners; hand
// CatalogChanged every catalog change.
func New(cfg Config, backend Backend) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, maxSessions: cfg.MaxSessions, backend: backend, log: cfg.Log, sessions: map[*session]struct{}{}, watched: map[string]*mailboxWatch{},
		logins: newLoginThrottle(cfg)}
	if cfg.MaxSessionsPerAddr > 0 {
		s.perAddr = throttle.NewConns(cfg.MaxSessionsPerAddr)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	opts := &imapserver.Options{
		NewSession: s.newSession,
		Caps:       imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		Logger:     slog.NewLogLogger(cfg.Log.With("listener", "imap").Handler(), slog.LevelDebug),
		// Without RequireTLS plaintext logins are accepted; with it
		// imapserver advertises LOGINDISABLED and answers LOGIN and
		// AUTHENTICATE with NO [PRIVACYREQUIRED] until STARTTLS.
		InsecureAuth: !cfg.RequireTLS,
		TLSConfig:    cfg.TLS,
	}
	s.srv = imapserver.New(opts)
	return s
}

// Serve accepts connections on l until Close. Each connection is wrapped
// so FETCH can gather its responses into few writes (cork.go).
func (s *Server) Serve(l net.Listener) error { return s.srv.Serve(corkListener{Listener: l}) }

// ServeTLS accepts implicit-TLS (IMAPS) connections on the plain listener
// l until Close: TLS goes over each connection's corkConn, so FETCH
// gathers whole TLS records.
func (s *Server) ServeTLS(l net.Listener, cfg *tls.Config) error {
	return s.srv.Serve(corkListener{Listener: l, tls: cfg})
}

// observe reports op's latency since t0.
func (s *Server) observe(op string, t0 time.Time) {
	if s.cfg.Latency != nil {
		s.cfg.Latency(op, time.Since(t0))
	}
}

func (s *Server) chargeCPU(bytes int) {
	if s.cfg.ChargeCPU != nil {
		s.cfg.ChargeCPU(bytes)
	}
}

// SessionCount is the number of open sessions.
func (s *Server) SessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Bye tells every session the server is going away (RFC 9051 section
// 7.1.5), until ctx is done, and refuses new sessions from now on (the
// listeners stay open until Close, which closes the connections and waits
// for the writers Bye started).
func (s *Server) Bye(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	conns := make([]*imapserver.Conn, 0, len(s.sessions))
	for ss := range s.sessions {
		conns = append(conns, ss.conn)
	}
	s.mu.Unlock()
	// Buffered: a writer that finishes after ctx is done never blocks.
	done := make(chan struct{}, len(conns))
	for _, c := range conns {
		s.byes.Add(1)
		go func() {
			defer s.byes.Done()
			c.Bye("server shutting down")
			done <- struct{}{}
		}()
	}
	for range conns {
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}

// Close stops the listeners, closes every connection and waits for the
// sessions, and for Bye's writers (a closed connection ends a blocked
// write), to end. Canceling the sessions' context first ends a running
// IDLE and a failed login's delay.
func (s *Server) Close() {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.srv.Close()
	s.wg.Wait()
	s.byes.Wait()
}

// SetSessionLimits replaces the session caps (a configuration reload):
// new connections are judged by them; sessions already open stay. The
// per-address cap applies only to a server created with one. Both >= 1.
func (s *Server) SetSessionLimits(maxSessions, maxPerAddr int) error {
	if maxSessions < 1 || maxPerAddr < 1 {
		return fmt.Errorf("imap: session limits %d, %d per address must be >= 1", maxSessions, maxPerAddr)
	}
	s.perAddr.SetMax(maxPerAddr)
	s.mu.Lock()
	s.maxSessions = maxSessions
	s.mu.Unlock()
	return nil
}

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "server shutting down"}
	}
	if len(s.sessions) >= s.maxSessions {
		// RFC 9051 section 7.1.5: BYE at greeting when refusing service.
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Code: imap.ResponseCodeUnavailable, Text: "too many sessions, try again later"}
	}
	key, ok := s.perAddr.Acquire(c.NetConn().RemoteAddr())
	if !ok {
		s.log.Warn("imap: too many sessions from one address; rejecting", "remote", loginlog.Remote(c.NetConn().RemoteAddr()))
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Code: imap.ResponseCodeUnavailable, Text: "too many sessions from your address, try again later"}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	ss := &session{svc: s, conn: c, ctx: ctx, cancel: cancel, addrKey: key}
	if s.cfg.LoginTimeout > 0 {
		ss.loginTimer = time.AfterFunc(s.cfg.LoginTimeout, ss.loginTimeout)
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	return ss, nil, nil
}

// CatalogChanged bumps the generation of every watched mailbox that
// changed and wakes its idling sessions. Called after every durable
// catalog change, from the goroutine that applied it: it must not block.
func (s *Server) CatalogChanged(changed []catalog.Entry) {
	if s.watching.Load() == 0 {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var last *mailboxWatch
	for i := range changed {
		w := s.watched[changed[i].Mailbox]
		if w == nil || w == last {
			continue
		}
		last = w
		w.gen++
		for ch := range w.subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// watch subscribes to mailbox's changes: ch receives (coalesced) wake-ups.
func (s *Server) watch(mailbox string) (ch chan struct{}) {
	ch = make(chan struct{}, 1)
	s.wmu.Lock()
	w := s.watched[mailbox]
	if w == nil {
		w = &mailboxWatch{subs: map[chan struct{}]struct{}{}}
		s.watched[mailbox] = w
		s.watching.Add(1)
	}
	w.subs[ch] = struct{}{}
	s.wmu.Unlock()
	return ch
}

func (s *Server) unwatch(mailbox string, ch chan struct{}) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	w := s.watched[mailbox]
	if w == nil {
		return
	}
	delete(w.subs, ch)
	if len(w.subs) == 0 {
		delete(s.watched, mailbox)
		s.watching.Add(-1)
	}
}

// generation is mailbox's change counter (0 when nobody watches it).
func (s *Server) generation(mailbox string) uint64 {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if w := s.watched[mailbox]; w != nil {
		return w.gen
	}
	return 0
}
