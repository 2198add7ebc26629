package pop3

// The TRANSACTION state (RFC 1939 §5, §7): STAT, LIST, UIDL, RETR, TOP,
// DELE and RSET over the listing PASS loaded, and the UPDATE state (§6),
// which QUIT enters to commit the deletions. NOOP, CAPA and QUIT are
// answered in dispatch (session.go).

import (
	"context"
	"errors"
	"io"
	"time"
)

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

// cmdList gives message sizes (RFC 1939 §5); its listing opens with the
// maildrop's count and size, as STAT's answer does.
func (s *session) cmdList(args []string) bool {
	return s.scanListing(args, "syntax: LIST [msg]",
		func() { s.okCount("", s.liveCount, s.liveSize) },
		func(m *message) { s.writeInt(m.size) })
}

// cmdUidl gives unique ids (RFC 1939 §7).
func (s *session) cmdUidl(args []string) bool {
	return s.scanListing(args, "syntax: UIDL [msg]",
		func() { s.ok("unique-id listing follows") },
		func(m *message) { s.bw.WriteString(m.id) })
}

// scanListing answers LIST and UIDL, which differ only in the first line
// of the listing and the value given for each message: with no argument,
// a multi-line listing of every message not marked deleted; with one, a
// single "+OK msg value" line for that message (RFC 1939 §5 LIST, §7 UIDL).
func (s *session) scanListing(args []string, syntax string, header func(), value func(*message)) bool {
	switch len(args) {
	case 0:
		header()
		for i := range s.msgs {
			if s.msgs[i].deleted {
				continue
			}
			s.scanLine(i+1, value)
		}
		s.line(".")
		return false
	case 1:
		n, quit, ok := s.msgArg(args[0])
		if !ok {
			return quit
		}
		s.bw.WriteString("+OK ")
		s.scanLine(n, value)
		return false
	}
	return s.badCommand(syntax)
}

// scanLine writes "msg value\r\n" for message n (1-based).
func (s *session) scanLine(n int, value func(*message)) {
	s.writeInt(int64(n))
	s.bw.WriteByte(' ')
	value(&s.msgs[n-1])
	s.bw.WriteString("\r\n")
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
