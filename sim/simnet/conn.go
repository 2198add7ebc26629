package simnet

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Connection states of a Conn.
const (
	stateOpen       int32 = iota
	stateConnecting       // client: SYN sent, waiting for SYN-ACK or RST
	stateRefused          // client: RST answered the SYN
	stateAbandoned        // client: gave up waiting
)

// Segment buffers. Every stream Write copies its bytes into a segment that
// the reader consumes; recycling segments by size class took a tenth of
// the simulator's allocation off the garbage collector. A segment's bytes
// past its length are never read, so reused memory needs no clearing.
const (
	segSmall = 2 << 10
	segLarge = 16 << 10
)

var segPools [2]sync.Pool // segSmall, segLarge

// newSegment returns a buffer of length n, from a pool when n fits a class.
func newSegment(n int) []byte {
	i, size := 0, segSmall
	switch {
	case n > segLarge:
		return make([]byte, n)
	case n > segSmall:
		i, size = 1, segLarge
	}
	if bp, _ := segPools[i].Get().(*[]byte); bp != nil {
		return (*bp)[:n]
	}
	return make([]byte, n, size)
}

// freeSegment returns a segment nothing refers to any more to its pool.
func freeSegment(b []byte) {
	switch cap(b) {
	case segSmall:
		segPools[0].Put(&b)
	case segLarge:
		segPools[1].Put(&b)
	}
}

// signal wakes one waiter of ch (capacity 1) without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// pipe is one direction of a stream: the sending end's sequence numbers and
// flow control, the receiving end's buffer, and the driver's reordering
// state.
type pipe struct {
	n    *Net
	key  string
	link *link
	to   *Conn // receiving end

	mu         sync.Mutex
	seq        uint64    // last sequence number sent
	unread     int       // bytes sent and not yet read (flow control)
	finSent    bool      // the sending end closed this direction
	wdl        time.Time // sending end's write deadline
	chunks     [][]byte  // received, unread; chunks[0][off:] is next
	off        int
	fin        bool      // FIN arrived
	rst        bool      // RST arrived
	recvClosed bool      // receiving end closed: arrivals are discarded
	rdl        time.Time // receiving end's read deadline
	lastSent   int64     // when the last data segment to arrive was sent (ns since Net.epoch)
	readable   chan struct{}
	writable   chan struct{}
	rslot      timerSlot // receiving end's deadline timer
	wslot      timerSlot // sending end's deadline timer

	// tail is this pipe's last data segment while it is still pending (sent
	// during the current quiescent step, not yet scheduled): later writes
	// of the same step join it. Guarded by Net.mu.
	tail *event

	lastAt int64 // due time of the last segment scheduled (FIFO); under Net.mu

	// Driver only.
	expect uint64   // next sequence number to apply
	held   []*event // arrived out of order (released after a partition), by seq
}

func newPipe(n *Net, key string, l *link, to *Conn) *pipe {
	return &pipe{n: n, key: key, link: l, to: to, expect: 1,
		readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
}

// Conn is one end of a simulated TCP stream. It buffers like TCP: Write
// returns once the data is queued (up to NetConfig.StreamBufferBytes
// outstanding), the driver delivers it after the link's delay, and Read
// returns io.EOF once the peer's close arrives and the data is consumed.
type Conn struct {
	host         *Host
	laddr, raddr *net.TCPAddr
	in, out      *pipe
	client       bool

	state  atomic.Int32
	closed atomic.Bool
	reset  atomic.Bool   // the peer reset the stream
	done   chan struct{} // closed by Close and abort: wakes every blocked call
	dialc  chan error    // client: handshake outcome, from the driver
}

var _ net.Conn = (*Conn)(nil)

// LastArrivalSent is when the peer sent the last data that arrived on c.
// After a request-reply exchange (an SMTP reply, which the server sends
// nothing after until the client speaks) it is when the reply was sent.
func (c *Conn) LastArrivalSent() time.Time {
	c.in.mu.Lock()
	defer c.in.mu.Unlock()
	return c.host.n.epoch.Add(time.Duration(c.in.lastSent))
}

// newStream creates both ends of a stream from a:aport to b:bport and
// returns the client end; its peer is c.out.to.
func (n *Net) newStream(a *Host, aport int, b *Host, bport int, gen uint64) *Conn {
	la := &net.TCPAddr{IP: a.addr, Port: aport}
	lb := &net.TCPAddr{IP: b.addr, Port: bport}
	cli := &Conn{host: a, laddr: la, raddr: lb, client: true, done: make(chan struct{}), dialc: make(chan error, 1)}
	srv := &Conn{host: b, laddr: lb, raddr: la, done: make(chan struct{})}
	cli.state.Store(stateConnecting)
	// The generation (the dial's number among the host's dials to b:bport)
	// keeps stream keys unique when ports are reused.
	suffix := " #" + strconv.FormatUint(gen, 10)
	as, bs := la.String(), lb.String()
	n.mu.Lock()
	ab := newPipe(n, "tcp "+as+">"+bs+suffix, n.linkLocked(a, b), srv)
	ba := newPipe(n, "tcp "+bs+">"+as+suffix, n.linkLocked(b, a), cli)
	n.mu.Unlock()
	cli.out, cli.in = ab, ba
	srv.out, srv.in = ba, ab
	return cli
}

func (h *Host) dialTCP(ctx context.Context, network string, dst *Host, port int) (net.Conn, error) {
	n := h.n
	raddr := &net.TCPAddr{IP: dst.addr, Port: port}
	h.mu.Lock()
	if h.crashed {
		h.mu.Unlock()
		return nil, opError("dial", network, nil, raddr, sysErr("connect", syscall.ENETDOWN))
	}
	lport, k, ok := h.ephemeralLocked("tcp>"+raddr.String(), h.tcpUsed)
	if !ok {
		h.mu.Unlock()
		return nil, opError("dial", network, nil, raddr, sysErr("connect", syscall.EADDRNOTAVAIL))
	}
	cli := n.newStream(h, lport, dst, port, k)
	h.tcpPorts[lport] = cli
	h.conns[cli] = struct{}{}
	h.mu.Unlock()

	p := cli.out
	p.mu.Lock()
	p.seq++
	n.sendStream(p, evSyn, p.seq, nil)
	p.mu.Unlock()

	timer := time.NewTimer(n.cfg.ConnectTimeout)
	defer timer.Stop()
	var cause error
	select {
	case err := <-cli.dialc:
		if err == nil {
			return cli, nil
		}
		cli.release()
		return nil, opError("dial", network, cli.laddr, raddr, err)
	case <-timer.C:
		cause = dialTimeout{}
	case <-ctx.Done():
		cause = ctx.Err()
		if errors.Is(cause, context.DeadlineExceeded) {
			cause = dialTimeout{}
		}
	case <-cli.done: // the host crashed
		cause = sysErr("connect", syscall.ECONNABORTED)
	}
	if cli.state.CompareAndSwap(stateConnecting, stateAbandoned) {
		cli.abort() // a SYN delivered later meets a reset
		return nil, opError("dial", network, cli.laddr, raddr, cause)
	}
	// The handshake finished as we gave up (same virtual instant).
	if err := <-cli.dialc; err != nil {
		cli.release()
		return nil, opError("dial", network, cli.laddr, raddr, err)
	}
	return cli, nil
}

// acceptSyn runs on the driver when a SYN reaches srv's host.
func (h *Host) acceptSyn(srv *Conn) {
	h.mu.Lock()
	l := h.listeners[srv.laddr.Port]
	if h.crashed || l == nil {
		h.mu.Unlock()
		srv.abort() // RST: connection refused
		return
	}
	h.conns[srv] = struct{}{}
	h.mu.Unlock()
	p := srv.out
	p.mu.Lock()
	// Holding p.mu until the SYN-ACK is queued puts it ahead of anything
	// the server writes once it accepts.
	if !l.push(srv) {
		p.mu.Unlock()
		srv.abort() // backlog full or listener closing: refused
		return
	}
	p.seq++
	h.n.sendStream(p, evSynAck, p.seq, nil)
	p.mu.Unlock()
}

// arrive applies a stream event in sequence order; an event ahead of a gap
// (a partition released it late) is held until the gap fills. It reports
// whether e was kept. Driver only.
func (p *pipe) arrive(e *event) (kept bool) {
	if e.seq != p.expect {
		i, _ := slices.BinarySearchFunc(p.held, e.seq, func(x *event, s uint64) int {
			switch {
			case x.seq < s:
				return -1
			case x.seq > s:
				return 1
			}
			return 0
		})
		p.held = slices.Insert(p.held, i, e)
		return true
	}
	p.apply(e)
	p.expect++
	for len(p.held) > 0 && p.held[0].seq == p.expect {
		h := p.held[0]
		p.held = slices.Delete(p.held, 0, 1)
		p.apply(h)
		p.expect++
		p.n.applied = append(p.n.applied, h)
	}
	return false
}

func (p *pipe) apply(e *event) {
	to := p.to
	switch e.kind {
	case evSyn:
		to.host.acceptSyn(to)
	case evSynAck:
		if to.state.CompareAndSwap(stateConnecting, stateOpen) {
			to.dialc <- nil
		}
	case evRst:
		if to.state.CompareAndSwap(stateConnecting, stateRefused) {
			to.dialc <- sysErr("connect", syscall.ECONNREFUSED)
			return
		}
		p.mu.Lock()
		p.rst = true
		p.chunks, p.off = nil, 0 // a reset discards what was not read
		p.mu.Unlock()
		to.reset.Store(true)
		signal(p.readable)
		signal(to.out.writable)
	case evData:
		p.mu.Lock()
		if !p.recvClosed && !p.rst {
			p.chunks = append(p.chunks, e.data)
			e.data = nil
			p.lastSent = e.sent
		}
		p.mu.Unlock()
		signal(p.readable)
	case evFin:
		p.mu.Lock()
		p.fin = true
		p.mu.Unlock()
		signal(p.readable)
	}
}

func (c *Conn) err(op string, err error) error {
	return opError(op, "tcp", c.laddr, c.raddr, err)
}

func expired(dl time.Time) bool { return !dl.IsZero() && !time.Now().Before(dl) }

// Read reads received data. It returns net.ErrClosed after Close,
// ECONNRESET after the peer's reset, a timeout (os.ErrDeadlineExceeded)
// once the read deadline passes, and io.EOF after the peer's close once the
// data is consumed.
func (c *Conn) Read(b []byte) (int, error) {
	p := c.in
	t, owned := p.rslot.take()
	defer func() { p.rslot.give(t, owned) }()
	for {
		p.mu.Lock()
		switch {
		case c.closed.Load():
			p.mu.Unlock()
			return 0, c.err("read", net.ErrClosed)
		case p.rst:
			p.mu.Unlock()
			return 0, c.err("read", sysErr("read", syscall.ECONNRESET))
		case expired(p.rdl):
			p.mu.Unlock()
			return 0, c.err("read", os.ErrDeadlineExceeded)
		case len(p.chunks) > 0:
			n := 0
			for n < len(b) && len(p.chunks) > 0 {
				k := copy(b[n:], p.chunks[0][p.off:])
				n += k
				if p.off += k; p.off == len(p.chunks[0]) {
					freeSegment(p.chunks[0])
					p.chunks[0] = nil
					p.chunks = p.chunks[1:]
					p.off = 0
				}
			}
			if len(p.chunks) == 0 {
				p.chunks = nil // let the backing array go
			}
			p.unread -= n
			more := len(p.chunks) > 0 || p.fin
			p.mu.Unlock()
			signal(p.writable)
			if more {
				signal(p.readable) // for a concurrent reader
			}
			return n, nil
		case p.fin:
			p.mu.Unlock()
			signal(p.readable)
			return 0, io.EOF
		case len(b) == 0:
			p.mu.Unlock()
			return 0, nil
		}
		dl := p.rdl
		p.mu.Unlock()
		await(p.readable, c.done, dl, &t)
	}
}

// Write queues b for the peer and returns without waiting for it to be
// read, unless more than NetConfig.StreamBufferBytes are outstanding. It
// fails after Close (net.ErrClosed), CloseWrite (EPIPE), the peer's reset
// (ECONNRESET) or its write deadline.
func (c *Conn) Write(b []byte) (int, error) {
	p := c.out
	n := p.n
	t, owned := p.wslot.take()
	defer func() { p.wslot.give(t, owned) }()
	written := 0
	for {
		seg := min(len(b)-written, n.cfg.SegmentBytesMax)
		p.mu.Lock()
		var err error
		switch {
		case c.closed.Load():
			err = net.ErrClosed
		case c.reset.Load():
			err = sysErr("write", syscall.ECONNRESET)
		case p.finSent:
			err = sysErr("write", syscall.EPIPE)
		case expired(p.wdl):
			err = os.ErrDeadlineExceeded
		}
		if err != nil {
			p.mu.Unlock()
			return written, c.err("write", err)
		}
		if seg == 0 {
			p.mu.Unlock()
			return written, nil
		}
		if !p.recvClosed && p.unread > 0 && p.unread+seg > n.cfg.StreamBufferBytes {
			dl := p.wdl
			p.mu.Unlock()
			await(p.writable, c.done, dl, &t)
			continue
		}
		if !n.appendStream(p, b[written:written+seg]) {
			data := newSegment(seg)
			copy(data, b[written:])
			p.seq++
			n.sendStream(p, evData, p.seq, data)
		}
		p.unread += seg
		p.mu.Unlock()
		written += seg
	}
}

// Close closes the conn: blocked and later calls return net.ErrClosed, the
// peer gets a FIN (io.EOF once it has read everything), and data still
// arriving is discarded.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.err("close", net.ErrClosed)
	}
	c.shut(evFin)
	return nil
}

// CloseWrite sends a FIN: the peer reads io.EOF, this end can still read.
func (c *Conn) CloseWrite() error {
	if c.closed.Load() {
		return c.err("close", net.ErrClosed)
	}
	p := c.out
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.finSent && !c.reset.Load() {
		p.finSent = true
		p.seq++
		p.n.sendStream(p, evFin, p.seq, nil)
	}
	return nil
}

// abort closes the conn and resets the stream: the peer's calls fail with
// ECONNRESET (or its connect with ECONNREFUSED).
func (c *Conn) abort() {
	if c.closed.CompareAndSwap(false, true) {
		c.shut(evRst)
	}
}

// release closes the conn without telling the peer (a refused connect).
func (c *Conn) release() {
	if c.closed.CompareAndSwap(false, true) {
		c.shut(0)
	}
}

// shut does the work of closing once; last is the segment sent to the peer
// (evFin, evRst, or 0 for none).
func (c *Conn) shut(last eventKind) {
	close(c.done)
	c.host.forget(c)
	in := c.in
	in.mu.Lock()
	in.recvClosed = true
	in.chunks, in.off = nil, 0
	in.mu.Unlock()
	signal(in.writable) // the peer's writer stops waiting for us to read
	if last == 0 {
		return
	}
	p := c.out
	p.mu.Lock()
	if !c.reset.Load() && (last == evRst || !p.finSent) {
		p.finSent = true
		p.seq++
		p.n.sendStream(p, last, p.seq, nil)
	}
	p.mu.Unlock()
}

// forget drops c from the host's tables.
func (h *Host) forget(c *Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	if c.client {
		if owner, ok := h.tcpPorts[c.laddr.Port]; ok && owner == any(c) {
			delete(h.tcpPorts, c.laddr.Port)
		}
	}
	h.mu.Unlock()
}

func (c *Conn) LocalAddr() net.Addr  { return c.laddr }
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline and wakes a blocked Read to
// re-evaluate it.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.err("set", net.ErrClosed)
	}
	c.in.mu.Lock()
	c.in.rdl = t
	c.in.mu.Unlock()
	signal(c.in.readable)
	return nil
}

// SetWriteDeadline sets the write deadline; Write blocks only when the
// stream's buffer is full.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.err("set", net.ErrClosed)
	}
	c.out.mu.Lock()
	c.out.wdl = t
	c.out.mu.Unlock()
	signal(c.out.writable)
	return nil
}

// Listener is a simulated TCP listener. Connections are queued by the
// driver when their SYN arrives, up to NetConfig.ListenBacklog.
type Listener struct {
	host *Host
	port int
	addr *net.TCPAddr

	mu     sync.Mutex
	queue  []*Conn
	closed bool
	ready  chan struct{}
	done   chan struct{}
}

var _ net.Listener = (*Listener)(nil)

// push queues an arrived connection; false if the listener is closed or
// its backlog is full.
func (l *Listener) push(c *Conn) bool {
	l.mu.Lock()
	ok := !l.closed && len(l.queue) < l.host.n.cfg.ListenBacklog
	if ok {
		l.queue = append(l.queue, c)
	}
	l.mu.Unlock()
	if ok {
		signal(l.ready)
	}
	return ok
}

// Accept waits for the next connection; net.ErrClosed after Close.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, opError("accept", "tcp", nil, l.addr, net.ErrClosed)
		}
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			more := len(l.queue) > 0
			l.mu.Unlock()
			if more {
				signal(l.ready)
			}
			return c, nil
		}
		l.mu.Unlock()
		select {
		case <-l.ready:
		case <-l.done:
		}
	}
}

// Close stops the listener: Accept returns net.ErrClosed, connections not
// yet accepted are reset, later SYNs are refused.
func (l *Listener) Close() error {
	if !l.shutdown() {
		return opError("close", "tcp", nil, l.addr, net.ErrClosed)
	}
	h := l.host
	h.mu.Lock()
	if h.listeners[l.port] == l {
		delete(h.listeners, l.port)
		delete(h.tcpPorts, l.port)
	}
	h.mu.Unlock()
	return nil
}

// shutdown closes the listener without touching the host's tables; false
// if it was already closed.
func (l *Listener) shutdown() bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.closed = true
	q := l.queue
	l.queue = nil
	close(l.done)
	l.mu.Unlock()
	for _, c := range q {
		c.abort()
	}
	return true
}

// Addr is the listener's address, with the host's IP.
func (l *Listener) Addr() net.Addr { return l.addr }
