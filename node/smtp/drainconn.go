package smtp

// The listener and connection wrappers: connection limits at accept time,
// and what lets Shutdown wake idle readers and close sessions gracefully.

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"time"

	"mailarray/node/flushconn"
)

// drainListener enforces the connection limits at accept time and wraps
// accepted conns so Shutdown can wake idle readers.
type drainListener struct {
	net.Listener
	s *Server
}

func (l drainListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, ok := l.s.admit(c.RemoteAddr())
		if !ok {
			l.s.log.Warn("smtp: connection limit", "remote", c.RemoteAddr().String())
			l.s.Stats.Rejected.Add(1)
			// RFC 5321 3.1: a server may refuse a connection with 421 at
			// the greeting; RFC 3463 X.4.5: system congestion.
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write([]byte("421 4.4.5 Too many connections, try again later\r\n"))
			c.Close()
			continue
		}
		// Replies are held until go-smtp reads again (package flushconn):
		// a pipelined group of commands gets its replies in one write
		// instead of one write per reply line.
		return &drainConn{Conn: flushconn.New(c), s: l.s, ip: ip}, nil
	}
}

// drainConn forces reads to time out once draining, which makes go-smtp
// answer 421 4.4.2 and end the session. go-smtp resets the read deadline
// before every command, so the override must be sticky.
type drainConn struct {
	net.Conn
	s        *Server
	ip       string
	draining atomic.Bool
	closed   atomic.Bool
	linger   atomic.Bool // the session ended on a line too long: lingerClose
	hangup   atomic.Bool // close after the next write (tarpit.go)
}

func (c *drainConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		if c.linger.Load() {
			c.lingerClose()
		}
		c.s.release(c.ip)
	}
	return c.Conn.Close()
}

// Bounds of lingerClose.
const (
	lingerTimeout  = 10 * time.Second
	lingerMaxBytes = 1 << 30
)

// tooLongReply starts go-smtp's reply to a line past its MaxLineLength,
// after which it closes the session.
var tooLongReply = []byte("500 5.4.0 ")

// Write notes go-smtp's reply to a line too long (possible only for a
// line longer than the message size limit plus lineSlackBytes, see New):
// the client is still sending it, and closing a socket with unread input
// makes the kernel send a reset, which the client sees instead of the
// reply. Close then lingers.
// Write notes a too-long-line reply (the session then ends with
// lingerClose), and closes the connection once a reply is written after a
// hangup (the 421 that ends a probing session, tarpit.go): go-smtp goes on
// reading after a 421 from a session method, and the read then fails on
// the closed conn.
func (c *drainConn) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, tooLongReply) {
		c.linger.Store(true)
	}
	n, err := c.Conn.Write(b)
	if c.hangup.Load() {
		c.Close()
	}
	return n, err
}

// lingerClose half-closes the connection and discards what the client
// still sends, for a bounded time and size, so that it reads the reply and
// an orderly end rather than a reset (as Postfix and Apache linger).
func (c *drainConn) lingerClose() {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.CopyN(io.Discard, c.Conn, lingerMaxBytes)
}

func (c *drainConn) drain() {
	c.draining.Store(true)
	c.Conn.SetReadDeadline(time.Now())
}

func (c *drainConn) SetReadDeadline(t time.Time) error {
	if c.draining.Load() {
		t = time.Now()
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *drainConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}
