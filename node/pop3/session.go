package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

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
	s.log = srv.log.With("session", srv.nextID.Add(1), "remote", s.remote.String())
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
		s.errLine("STLS required before authentication")
		return false
	}
	s.user = args[0]
	s.ok("send PASS")
	return false
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
		s.errLine("STLS required before authentication")
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
		s.log.Warn("pop3: login throttled", "user", user, "addr", s.throttleKey)
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
		s.log.Warn("pop3: authentication failed", "user", user, "addr", s.throttleKey)
		return s.failedLogin("[AUTH] invalid user name or password")
	case errors.Is(err, ErrInUse):
		s.srv.throttle.Succeeded(s.throttleKey) // the password was right
		s.log.Info("pop3: maildrop in use", "user", user)
		s.errLine("[IN-USE] maildrop already locked by another session")
		return false
	case err != nil:
		s.srv.throttle.Succeeded(s.throttleKey) // not a guess: nothing was checked
		s.log.Error("pop3: login failed", "user", user, "err", err)
		s.errLine("[SYS/TEMP] temporary failure, try again later")
		return false
	}

	s.srv.throttle.Succeeded(s.throttleKey)
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
	s.log.Info("pop3: login", "user", user, "messages", s.liveCount, "octets", s.liveSize)
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

func (s *session) cmdStat(args []string) bool {
	if len(args) != 0 {
		return s.badCommand("syntax: STAT")
	}
	// RFC 1939 §5: "+OK nn mm", deleted messages not counted.
	s.bw.WriteString("+OK ")
	s.writeInt(int64(s.liveCount))
	s.bw.WriteByte(' ')
	s.writeInt(s.liveSize)
	s.bw.WriteString("\r\n")
	return false
}

func (s *session) cmdList(args []string) bool {
	switch len(args) {
	case 0:
		s.okCount("", s.liveCount, s.liveSize)
		for i := range s.msgs {
			if s.msgs[i].deleted {
				continue
			}
			s.writeInt(int64(i + 1))
			s.bw.WriteByte(' ')
			s.writeInt(s.msgs[i].size)
			s.bw.WriteString("\r\n")
		}
		s.line(".")
		return false
	case 1:
		n, quit, ok := s.msgArg(args[0])
		if !ok {
			return quit
		}
		s.bw.WriteString("+OK ")
		s.writeInt(int64(n))
		s.bw.WriteByte(' ')
		s.writeInt(s.msgs[n-1].size)
		s.bw.WriteString("\r\n")
		return false
	}
	return s.badCommand("syntax: LIST [msg]")
}

// cmdUidl lists unique ids (RFC 1939 §7).
func (s *session) cmdUidl(args []string) bool {
	switch len(args) {
	case 0:
		s.ok("unique-id listing follows")
		for i := range s.msgs {
			if s.msgs[i].deleted {
				continue
			}
			s.writeInt(int64(i + 1))
			s.bw.WriteByte(' ')
			s.bw.WriteString(s.msgs[i].id)
			s.bw.WriteString("\r\n")
		}
		s.line(".")
		return false
	case 1:
		n, quit, ok := s.msgArg(args[0])
		if !ok {
			return quit
		}
		s.bw.WriteString("+OK ")
		s.writeInt(int64(n))
		s.bw.WriteByte(' ')
		s.bw.WriteString(s.msgs[n-1].id)
		s.bw.WriteString("\r\n")
		return false
	}
	return s.badCommand("syntax: UIDL [msg]")
}

func (s *session) cmdRetr(args []string) bool {
	if len(args) != 1 {
		return s.badCommand("syntax: RETR msg")
	}
	n, quit, ok := s.msgArg(args[0])
	if !ok {
		return quit
	}
	return s.send(n, -1)
}

// cmdTop sends the headers, the blank line and the first lines of the body
// (RFC 1939 §7).
func (s *session) cmdTop(args []string) bool {
	if len(args) != 2 {
		return s.badCommand("syntax: TOP msg n")
	}
	n, quit, ok := s.msgArg(args[0])
	if !ok {
		return quit
	}
	lines, ok := parseNumber(args[1])
	if !ok {
		return s.badCommand("invalid line count")
	}
	return s.send(n, lines)
}

// send writes message n as a multi-line response: whole if topLines < 0,
// else as TOP does.
func (s *session) send(n, topLines int) bool {
	m := &s.msgs[n-1]
	ctx, cancel := context.WithCancel(s.srv.ctx)
	defer cancel()
	// BackendTimeout bounds Open; the body is read under ctx, which only the
	// session's end (or Server.Close) cancels, since a big message to a slow
	// client may take long and WriteTimeout already bounds each write.
	t := time.AfterFunc(s.cfg.BackendTimeout, cancel)
	rc, err := s.drop.Open(ctx, m.id)
	t.Stop()
	if err != nil {
		s.log.Error("pop3: open message", "user", s.authUser, "id", m.id, "err", err)
		s.errLine("[SYS/TEMP] cannot read message, try again later")
		return false
	}
	defer rc.Close()

	if topLines < 0 {
		s.bw.WriteString("+OK ")
		s.writeInt(m.size)
		s.bw.WriteString(" octets\r\n")
	} else {
		s.ok("top of message follows")
	}
	if s.copyBuf == nil {
		s.copyBuf = make([]byte, copyBufferBytes)
	}
	d := dotWriter{w: s.bw, bol: true, top: topLines >= 0, bodyLeft: topLines}
	_, err = io.CopyBuffer(&d, rc, s.copyBuf)
	if err != nil && !errors.Is(err, errTopDone) {
		// The +OK is out: the only honest way to fail now is to drop the
		// connection, so the client cannot take a truncated message for a
		// whole one.
		if d.werr != nil {
			s.reason = "write: " + d.werr.Error()
		} else {
			s.log.Error("pop3: read message", "user", s.authUser, "id", m.id, "err", err)
			s.reason = "backend read failed"
		}
		return true
	}
	d.finish()
	if topLines < 0 {
		s.retrieved++
		s.retrievedBytes += d.n
		if d.n != m.size {
			s.log.Warn("pop3: message size differs from listing", "user", s.authUser, "id", m.id,
				"listed", m.size, "sent", d.n)
		}
	}
	return false
}

func (s *session) cmdDele(args []string) bool {
	if len(args) != 1 {
		return s.badCommand("syntax: DELE msg")
	}
	n, ok := parseNumber(args[0])
	if !ok {
		return s.badCommand("invalid message number")
	}
	if n < 1 || n > len(s.msgs) {
		s.errLine("no such message")
		return false
	}
	m := &s.msgs[n-1]
	if m.deleted {
		s.bw.WriteString("-ERR message ")
		s.writeInt(int64(n))
		s.bw.WriteString(" already deleted\r\n")
		return false
	}
	m.deleted = true
	s.liveCount--
	s.liveSize -= m.size
	s.bw.WriteString("+OK message ")
	s.writeInt(int64(n))
	s.bw.WriteString(" deleted\r\n")
	return false
}

func (s *session) cmdRset(args []string) bool {
	if len(args) != 0 {
		return s.badCommand("syntax: RSET")
	}
	s.liveCount, s.liveSize = len(s.msgs), 0
	for i := range s.msgs {
		s.msgs[i].deleted = false
		s.liveSize += s.msgs[i].size
	}
	s.okCount("maildrop has ", s.liveCount, s.liveSize)
	return false
}

// update is the RFC 1939 §6 UPDATE state: remove the deleted messages, then
// answer and end the session. If the commit fails the answer is "-ERR
// [SYS/TEMP] some deleted messages not removed" (RFC 1939 section 6: some
// may have been, see Maildrop.Commit).
func (s *session) update() bool {
	var deleted []string
	for i := range s.msgs {
		if s.msgs[i].deleted {
			deleted = append(deleted, s.msgs[i].id)
		}
	}
	var err error
	if len(deleted) > 0 {
		ctx, cancel := context.WithTimeout(s.srv.ctx, s.cfg.BackendTimeout)
		err = s.drop.Commit(ctx, deleted)
		cancel()
	}
	// Release the lock before answering: a client that reconnects as soon
	// as it reads the answer must not find its maildrop still locked.
	s.closeDrop()
	if err != nil {
		s.log.Error("pop3: commit deletions", "user", s.authUser, "deleted", len(deleted), "err", err)
		s.reason = "commit failed"
		s.errLine("[SYS/TEMP] some deleted messages not removed")
		return true
	}
	s.log.Info("pop3: update", "user", s.authUser, "deleted", len(deleted))
	s.bw.WriteString("+OK signing off (")
	s.writeInt(int64(s.liveCount))
	s.bw.WriteString(" messages left)\r\n")
	return true
}

// msgArg resolves a message-number argument to a visible message. On
// failure it has answered, and quit says whether the session ends.
func (s *session) msgArg(arg string) (n int, quit, ok bool) {
	n, ok = parseNumber(arg)
	if !ok {
		return 0, s.badCommand("invalid message number"), false
	}
	// RFC 1939 §5: deleted messages are not counted and may not be referred to.
	if n < 1 || n > len(s.msgs) || s.msgs[n-1].deleted {
		s.errLine("no such message")
		return 0, false, false
	}
	return n, false, true
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
	if err := s.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout)); err != nil {
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
