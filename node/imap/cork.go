package imap

// One write per batch of FETCH responses.
//
// imapserver flushes its 4 KiB bufio.Writer at the end of every response
// line, and a literal larger than that buffer goes to the socket as a
// write of its own: a FETCH of 1:* BODY[] cost about two write syscalls
// per message, a quarter of the serving node's CPU (docs/performance.md,
// "Retrieval"). corkConn sits under imapserver (and under TLS, so records
// are coalesced too): while a FETCH runs, the session corks it and writes
// gather in one buffer, sent when corkFlushBytes fill it, when the FETCH
// waits for a copy from another node, and when the FETCH ends; a write of
// corkFlushBytes or more (a large message's literal) goes out at once
// after them, in the same writev, without being copied into the buffer. Other
// commands are not corked: their replies go out as imapserver flushes them.

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

const (
	// corkFlushBytes is what a corked connection gathers before writing:
	// about a dozen 4.5 KiB messages per write, under the loopback and
	// typical socket buffer sizes so one write rarely blocks part way.
	corkFlushBytes = 64 << 10
	// corkWriteTimeout bounds one write of gathered responses, as
	// imapserver's own response timeout bounds each of its writes.
	corkWriteTimeout = 30 * time.Second
)

// corkConn is a net.Conn whose writes can be gathered (cork) and sent
// together (uncork). Uncorked, it is the connection. Its mutex makes
// writes from another goroutine (imapserver's Bye at shutdown) safe
// against a corked FETCH's. Close is the connection's: it does not send
// what was gathered, so a response cut there is cut as by any closed
// connection (a BYE written while a FETCH was corked goes with the rest of
// the FETCH), and Close never waits behind a write to a client that
// stopped reading.
type corkConn struct {
	net.Conn

	mu     sync.Mutex
	corked bool
	buf    []byte
	err    error // the first failed write: sticky, every later write fails
}

var _ net.Conn = (*corkConn)(nil)

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.corked {
		return c.Conn.Write(p)
	}
	if len(p) >= corkFlushBytes {
		// A large literal (an attachment) goes out with what was
		// gathered in one writev, not copied into the buffer first:
		// copying it grew the buffer to its size, a cleared allocation
		// dropped again at uncork, for no fewer syscalls.
		if err := c.writeLocked(c.buf, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= corkFlushBytes {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// SetWriteDeadline passes through uncorked. Corked, imapserver's deadlines
// (four per FETCH response) apply to writes that do not happen then; each
// gathered write sets its own (flushLocked), so they are dropped.
func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	corked := c.corked
	c.mu.Unlock()
	if corked {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets the read deadline, and the write deadline as
// SetWriteDeadline does.
func (c *corkConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// corkBufs holds the buffers corked connections gather in, between
// FETCHes: a session's own grew by doubling to twice corkFlushBytes in
// every FETCH of a new connection (clients that connect, fetch and leave),
// a quarter of a megabyte of garbage each, and an idle session held it.
// Writes under corkFlushBytes are appended to less than corkFlushBytes
// gathered, so a buffer of twice that never grows.
var corkBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 2*corkFlushBytes)
	return &b
}}

// cork starts gathering writes.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	if c.buf == nil {
		c.buf = (*corkBufs.Get().(*[]byte))[:0]
	}
	c.mu.Unlock()
}

// flush sends what was gathered, staying corked.
func (c *corkConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

// uncork sends what was gathered and stops gathering. The write deadline
// is left clear, as imapserver leaves it between responses.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.flushLocked()
	c.corked = false
	if c.err == nil && cap(c.buf) == 2*corkFlushBytes {
		// Sent (on an error it may not be: the buffer is dropped).
		b := c.buf[:0]
		corkBufs.Put(&b)
	}
	c.buf = nil
	return err
}

func (c *corkConn) flushLocked() error {
	return c.writeLocked(c.buf, nil)
}

// writeLocked writes gathered (the buffer's bytes) then p, under a
// deadline of its own, and empties the buffer.
func (c *corkConn) writeLocked(gathered, p []byte) error {
	if c.err != nil {
		return c.err
	}
	if len(gathered)+len(p) == 0 {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(time.Now().Add(corkWriteTimeout)); err != nil {
		c.err = err
		return err
	}
	var err error
	if len(p) == 0 {
		_, err = c.Conn.Write(gathered)
	} else {
		bufs := net.Buffers{gathered, p} // writev on a TCP connection
		_, err = bufs.WriteTo(c.Conn)
	}
	c.buf = c.buf[:0]
	if err != nil {
		c.err = err
		return err
	}
	// Between writes no deadline is armed, as imapserver leaves it.
	if err := c.Conn.SetWriteDeadline(time.Time{}); err != nil {
		c.err = err
	}
	return c.err
}

// corkOf finds the corkConn under an imapserver connection: the
// connection itself, or the one under its TLS (implicit TLS, or after
// STARTTLS). nil when the connection was not accepted by this server's
// listeners (tests that drive imapserver directly).
func corkOf(nc net.Conn) *corkConn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	cc, _ := nc.(*corkConn)
	return cc
}

// corkListener wraps every accepted connection in a corkConn and, with a
// TLS config, then in TLS (implicit TLS: imapserver sees a *tls.Conn, as
// it must to count the connection as secure).
type corkListener struct {
	net.Listener
	tls *tls.Config
}

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	var nc net.Conn = &corkConn{Conn: c}
	if l.tls != nil {
		nc = tls.Server(nc, l.tls)
	}
	return nc, nil
}
