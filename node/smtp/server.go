package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailarray/node/bufpool"
	"mailarray/node/mailaddr"
	"mailarray/node/throttle"
)

// Errors a Backend returns to choose the reply. Any other error is a
// temporary local failure (451 4.3.0).
var (
	// ErrUnknownMailbox: the domain is hosted but the mailbox does not
	// exist. RFC 5321 4.2.2, RFC 3463 X.1.1.
	ErrUnknownMailbox = errors.New("smtp: unknown mailbox")
	// ErrNotHosted: the domain is not ours; accepting would relay.
	// RFC 3463 X.7.1 (delivery not authorized).
	ErrNotHosted = errors.New("smtp: domain not hosted")
	// ErrUnavailable: too few live nodes to make the message durable.
	// RFC 3463 X.3.0 (mail system status).
	ErrUnavailable = errors.New("smtp: storage unavailable")
	// ErrQuota: the mailbox is over its quota. RFC 3463 X.2.2.
	ErrQuota = errors.New("smtp: mailbox over quota")
	// ErrNotYet: the mailbox is unknown, but the mailbox directory changed
	// a moment ago and may not be loaded whole yet, so the refusal is
	// temporary (450 4.1.1, RFC 5321 4.2.2 and RFC 3463 X.1.1): the
	// sender's MTA retries instead of bouncing mail for a mailbox that is
	// being added.
	ErrNotYet = errors.New("smtp: mailbox not known yet")
)

// Message is one accepted SMTP transaction handed to the backend.
type Message struct {
	ID   string   // transaction id, shown in the Received header and the 250 reply
	From string   // reverse path, "" for the null sender
	To   []string // accepted recipients, in package mailaddr's normal form
	// UTF8: the client sent MAIL with SMTPUTF8 (RFC 6531): the envelope
	// and the header may hold UTF-8.
	UTF8   bool
	Data   []byte // the message with CRLF line ends and our Received header first
	Helo   string
	Remote net.Addr
	TLS    bool
}

// Backend is what the listener needs from the node.
type Backend interface {
	// NewID returns a fresh transaction id.
	NewID() string
	// CheckRecipient says whether mail for addr (in package mailaddr's
	// normal form when it is a valid address) is accepted, returning nil
	// or one of the package's errors (or an *SMTPError from go-smtp).
	CheckRecipient(ctx context.Context, addr string) error
	// Deliver makes m durable for every recipient, or fails wholly.
	Deliver(ctx context.Context, m *Message) error
}

// Config of the listener. Zero values take defaults from DefaultConfig.
type Config struct {
	Hostname string // announced in the greeting and Received headers
	// MaxMessageBytes is advertised with SIZE; a larger message gets
	// 552 5.3.4 once the client has sent all of it. It is the only bound
	// on a line of the message too: RFC 5321 4.5.3.1.6 limits a line to
	// 1000 octets with CRLF, but Postfix, Exim and most servers accept
	// longer ones, and senders (HTML generators, some MUAs) send them, so
	// refusing them would bounce real mail; the message is stored as sent.
	MaxMessageBytes  int64
	MaxRecipients    int           // per transaction; more get 452 4.5.3
	ReadTimeout      time.Duration // per command line; RFC 5321 4.5.3.2 suggests 5 min
	WriteTimeout     time.Duration
	DeliverTimeout   time.Duration // bound on making one message durable
	MaxSessions      int           // concurrent sessions; more get 421 4.4.5
	MaxSessionsPerIP int           // concurrent sessions from one client address (IPv4, or IPv6 /64)
	// RatePerIP is how many new connections one client address may open
	// per minute (a token bucket of that size, refilled evenly); 0 is no limit.
	RatePerIP int
	// Recipient probing (tarpit.go): after UnknownRcptTarpitAfter
	// unknown recipients in one session, each further one is answered
	// UnknownRcptDelay late, and the MaxUnknownRcpts-th gets 421 4.7.0
	// and the session is closed. A client address (IPv4, or IPv6 /64)
	// that named MaxUnknownRcptsPerIP unknown recipients within
	// UnknownRcptWindow gets the delay and the 421 at its next unknown
	// recipient, in any session, until the window ends.
	UnknownRcptTarpitAfter int
	UnknownRcptDelay       time.Duration
	MaxUnknownRcpts        int
	MaxUnknownRcptsPerIP   int
	UnknownRcptWindow      time.Duration
	// Observe, when set, is told every outcome: result "accepted",
	// "rejected" (recipient or data refused) or "failed" (delivery), the
	// reply's enhanced code as reason, and the transaction's duration.
	Observe func(result, reason string, d time.Duration)
	// TLS, when set, enables STARTTLS; it is called per handshake so
	// certificates can be replaced without a restart.
	TLS func() *tls.Config
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{
		Hostname:         "localhost",
		MaxMessageBytes:  25 << 20,
		MaxRecipients:    100,
		ReadTimeout:      5 * time.Minute,
		WriteTimeout:     time.Minute,
		DeliverTimeout:   30 * time.Second,
		MaxSessions:      1000,
		MaxSessionsPerIP: 50,

		UnknownRcptTarpitAfter: 3,                // a typo or two is not a probe
		UnknownRcptDelay:       5 * time.Second,  // a dictionary of 1,000 names takes over an hour per session
		MaxUnknownRcpts:        10,               // then the session ends: reconnecting costs a handshake each time
		MaxUnknownRcptsPerIP:   50,               // per window, across sessions
		UnknownRcptWindow:      15 * time.Minute, // as the POP3 and IMAP login throttles
	}
}

// Validate fills defaults and rejects nonsense.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.Hostname == "" {
		c.Hostname = d.Hostname
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	if c.MaxRecipients == 0 {
		c.MaxRecipients = d.MaxRecipients
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = d.ReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.DeliverTimeout == 0 {
		c.DeliverTimeout = d.DeliverTimeout
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = d.MaxSessions
	}
	if c.MaxSessionsPerIP == 0 {
		c.MaxSessionsPerIP = d.MaxSessionsPerIP
	}
	c.fillTarpitDefaults(d)
	switch {
	case c.MaxMessageBytes < 1024:
		return fmt.Errorf("smtp: max message size %d is below 1024 bytes", c.MaxMessageBytes)
	case c.MaxRecipients < 1:
		return fmt.Errorf("smtp: max recipients %d < 1", c.MaxRecipients)
	case c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.DeliverTimeout < 0:
		return errors.New("smtp: negative timeout")
	case c.MaxSessions < 1 || c.MaxSessionsPerIP < 1:
		return errors.New("smtp: session limits must be >= 1")
	case c.UnknownRcptTarpitAfter < 0 || c.UnknownRcptDelay < 0 || c.MaxUnknownRcpts < 1 || c.MaxUnknownRcptsPerIP < 1 || c.UnknownRcptWindow <= 0:
		return errors.New("smtp: unknown recipient limits: tarpit-after and delay >= 0, max and per-ip >= 1, window > 0")
	}
	return nil
}

// Limits are the keys of Config a running listener takes from SetLimits
// (a configuration reload): the session caps, the connection rate and
// the recipient tarpit. The others (sizes, timeouts) live in go-smtp's
// server, which reads them unlocked from its sessions: they are fixed
// for the listener's life.
type Limits struct {
	MaxSessions, MaxSessionsPerIP, RatePerIP int
	UnknownRcptTarpitAfter                   int
	UnknownRcptDelay                         time.Duration
	MaxUnknownRcpts, MaxUnknownRcptsPerIP    int
}

func (c *Config) limits() Limits {
	return Limits{MaxSessions: c.MaxSessions, MaxSessionsPerIP: c.MaxSessionsPerIP, RatePerIP: c.RatePerIP,
		UnknownRcptTarpitAfter: c.UnknownRcptTarpitAfter, UnknownRcptDelay: c.UnknownRcptDelay,
		MaxUnknownRcpts: c.MaxUnknownRcpts, MaxUnknownRcptsPerIP: c.MaxUnknownRcptsPerIP}
}

// SetLimits replaces the listener's live limits. New connections and
// recipients are judged by them at once; sessions already open stay open
// under a lowered cap. Limits below 1 (the delay below 0) are refused.
func (s *Server) SetLimits(l Limits) error {
	c := s.cfg
	c.MaxSessions, c.MaxSessionsPerIP, c.RatePerIP = l.MaxSessions, l.MaxSessionsPerIP, l.RatePerIP
	c.UnknownRcptTarpitAfter, c.UnknownRcptDelay = l.UnknownRcptTarpitAfter, l.UnknownRcptDelay
	c.MaxUnknownRcpts, c.MaxUnknownRcptsPerIP = l.MaxUnknownRcpts, l.MaxUnknownRcptsPerIP
	if err := c.Validate(); err != nil {
		return err
	}
	if c.RatePerIP < 0 {
		return errors.New("smtp: rate per IP must be >= 0")
	}
	s.perAddr.SetMax(c.MaxSessionsPerIP)
	s.unknownRcpts.SetMax(c.MaxUnknownRcptsPerIP)
	s.mu.Lock()
	s.lim = c.limits()
	s.mu.Unlock()
	return nil
}

// limits is the current live limits.
func (s *Server) limits() Limits {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lim
}

// Stats counts the listener's outcomes.
type Stats struct {
	Sessions, Accepted, Rejected, Failed atomic.Uint64
	AcceptedBytes                        atomic.Uint64
}

// Server is one SMTP listener. Create with New, run with Serve, stop with
// Shutdown or Close.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	srv     *gosmtp.Server
	Stats   Stats

	// perAddr counts sessions per client address; unknownRcpts counts
	// unknown recipients per client address (tarpit.go).
	perAddr      *throttle.Conns
	unknownRcpts *throttle.Throttle
	// stop is closed by Shutdown and Close: it ends tarpit waits.
	stop     chan struct{}
	stopOnce sync.Once

	mu       sync.Mutex
	lim      Limits // the live share of cfg; SetLimits
	sessions map[*session]struct{}
	conns    int
	buckets  map[string]*bucket
	draining bool
}

// lineSlackBytes is how far past MaxMessageBytes go-smtp's line limit lies:
// the dot-stuffing and read-ahead of a message at the size limit.
const lineSlackBytes = 1 << 20

// New returns a listener; Serve starts it.
func New(cfg Config, b Backend, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, lim: cfg.limits(), backend: b, log: log, sessions: map[*session]struct{}{}, buckets: map[string]*bucket{},
		perAddr:      throttle.NewConns(cfg.MaxSessionsPerIP),
		unknownRcpts: throttle.New(cfg.UnknownRcptWindow, cfg.MaxUnknownRcptsPerIP, maxBuckets),
		stop:         make(chan struct{})}
	gs := gosmtp.NewServer(s)
	gs.Domain = cfg.Hostname
	gs.MaxMessageBytes = cfg.MaxMessageBytes
	// go-smtp's line limit applies to DATA lines too, and once a line
	// passes it the connection is cut mid-message (554, then 500 and a
	// close the client sees as a reset). Above the message limit it never
	// applies within a message: an oversized message is read to its end
	// and refused with 552. It still bounds a command line's memory.
	gs.MaxLineLength = int(min(cfg.MaxMessageBytes+lineSlackBytes, math.MaxInt32))
	// RFC 6531: internationalised addresses and UTF-8 headers. Without it
	// Postfix bounces such mail (5.6.7 "SMTPUTF8 is required").
	gs.EnableSMTPUTF8 = true
	gs.MaxRecipients = cfg.MaxRecipients
	gs.ReadTimeout = cfg.ReadTimeout
	gs.WriteTimeout = cfg.WriteTimeout
	gs.ErrorLog = slogPrinter{log}
	if cfg.TLS != nil {
		// GetConfigForClient is consulted at each handshake, so replaced
		// certificates take effect without a restart.
		gs.TLSConfig = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return cfg.TLS(), nil },
		}
	}
	s.srv = gs
	return s, nil
}

// Serve accepts sessions on l until Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(drainListener{Listener: l, s: s})
	if errors.Is(err, gosmtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, sends 421 to idle sessions, lets transactions in
// flight finish (their sessions then get 421) and waits for all sessions to
// end until ctx is done, after which it closes what remains.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopTarpits()
	s.mu.Lock()
	s.draining = true
	for ss := range s.sessions {
		ss.drain()
	}
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, gosmtp.ErrServerClosed) {
		err = nil
	}
	if err != nil {
		s.srv.Close()
	}
	return err
}

// Close closes the listener and every session at once.
func (s *Server) Close() error {
	s.stopTarpits()
	err := s.srv.Close()
	if errors.Is(err, gosmtp.ErrServerClosed) {
		return nil
	}
	return err
}

// NewSession implements gosmtp.Backend.
func (s *Server) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	dc, _ := c.Conn().(*drainConn)
	remote := c.Conn().RemoteAddr()
	ss := &session{srv: s, conn: c, dc: dc, remote: remote, addrKey: throttle.AddrKey(remote)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return nil, errShuttingDown
	}
	s.sessions[ss] = struct{}{}
	s.Stats.Sessions.Add(1)
	return ss, nil
}

func (s *Server) endSession(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, ss)
}

// admit counts a new connection from remote against the limits and
// returns the client address's key (throttle.Key: an IPv4 address or an
// IPv6 /64, so one subscriber's /64 cannot walk around the per-address
// cap); false means refuse it.
func (s *Server) admit(remote net.Addr) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns >= s.lim.MaxSessions {
		return "", false
	}
	key, ok := s.perAddr.Acquire(remote)
	if !ok {
		return key, false
	}
	if s.lim.RatePerIP > 0 && !s.takeToken(key, time.Now()) {
		s.perAddr.Release(key)
		return key, false
	}
	s.conns++
	return key, true
}

// bucket is one client address's connection-rate token bucket.
type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets bounds the rate table; full buckets are dropped first.
const maxBuckets = 100000

func (s *Server) takeToken(ip string, now time.Time) bool {
	burst := float64(s.lim.RatePerIP)
	b := s.buckets[ip]
	if b == nil {
		if len(s.buckets) >= maxBuckets {
			for k, v := range s.buckets {
				if v.tokens+now.Sub(v.at).Minutes()*burst >= burst {
					delete(s.buckets, k)
				}
			}
		}
		b = &bucket{tokens: burst, at: now}
		s.buckets[ip] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.at).Minutes()*burst)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (s *Server) release(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns--
	s.perAddr.Release(ip)
}

func (s *Server) observe(result string, r *gosmtp.SMTPError, since time.Time) {
	if s.cfg.Observe == nil {
		return
	}
	reason := ""
	if r != nil {
		reason = fmt.Sprintf("%d.%d.%d", r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2])
	}
	s.cfg.Observe(result, reason, time.Since(since))
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

var (
	// RFC 5321 4.2.2 / RFC 3463 X.3.2: system not accepting messages.
	errShuttingDown = &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
)

// reply maps backend errors to SMTP replies.
func reply(err error) *gosmtp.SMTPError {
	var se *gosmtp.SMTPError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, ErrUnknownMailbox):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such mailbox here"}
	case errors.Is(err, ErrNotYet):
		return &gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 1, 1}, Message: "Mailbox not known yet, try again later"}
	case errors.Is(err, ErrNotHosted):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Relaying denied: domain not hosted here"}
	case errors.Is(err, ErrQuota):
		return &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 2, 2}, Message: "Mailbox over quota"}
	case errors.Is(err, ErrUnavailable):
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Storage unavailable, try again later"}
	default:
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Local error, try again later"}
	}
}

type session struct {
	srv     *Server
	conn    *gosmtp.Conn
	dc      *drainConn
	remote  net.Addr
	addrKey string // throttle.AddrKey(remote)
	unknown int    // unknown recipients named in this session (tarpit.go)

	mu     sync.Mutex
	busy   bool // between MAIL and the end of DATA or RSET
	from   string
	utf8   bool // MAIL had SMTPUTF8
	rcpts  []string
	mailAt time.Time
}

// errNonASCII refuses a non-ASCII address in a transaction without the
// SMTPUTF8 parameter: RFC 6531 section 3.5, 553 "mailbox name not
// allowed" with X.6.7 "Non-ASCII addresses not permitted for that
// sender/recipient" (RFC 5248 registry).
var errNonASCII = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII address requires SMTPUTF8"}

func (ss *session) drain() {
	ss.mu.Lock()
	busy := ss.busy
	ss.mu.Unlock()
	if !busy && ss.dc != nil {
		ss.dc.drain()
	}
}

func (ss *session) setBusy(b bool) {
	ss.mu.Lock()
	ss.busy = b
	ss.mu.Unlock()
	if !b && ss.dc != nil && ss.srv.isDraining() {
		ss.dc.drain()
	}
}

func (ss *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if ss.srv.isDraining() {
		return errShuttingDown
	}
	utf8 := opts != nil && opts.UTF8
	if !utf8 && !mailaddr.IsASCII(from) {
		return errNonASCII
	}
	ss.setBusy(true)
	ss.from = from
	ss.utf8 = utf8
	ss.rcpts = ss.rcpts[:0]
	ss.mailAt = time.Now()
	return nil
}

func (ss *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	to = strings.TrimSpace(to)
	if !ss.utf8 && !mailaddr.IsASCII(to) {
		return errNonASCII
	}
	// One spelling per mailbox (U-label or A-label domain, NFC local
	// part); what does not parse goes on lowered, for the backend to
	// refuse as it always did (RCPT TO:<postmaster> has no domain).
	addr := mailaddr.Key(to)
	if addr == "" {
		addr = mailaddr.ASCIILower(to)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ss.srv.cfg.DeliverTimeout)
	defer cancel()
	if err := ss.srv.backend.CheckRecipient(ctx, addr); err != nil {
		r := reply(err)
		ss.srv.log.Info("smtp: recipient refused", "remote", ss.remote.String(), "from", ss.from, "rcpt", addr, "code", r.Code, "reason", err.Error())
		ss.srv.Stats.Rejected.Add(1)
		ss.srv.observe("rejected", r, ss.mailAt)
		if errors.Is(err, ErrUnknownMailbox) {
			if bye := ss.unknownRecipient(); bye != nil {
				return bye
			}
		}
		return r
	}
	for _, r := range ss.rcpts {
		if r == addr {
			return nil // RFC 5321 allows duplicates; deliver once
		}
	}
	ss.rcpts = append(ss.rcpts, addr)
	return nil
}

// dataBufferSize is the initial DATA buffer: most mail fits.
const dataBufferSize = 16 << 10

func (ss *session) Data(r io.Reader) error {
	defer ss.setBusy(false)
	// One buffer for the common message size instead of io.ReadAll's
	// growth from 512 bytes (a 4 KiB message allocated 17 KB), reused
	// across messages (package bufpool): withReceived copies the message
	// out, and nothing keeps raw past this function.
	buf := bytes.NewBuffer(bufpool.Get(dataBufferSize))
	defer func() { bufpool.Put(buf.Bytes()) }()
	_, err := buf.ReadFrom(r)
	raw := buf.Bytes()
	if err != nil {
		ss.srv.Stats.Rejected.Add(1)
		ss.srv.observe("rejected", reply(err), ss.mailAt)
		ss.srv.log.Info("smtp: data refused", "remote", ss.remote.String(), "from", ss.from, "err", err.Error())
		return err // ErrDataTooLarge: 552 5.3.4
	}
	_, isTLS := ss.conn.TLSConnectionState()
	m := &Message{
		ID:     ss.srv.backend.NewID(),
		From:   ss.from,
		To:     append([]string(nil), ss.rcpts...),
		Helo:   ss.conn.Hostname(),
		Remote: ss.remote,
		TLS:    isTLS,
		UTF8:   ss.utf8,
	}
	m.Data = withReceived(raw, m, ss.srv.cfg.Hostname, time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), ss.srv.cfg.DeliverTimeout)
	defer cancel()
	if err := ss.srv.backend.Deliver(ctx, m); err != nil {
		r := reply(err)
		ss.srv.Stats.Failed.Add(1)
		ss.srv.observe("failed", r, ss.mailAt)
		ss.srv.log.Warn("smtp: delivery failed", "id", m.ID, "remote", ss.remote.String(), "from", m.From, "rcpts", m.To, "code", r.Code, "err", err.Error())
		return r
	}
	ss.srv.Stats.Accepted.Add(1)
	ss.srv.Stats.AcceptedBytes.Add(uint64(len(m.Data)))
	ss.srv.observe("accepted", nil, ss.mailAt)
	ss.srv.log.Info("smtp: accepted", "id", m.ID, "remote", ss.remote.String(), "from", m.From, "rcpts", m.To,
		"size", len(m.Data), "ms", time.Since(ss.mailAt).Milliseconds())
	// RFC 5321 4.2: text after the code is free; RFC 3463 X.0.0 success.
	return &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + m.ID}
}

func (ss *session) Reset() {
	ss.from = ""
	ss.utf8 = false
	ss.rcpts = ss.rcpts[:0]
	ss.setBusy(false)
}

func (ss *session) Logout() error {
	ss.srv.endSession(ss)
	return nil
}

// withReceived normalises line ends to CRLF and prepends our trace header
// (RFC 5321 4.4).
func withReceived(raw []byte, m *Message, host string, now time.Time) []byte {
	var b bytes.Buffer
	b.Grow(len(raw) + 256)
	helo := m.Helo
	if helo == "" {
		helo = "unknown"
	}
	// RFC 3848 protocol types; RFC 6531 section 4.3 names the SMTPUTF8
	// ones.
	with := "ESMTP"
	switch {
	case m.UTF8 && m.TLS:
		with = "UTF8SMTPS"
	case m.UTF8:
		with = "UTF8SMTP"
	case m.TLS:
		with = "ESMTPS"
	}
	// Appended piece by piece: fmt was a visible share of each message.
	b.WriteString("Received: from ")
	b.WriteString(sanitize(helo))
	b.WriteString(" (")
	b.WriteString(addrLiteral(m.Remote))
	b.WriteString(")\r\n\tby ")
	b.WriteString(host)
	b.WriteString(" (mailarray) with ")
	b.WriteString(with)
	b.WriteString(" id ")
	b.WriteString(m.ID)
	if len(m.To) == 1 {
		b.WriteString("\r\n\tfor <")
		b.WriteString(m.To[0])
		b.WriteString(">")
	}
	b.WriteString("; ")
	var stamp [64]byte
	b.Write(now.UTC().AppendFormat(stamp[:0], time.RFC1123Z))
	b.WriteString("\r\n")
	appendCRLF(&b, raw)
	return b.Bytes()
}

// appendCRLF copies raw turning bare LF into CRLF and ending it with CRLF.
func appendCRLF(b *bytes.Buffer, raw []byte) {
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			b.Write(raw)
			b.WriteString("\r\n")
			return
		}
		line := raw[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		b.Write(line)
		b.WriteString("\r\n")
		raw = raw[i+1:]
	}
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' {
			return '_'
		}
		return r
	}, s)
}

func addrLiteral(a net.Addr) string {
	if a == nil {
		return "unknown"
	}
	return "[" + hostOf(a) + "]"
}

func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// slogPrinter adapts go-smtp's ErrorLog to slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	p.log.Debug("smtp: " + fmt.Sprintf(format, v...))
}
func (p slogPrinter) Println(v ...any) { p.log.Debug("smtp: " + fmt.Sprint(v...)) }

// Sessions is the number of sessions open now.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}
