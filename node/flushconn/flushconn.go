// Package flushconn coalesces a line protocol server's replies into fewer
// write(2) calls without changing the server: a Conn holds what the server
// writes and sends it all when the server next reads from the connection
// (or closes it).
//
// A server of a request-reply protocol reads from its connection only
// when it needs more input: its buffered reader has no complete command
// left. Until then the client has sent commands it has not had replies to
// (RFC 2920 pipelining), so holding those replies delays nothing the
// client waits for: it waits for them all. Once the buffered input is used
// up the server reads, and the Conn writes the replies first, in one call,
// before the read can block. go-smtp, through net/textproto, flushes each
// reply line as its own write: a pipelined MAIL, RCPT, DATA group is three
// writes, a multi-line EHLO reply one per line; through a Conn each is one.
//
// A reply is never held while the server waits for anything but the
// client's input only if the server reads (or closes) soon after each
// group of replies. A server that writes, then waits on something else
// (a slow backend) before reading, holds that reply until the wait ends:
// for a reply the client waits for, it must be written after the wait.
package flushconn

import (
	"net"
	"sync"
)

// maxHeld bounds the bytes held before they are written anyway; a write of
// at least this size goes out at once, after what was held. A protocol's
// replies are far smaller; past it coalescing would save nothing.
const maxHeld = 4 << 10

// held recycles hold buffers. A Conn takes one at its first held write and
// gives it back at each flush, so an idle session holds none and one
// connection per message does not allocate one per message.
var held = sync.Pool{New: func() any { b := make([]byte, 0, maxHeld); return &b }}

// Conn is a net.Conn whose writes are held until the next Read, Flush,
// CloseWrite or Close. Deadlines pass through to the wrapped conn: held
// bytes are written under the write deadline in force when they are
// flushed, which is the last one set before a write (as a server sets it
// before each reply). Write reports an earlier flush's error.
type Conn struct {
	net.Conn
	// mu guards buf and err, and lets one write out at a time. A channel,
	// not a sync.Mutex, as peer.peerStream's wlock: in the simulator a
	// goroutine waiting on a mutex would stop the clock (docs/design.md),
	// and the simulated nodes run this code.
	mu  chan struct{}
	buf *[]byte // held bytes, nil while none
	err error   // the first write error; the connection is unusable after it
}

// New wraps c.
func New(c net.Conn) *Conn { return &Conn{Conn: c, mu: make(chan struct{}, 1)} }

func (c *Conn) lock()   { c.mu <- struct{}{} }
func (c *Conn) unlock() { <-c.mu }

func (c *Conn) tryLock() bool {
	select {
	case c.mu <- struct{}{}:
		return true
	default:
		return false
	}
}

// Write holds b, writing what was held first if b would not fit.
func (c *Conn) Write(b []byte) (int, error) {
	c.lock()
	defer c.unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.buf != nil && len(*c.buf)+len(b) > maxHeld {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	if len(b) >= maxHeld {
		n, err := c.Conn.Write(b)
		c.err = err
		return n, err
	}
	if c.buf == nil {
		c.buf = held.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, b...)
	return len(b), nil
}

// Read writes what is held, then reads: the server needs more input, and
// the client may be waiting for the replies before it sends any.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// Flush writes what is held.
func (c *Conn) Flush() error {
	c.lock()
	defer c.unlock()
	return c.flushLocked()
}

func (c *Conn) flushLocked() error {
	if c.buf == nil {
		return c.err
	}
	if c.err == nil && len(*c.buf) > 0 {
		_, c.err = c.Conn.Write(*c.buf)
	}
	*c.buf = (*c.buf)[:0]
	held.Put(c.buf)
	c.buf = nil
	return c.err
}

// CloseWrite writes what is held, then half-closes the connection when
// the wrapped conn can (a TCP conn); otherwise it only flushes.
func (c *Conn) CloseWrite() error {
	if err := c.Flush(); err != nil {
		return err
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close writes what is held and closes the connection. When another
// goroutine is in the middle of a write (a flush blocked on a client that
// does not read, and a shutdown closing every session), it closes at once,
// which ends that write, rather than wait for the write's deadline: what
// was held is then lost with the connection, as an unsent reply is when a
// session is closed under it.
func (c *Conn) Close() error {
	if c.tryLock() {
		c.flushLocked()
		c.unlock()
	}
	return c.Conn.Close()
}
