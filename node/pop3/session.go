package pop3

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"mailarray/node/loginlog"
	"mailarray/node/throttle"
)

// state is the RFC 1939 §3 session state. The UPDATE state is entered and
// left inside the QUIT command, so it needs no value of its own.
type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

func (st state) String() string {
	if st == stateTransaction {
		return "transaction"
	}
	return "authorization"
}

// Buffer sizes, per session.
const (
	readBufferBytes  = 4 << 10  // holds a pipelined burst of commands
	writeBufferBytes = 16 << 10 // several 4 KiB messages per syscall when pipelining
	copyBufferBytes  = 32 << 10 // reading message bodies from the backend
)

// maxUIDLBytes is RFC 1939 §7's limit on a unique-id.
const maxUIDLBytes = 70

// errLineTooLong is readLine's answer to a command longer than MaxLineBytes.
var errLineTooLong = errors.New("pop3: line too long")

// message is one entry of the session's maildrop listing. Its number is its
// index + 1 and never changes during the session (RFC 1939 §5).
type message struct {
	id      string
	size    int64
	deleted bool
}

// session is one POP3 connection. It runs on one goroutine; only Server.Close
// touches it from outside, and only by closing raw.
type session struct {
	srv *Server
	cfg *Config
	log *slog.Logger

	raw  net.Conn // the accepted connection
	conn net.Conn // raw, or its TLS wrapper after STLS
	dw   *deadlineWriter
	br   *bufio.Reader
	bw   *bufio.Writer

	remote      net.Addr
	throttleKey string
	secure      bool
	state       state
	user        string // from USER, until the next PASS
	authUser    string // after a successful PASS

	failedLogins int
	badCommands  int

	drop      Maildrop
	msgs      []message
	liveCount int
	liveSize  int64

	retrieved      int
	retrievedBytes int64

	num     []byte // scratch for formatting numbers
	copyBuf []byte // allocated by the first RETR or TOP
	start   time.Time
	reason  string // why the session ended, for the log
}

func newSession(srv *Server, c net.Conn) *session {
	s := &session{
		srv:         srv,
		cfg:         &srv.cfg,
		raw:         c,
		conn:        c,
		remote:      c.RemoteAddr(),
		throttleKey: throttle.AddrKey(c.RemoteAddr()),
		start:       time.Now(),
		num:         make([]byte, 0, 24),
	}
	// remote as a string: a net.Addr would be an object in JSON logs,
	// unlike every other log line's remote.
	s.log = srv.log.With("session", srv.nextID.Add(1), "remote", loginlog.Remote(s.remote))
	s.dw = &deadlineWriter{conn: c, timeout: srv.cfg.WriteTimeout}
	s.br = bufio.NewReaderSize(c, max(readBufferBytes, srv.cfg.MaxLineBytes))
	s.bw = bufio.NewWriterSize(s.dw, writeBufferBytes)
	return s
}

// run serves the session until QUIT, an error, a timeout or Server.Close.
func (s *session) run() {
	_, implicitTLS := s.conn.(*tls.Conn)
	s.log.Info("pop3: session start", "tls", implicitTLS)
	defer s.end()
	if implicitTLS {
		s.secure = true
		if err := s.handshake(s.conn.(*tls.Conn)); err != nil {
			s.reason = "tls handshake: " + err.Error()
			return
		}
	}
	// RFC 1939 §4: the greeting. No <timestamp>: APOP is not offered.
	s.ok(s.cfg.Hostname + " POP3 server ready")
	if err := s.bw.Flush(); err != nil {
		s.reason = "write greeting: " + err.Error()
		return
	}
	for {
		quit := s.step()
		if quit {
			if s.reason == "" {
				s.reason = "quit"
			}
			_ = s.bw.Flush()
			return
		}
		// RFC 2449 §6.6 PIPELINING: answer a burst of commands with as
		// few writes as possible, but never sit on responses while the
		// client waits for them.
		if !s.completeLineBuffered() {
			if err := s.bw.Flush(); err != nil {
				s.reason = "write: " + err.Error()
				return
			}
		}
	}
}

// step reads and answers one command. It reports whether the session ends.
func (s *session) step() (quit bool) {
	line, err := s.readLine()
	switch {
	case errors.Is(err, errLineTooLong):
		return s.badCommand("line too long")
	case isTimeout(err):
		// RFC 1939 §3 autologout: close without entering UPDATE.
		if s.state == stateAuthorization && s.cfg.LoginTimeout > 0 && time.Since(s.start) >= s.cfg.LoginTimeout {
			s.reason = "login timeout"
			s.errLine("autologout; no login in time")
			return true
		}
		s.reason = "idle timeout"
		s.errLine("autologout; idle for too long")
		return true
	case err != nil:
		switch {
		case s.srv.isClosed():
			s.reason = "server closed"
		case errors.Is(err, io.EOF):
			s.reason = "client closed the connection"
		default:
			s.reason = "read: " + err.Error()
		}
		return true
	}
	cmd, args, err := parseCommand(line)
	switch {
	case errors.Is(err, errBadKeyword):
		return s.badCommand("unknown command")
	case err != nil:
		return s.badCommand("syntax error")
	}
	return s.dispatch(cmd, args)
}

// dispatch runs cmd if it is valid in the current state (RFC 1939 §§4-6).
func (s *session) dispatch(cmd string, args []string) (quit bool) {
	switch cmd {
	case cmdQUIT:
		if len(args) != 0 {
			return s.badCommand("syntax: QUIT")
		}
		if s.state == stateTransaction {
			return s.update()
		}
		s.ok("bye")
		return true
	case cmdCAPA:
		return s.cmdCapa(args)
	}
	if s.state == stateAuthorization {
		switch cmd {
		case cmdUSER:
			return s.cmdUser(args)
		case cmdPASS:
			return s.cmdPass(args)
		case cmdSTLS:
			return s.cmdStls(args)
		case cmdSTAT, cmdLIST, cmdUIDL, cmdRETR, cmdTOP, cmdDELE, cmdRSET, cmdNOOP:
			return s.badCommand("command not valid in this state")
		}
		return s.badCommand("unknown command")
	}
	switch cmd {
	case cmdSTAT:
		return s.cmdStat(args)
	case cmdLIST:
		return s.cmdList(args)
	case cmdUIDL:
		return s.cmdUidl(args)
	case cmdRETR:
		return s.cmdRetr(args)
	case cmdTOP:
		return s.cmdTop(args)
	case cmdDELE:
		return s.cmdDele(args)
	case cmdRSET:
		return s.cmdRset(args)
	case cmdNOOP:
		if len(args) != 0 {
			return s.badCommand("syntax: NOOP")
		}
		s.ok("")
		return false
	case cmdUSER, cmdPASS, cmdSTLS:
		return s.badCommand("command not valid in this state")
	}
	return s.badCommand("unknown command")
}

// cmdCapa lists the capabilities (RFC 2449 §5, §6).
func (s *session) cmdCapa(args []string) bool {
	if len(args) != 0 {
		return s.badCommand("syntax: CAPA")
	}
	s.ok("capability list follows")
	s.line("TOP")
	if s.authAllowed() {
		s.line("USER")
	}
	s.line("UIDL")
	s.line("RESP-CODES")     // RFC 2449 §6.4
	s.line("AUTH-RESP-CODE") // RFC 3206 §3
	s.line("PIPELINING")
	s.line("EXPIRE NEVER") // the server itself never deletes mail
	s.line("IMPLEMENTATION mailarray")
	if s.state == stateAuthorization && !s.secure && s.cfg.TLS != nil {
		s.line("STLS") // RFC 2595 §4
	}
	s.line(".")
	return false
}

// badCommand answers a client error. After MaxBadCommands the session ends;
// the notice rides on the same line, so every command still gets exactly
// one response.
func (s *session) badCommand(text string) bool {
	s.badCommands++
	if s.badCommands >= s.cfg.MaxBadCommands {
		s.reason = "too many bad commands"
		s.errLine(text + "; too many errors, closing connection")
		return true
	}
	s.errLine(text)
	return false
}

// end releases the maildrop and logs the session's outcome.
func (s *session) end() {
	s.closeDrop()
	deleted := 0
	for i := range s.msgs {
		if s.msgs[i].deleted {
			deleted++
		}
	}
	s.log.Info("pop3: session end", "user", s.authUser, "state", s.state.String(), "reason", s.reason,
		"duration", time.Since(s.start), "retrieved", s.retrieved, "retrieved_bytes", s.retrievedBytes,
		"marked_deleted", deleted)
}

// closeDrop releases the maildrop's lock, once.
func (s *session) closeDrop() {
	if s.drop == nil {
		return
	}
	if err := s.drop.Close(); err != nil {
		s.log.Error("pop3: close maildrop", "user", s.authUser, "err", err)
	}
	s.drop = nil
}

// readLine returns the next command line, valid until the next read. A line
// longer than MaxLineBytes is consumed up to its LF and reported as
// errLineTooLong. The autologout timer restarts for each command.
func (s *session) readLine() ([]byte, error) {
	deadline := time.Now().Add(s.cfg.IdleTimeout)
	if s.state == stateAuthorization && s.cfg.LoginTimeout > 0 {
		// Not logged in yet: the whole AUTHORIZATION state has one budget,
		// which commands sent meanwhile do not renew.
		if end := s.start.Add(s.cfg.LoginTimeout); end.Before(deadline) {
			deadline = end
		}
	}
	if err := s.conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	line, err := s.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = s.br.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		return nil, errLineTooLong
	}
	if err != nil {
		// A partial line at EOF is not a command.
		return nil, err
	}
	if len(line) > s.cfg.MaxLineBytes {
		return nil, errLineTooLong
	}
	return line, nil
}

// completeLineBuffered reports whether another whole command is already
// buffered, in which case its response can share a write with this one.
func (s *session) completeLineBuffered() bool {
	n := s.br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := s.br.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

// Response writers. Write errors are sticky in the bufio.Writer and surface
// at the next Flush.

func (s *session) line(text string) {
	s.bw.WriteString(text)
	s.bw.WriteString("\r\n")
}

func (s *session) ok(text string) {
	if text == "" {
		s.bw.WriteString("+OK\r\n")
		return
	}
	s.bw.WriteString("+OK ")
	s.line(text)
}

func (s *session) errLine(text string) {
	s.bw.WriteString("-ERR ")
	s.line(text)
}

// okCount writes "+OK <prefix><n> messages (<size> octets)" without fmt.
func (s *session) okCount(prefix string, n int, size int64) {
	s.bw.WriteString("+OK ")
	s.bw.WriteString(prefix)
	s.writeInt(int64(n))
	s.bw.WriteString(" messages (")
	s.writeInt(size)
	s.bw.WriteString(" octets)\r\n")
}

func (s *session) writeInt(v int64) {
	s.num = strconv.AppendInt(s.num[:0], v, 10)
	s.bw.Write(s.num)
}

// deadlineWriter sets a write deadline before each write, so a client that
// stops reading is dropped after WriteTimeout however long the response.
type deadlineWriter struct {
	conn    net.Conn
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if err := w.conn.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return 0, err
	}
	return w.conn.Write(p)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
