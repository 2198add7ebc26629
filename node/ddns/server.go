package ddns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"mailarray/node/env"
)

// ErrServerClosed is returned by ServeUDP and ServeTCP once Close was called.
var ErrServerClosed = errors.New("ddns: server closed")

// Limits of a well-formed query, checked by Answer once it is parsed.
const (
	qrBit = 1 << 15 // QR: the message is a response (RFC 1035 section 4.1.1)
	// adBit is AD in the second flags byte of a packed message (RFC 4035
	// section 3.2.3).
	adBit = 1 << 5
	// A query carries no answer or authority records and at most an OPT
	// and a TSIG record; the limits are miekg/dns's defaults, which leave
	// room for clients that echo one record.
	maxQueryAnswerRRs     = 1
	maxQueryAuthorityRRs  = 1
	maxQueryAdditionalRRs = 2
	// headerBytes is the fixed DNS header; a shorter packet gets no reply.
	headerBytes = 12
)

// Pause after a temporary Accept error, doubling up to the maximum.
// miekg/dns retries at once, which spins a core when, say, file
// descriptors run out.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Server is the authoritative DNS of one node. It answers from the Source's
// state at each query and may serve any number of UDP and TCP sockets.
type Server struct {
	cfg      Config
	src      Source
	ord      Orderer
	strategy string // the Orderer's name, for Stats
	log      *slog.Logger
	stats    stats
	limiter  logLimiter
	zones    atomic.Pointer[Zones] // static records, set by SetZones
	ttl      atomic.Int64          // cfg.TTL, then SetTTL's (a reload)

	mu     sync.Mutex
	closed bool
	runs   map[*run]struct{} // serving sockets, stopped by Close
	// zoneStamp identifies the zone files LoadZones read, for WatchZones.
	zoneStamp string
}

// run is one miekg/dns server on one socket.
type run struct {
	srv     *dns.Server
	started chan struct{} // closed by NotifyStartedFunc
	done    chan struct{} // closed when ActivateAndServe returned
}

// New returns a server answering for src's domains, ordering nodes with ord
// (nil means a RoundRobin). Only e.Log is used (nil e or logger: no logs);
// sockets come from the caller. New panics if cfg fails Validate or src is
// nil: both are programmer errors.
func New(cfg Config, src Source, ord Orderer, e *env.Env) *Server {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("ddns: New with invalid config (validate it first): %v", err))
	}
	if src == nil {
		panic("ddns: New with nil Source")
	}
	if ord == nil {
		ord = &RoundRobin{}
	}
	log := slog.New(slog.DiscardHandler)
	if e != nil && e.Log != nil {
		log = e.Log
	}
	s := &Server{
		cfg:      cfg,
		src:      src,
		ord:      ord,
		strategy: strategyName(ord),
		log:      log.With("component", "ddns"),
		limiter:  logLimiter{perSecond: cfg.LogLimitPerSecond},
		runs:     make(map[*run]struct{}),
	}
	s.ttl.Store(int64(cfg.TTL))
	return s
}

// SetTTL changes the TTL of positive records from the next answer on (a
// configuration reload). Whole seconds, 0..MaxTTL.
func (s *Server) SetTTL(d time.Duration) error {
	c := s.cfg
	c.TTL = d
	if err := c.Validate(); err != nil {
		return err
	}
	s.ttl.Store(int64(d))
	return nil
}

// strategyName is ord's Name() if it has one, else its type.
func strategyName(ord Orderer) string {
	if n, ok := ord.(interface{ Name() string }); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", ord)
}

// ServeUDP answers queries arriving on pc until Close, then returns
// ErrServerClosed. It takes ownership of pc and closes it. pc may be any
// PacketConn (the simulator's too); its read errors must be Temporary()
// when they are timeouts, or the read loop stops and ServeUDP returns the
// error.
func (s *Server) ServeUDP(pc net.PacketConn) error {
	ds := s.dnsServer(true)
	ds.PacketConn = pc
	return s.serve(ds, "udp", pc)
}

// ServeTCP answers queries on connections accepted from l until Close, then
// returns ErrServerClosed. It takes ownership of l and closes it.
func (s *Server) ServeTCP(l net.Listener) error {
	ds := s.dnsServer(false)
	ds.Listener = &tcpListener{Listener: l, writeTimeout: s.cfg.WriteTimeout}
	return s.serve(ds, "tcp", l)
}

func (s *Server) dnsServer(udp bool) *dns.Server {
	idle := s.cfg.TCPIdleTimeout
	maxQueries := s.cfg.MaxTCPQueries
	if maxQueries == 0 {
		maxQueries = -1 // miekg/dns: no limit (its 0 means 128)
	}
	return &dns.Server{
		// Each server has its own handler: never dns.DefaultServeMux, as
		// many nodes share one process in the simulator and in tests.
		Handler:        s.handler(udp),
		UDPSize:        s.cfg.UDPReadBytes,
		ReadTimeout:    s.cfg.ReadTimeout,
		WriteTimeout:   s.cfg.WriteTimeout, // unused by miekg/dns v1.1.73; tcpListener enforces it
		IdleTimeout:    func() time.Duration { return idle },
		MaxTCPQueries:  maxQueries,
		MsgAcceptFunc:  s.accept,
		MsgInvalidFunc: s.invalid,
		DecorateWriter: s.decorateWriter,
	}
}

// serve runs ds until it fails or Close stops it.
func (s *Server) serve(ds *dns.Server, transport string, c io.Closer) error {
	r := &run{srv: ds, started: make(chan struct{}), done: make(chan struct{})}
	ds.NotifyStartedFunc = func() { close(r.started) }
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return ErrServerClosed
	}
	s.runs[r] = struct{}{}
	s.mu.Unlock()

	err := ds.ActivateAndServe()
	close(r.done)

	s.mu.Lock()
	delete(s.runs, r)
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	c.Close() // ActivateAndServe may fail before it owns the socket
	if err == nil {
		err = errors.New("stopped")
	}
	return fmt.Errorf("ddns: serve %s: %w", transport, err)
}

// Close stops every socket the server serves and waits until every
// goroutine serving them has returned. In-flight replies are written first;
// TCP connections are cut at their next read. Later Serve calls return
// ErrServerClosed at once. Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	runs := make([]*run, 0, len(s.runs))
	for r := range s.runs {
		runs = append(runs, r)
	}
	s.mu.Unlock()

	var errs []error
	for _, r := range runs {
		select {
		case <-r.started:
		case <-r.done: // failed before it started: nothing to shut down
			continue
		}
		// Shutdown (not a context with a timeout) because it must not
		// return before the serving goroutines have: reads are unblocked by
		// past deadlines and TCP writes end within WriteTimeout.
		if err := r.srv.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("ddns: close: %w", err))
		}
		<-r.done
	}
	return errors.Join(errs...)
}

// handler answers one parsed query; udp selects the size limit.
func (s *Server) handler(udp bool) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := s.Answer(req)
		if resp == nil {
			return
		}
		if !udp {
			s.keepalive(req, resp)
		}
		size := maxMsgBytes
		if udp {
			size = s.udpSize(req)
		}
		if fit(resp, size) {
			s.stats.truncated.Add(1)
		}
		if err := w.WriteMsg(resp); err != nil {
			s.log.Debug("write reply failed", "remote", w.RemoteAddr().String(), "err", err)
			// A reply that does not pack (say, a name grown past 255 bytes)
			// still owes the client an answer (RFC 1035 section 4.1.1).
			// (Stats keep the rcode Answer chose.)
			w.WriteMsg(new(dns.Msg).SetRcode(req, dns.RcodeServerFailure))
		}
	})
}

// keepalive answers a TCP query's edns-tcp-keepalive option with the idle
// timeout after which the server closes the connection (RFC 7828 section
// 3.3.2), so a client can pipeline on it without racing the close. Over
// UDP the option is ignored (section 3.2.1).
func (s *Server) keepalive(req, resp *dns.Msg) {
	opt, ropt := req.IsEdns0(), resp.IsEdns0()
	if opt == nil || ropt == nil {
		return
	}
	for _, o := range opt.Option {
		if o.Option() == dns.EDNS0TCPKEEPALIVE {
			ropt.Option = append(ropt.Option, &dns.EDNS0_TCP_KEEPALIVE{
				Code:    dns.EDNS0TCPKEEPALIVE,
				Timeout: uint16(s.cfg.TCPIdleTimeout / keepaliveUnit),
			})
			return
		}
	}
}

// udpSize is the largest UDP reply req may get: 512 bytes without EDNS
// (RFC 1035 section 4.2.1), else the client's advertised size (RFC 6891
// section 6.2.5: at least 512), capped by MaxUDPBytes.
func (s *Server) udpSize(req *dns.Msg) int {
	opt := req.IsEdns0()
	if opt == nil {
		return minUDPBytes
	}
	return min(max(int(opt.UDPSize()), minUDPBytes), s.cfg.MaxUDPBytes)
}

// fit cuts resp to size bytes and reports whether TC was set. RFC 2181
// section 9: TC means required records are missing; the additional section
// (MX and NS target addresses) is optional, so losing only some of it does
// not set TC, which would send the client to TCP for nothing.
func fit(resp *dns.Msg, size int) (truncated bool) {
	nAnswer, nNs := len(resp.Answer), len(resp.Ns)
	resp.Truncate(size)
	if resp.Truncated && len(resp.Answer) == nAnswer && len(resp.Ns) == nNs {
		resp.Truncated = false
	}
	return resp.Truncated
}

// accept screens a query by its header before it is parsed. Only responses
// are dropped here: every other check is Answer's, on the parsed query,
// because a reply miekg/dns builds from the header alone echoes the
// query's flags (AD among them, against RFC 6840 section 5.8) and drops
// its OPT record (against RFC 6891 section 7).
func (s *Server) accept(dh dns.Header) dns.MsgAcceptAction {
	if dh.Bits&qrBit != 0 {
		s.stats.ignored.Add(1)
		return dns.MsgIgnore // never answer a response
	}
	return dns.MsgAccept
}

// invalid counts a packet miekg/dns could not parse. It answers FORMERR to
// those with a whole header and drops shorter ones.
func (s *Server) invalid(m []byte, err error) {
	s.stats.malformed.Add(1)
	if len(m) >= headerBytes {
		s.stats.countRcode(dns.RcodeFormatError)
	}
}

// decorateWriter wraps the writer of every reply, so rejected queries are
// logged with the client's address, whether Answer or miekg/dns rejected them.
func (s *Server) decorateWriter(w dns.Writer) dns.Writer { return &logWriter{Writer: w, s: s} }

type logWriter struct {
	dns.Writer
	s *Server
}

var _ dns.Writer = (*logWriter)(nil)

func (lw *logWriter) Write(b []byte) (int, error) {
	if len(b) >= 4 && b[3]&adBit != 0 {
		// Only the FORMERR miekg/dns writes for a query it cannot parse
		// echoes AD. We authenticate nothing (no DNSSEC), so no reply may
		// claim it (RFC 6840 section 5.8).
		b = append([]byte(nil), b...)
		b[3] &^= adBit
	}
	if len(b) >= 4 {
		switch rcode := int(b[3] & 0x0F); rcode {
		case dns.RcodeFormatError, dns.RcodeNotImplemented, dns.RcodeRefused:
			lw.s.logRejected(lw.Writer, b, rcode)
		}
	}
	return lw.Writer.Write(b)
}

// logRejected logs one rejected query at debug level, rate limited.
func (s *Server) logRejected(w dns.Writer, reply []byte, rcode int) {
	if s.cfg.LogLimitPerSecond == 0 || !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	ok, suppressed := s.limiter.allow(time.Now())
	if !ok {
		s.stats.suppressed.Add(1)
		return
	}
	attrs := []any{"rcode", dns.RcodeToString[rcode]}
	if ra, ok := w.(interface{ RemoteAddr() net.Addr }); ok {
		attrs = append(attrs, "remote", ra.RemoteAddr().String())
	}
	var m dns.Msg
	if m.Unpack(reply) == nil && len(m.Question) > 0 {
		attrs = append(attrs, "qname", m.Question[0].Name, "qtype", dns.Type(m.Question[0].Qtype).String())
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed_before", suppressed)
	}
	s.log.Debug("rejected query", attrs...)
}

// tcpListener gives every accepted connection a write deadline and paces
// temporary Accept errors.
type tcpListener struct {
	net.Listener
	writeTimeout time.Duration
	backoff      time.Duration // touched only by the accept loop
}

var _ net.Listener = (*tcpListener)(nil)

func (l *tcpListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Temporary() { //nolint:staticcheck // miekg/dns retries exactly these
			l.backoff = min(max(2*l.backoff, acceptBackoffMin), acceptBackoffMax)
			time.Sleep(l.backoff)
		}
		return nil, err
	}
	l.backoff = 0
	return &writeDeadlineConn{Conn: c, timeout: l.writeTimeout}, nil
}

// writeDeadlineConn bounds each write: miekg/dns sets none on TCP replies,
// so a client that never reads would block a goroutine and Close.
type writeDeadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *writeDeadlineConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
