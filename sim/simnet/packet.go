package simnet

import (
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// await blocks until ch is signalled, done is closed, or deadline dl
// passes; the caller rechecks its state. *t is reused across waits.
func await(ch, done chan struct{}, dl time.Time, t **time.Timer) {
	if dl.IsZero() {
		select {
		case <-ch:
		case <-done:
		}
		return
	}
	d := time.Until(dl)
	if d <= 0 {
		return
	}
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	select {
	case <-ch:
	case <-done:
	case <-(*t).C:
	}
}

// timerSlot lends one reusable deadline timer to one waiter at a time (a
// concurrent waiter makes its own): blocked reads with deadlines are the
// commonest wait, and a timer per wait was the simulator's top allocation.
type timerSlot struct {
	busy atomic.Bool
	t    *time.Timer
}

// take returns the slot's timer (nil until first made) and whether the slot
// was free; pass both to give.
func (s *timerSlot) take() (*time.Timer, bool) {
	if s.busy.CompareAndSwap(false, true) {
		return s.t, true
	}
	return nil, false
}

func (s *timerSlot) give(t *time.Timer, owned bool) {
	if t != nil {
		t.Stop()
	}
	if owned {
		s.t = t
		s.busy.Store(false)
	}
}

type datagram struct {
	from *net.UDPAddr
	data []byte
}

// PacketConn is a simulated UDP socket. Datagrams go through the driver
// with the link's latency and loss; a full receive queue
// (NetConfig.PacketQueueLen) drops them, as does a closed or missing
// socket.
type PacketConn struct {
	host  *Host
	port  int
	laddr *net.UDPAddr
	key   string

	closed   atomic.Bool
	done     chan struct{}
	readable chan struct{}

	rslot timerSlot

	mu    sync.Mutex
	seq   uint64
	queue []datagram
	rdl   time.Time
	wdl   time.Time
}

var _ net.PacketConn = (*PacketConn)(nil)

// newPacketConn is called with h.mu held; k numbers the socket among the
// host's binds for purpose, keeping keys unique when ports are reused.
func newPacketConn(h *Host, port int, purpose string, k uint64) *PacketConn {
	laddr := &net.UDPAddr{IP: h.addr, Port: port}
	return &PacketConn{
		host:     h,
		port:     port,
		laddr:    laddr,
		key:      "udp " + laddr.String() + " " + purpose + " #" + strconv.FormatUint(k, 10),
		done:     make(chan struct{}),
		readable: make(chan struct{}, 1),
	}
}

func (pc *PacketConn) err(op string, addr net.Addr, err error) error {
	return opError(op, "udp", pc.laddr, addr, err)
}

// ReadFrom returns the next datagram (truncated to len(b)) and its sender.
// Deadline errors are timeouts and Temporary, as miekg/dns's server loop
// requires to keep serving.
func (pc *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	t, owned := pc.rslot.take()
	defer func() { pc.rslot.give(t, owned) }()
	for {
		pc.mu.Lock()
		switch {
		case pc.closed.Load():
			pc.mu.Unlock()
			return 0, nil, pc.err("read", nil, net.ErrClosed)
		case expired(pc.rdl):
			pc.mu.Unlock()
			return 0, nil, pc.err("read", nil, os.ErrDeadlineExceeded)
		case len(pc.queue) > 0:
			d := pc.queue[0]
			pc.queue[0] = datagram{}
			pc.queue = pc.queue[1:]
			more := len(pc.queue) > 0
			pc.mu.Unlock()
			if more {
				signal(pc.readable)
			}
			return copy(b, d.data), &net.UDPAddr{IP: d.from.IP, Port: d.from.Port}, nil
		}
		dl := pc.rdl
		pc.mu.Unlock()
		await(pc.readable, pc.done, dl, &t)
	}
}

// WriteTo sends one datagram to addr (a *net.UDPAddr or "ip:port"). A
// datagram to an address no host has vanishes, as on a real network.
func (pc *PacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if pc.closed.Load() {
		return 0, pc.err("write", addr, net.ErrClosed)
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		ip, port, err := parseRemote(addr.String())
		if err != nil {
			return 0, pc.err("write", addr, err)
		}
		ua = &net.UDPAddr{IP: ip, Port: port}
	}
	n := pc.host.n
	if len(b) > n.cfg.DatagramBytesMax {
		return 0, pc.err("write", addr, sysErr("sendto", syscall.EMSGSIZE))
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if expired(pc.wdl) {
		return 0, pc.err("write", addr, os.ErrDeadlineExceeded)
	}
	dst := n.lookupHost(ua.IP)
	if ua.IP.IsLoopback() {
		dst = pc.host
	}
	if dst == nil {
		return len(b), nil
	}
	data := make([]byte, len(b))
	copy(data, b)
	pc.seq++
	n.sendPacket(pc, pc.seq, dst, ua.Port, data)
	return len(b), nil
}

// push queues an arrived datagram; false if the socket is closed or its
// queue is full.
func (pc *PacketConn) push(d datagram) bool {
	pc.mu.Lock()
	ok := !pc.closed.Load() && len(pc.queue) < pc.host.n.cfg.PacketQueueLen
	if ok {
		pc.queue = append(pc.queue, d)
	}
	pc.mu.Unlock()
	if ok {
		signal(pc.readable)
	}
	return ok
}

// deliverPacket runs on the driver when a datagram reaches the host. A
// datagram no socket takes is counted as dropped.
func (h *Host) deliverPacket(e *event) {
	h.mu.Lock()
	pc := h.udpPorts[e.port]
	if h.crashed {
		pc = nil
	}
	h.mu.Unlock()
	if pc != nil && pc.push(datagram{from: e.src.laddr, data: e.data}) {
		e.data = nil
		return
	}
	n := h.n
	n.mu.Lock()
	n.dropped++
	e.link.dropped++
	n.mu.Unlock()
}

// Close closes the socket: blocked and later calls return net.ErrClosed.
func (pc *PacketConn) Close() error {
	if !pc.shutdown() {
		return pc.err("close", nil, net.ErrClosed)
	}
	h := pc.host
	h.mu.Lock()
	if h.udpPorts[pc.port] == pc {
		delete(h.udpPorts, pc.port)
	}
	h.mu.Unlock()
	return nil
}

// shutdown closes without touching the host's tables; false if it was
// already closed.
func (pc *PacketConn) shutdown() bool {
	if !pc.closed.CompareAndSwap(false, true) {
		return false
	}
	close(pc.done)
	pc.mu.Lock()
	pc.queue = nil
	pc.mu.Unlock()
	return true
}

func (pc *PacketConn) LocalAddr() net.Addr { return pc.laddr }

// SetDeadline sets both deadlines.
func (pc *PacketConn) SetDeadline(t time.Time) error {
	pc.SetReadDeadline(t)
	return pc.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline and wakes a blocked ReadFrom to
// re-evaluate it.
func (pc *PacketConn) SetReadDeadline(t time.Time) error {
	pc.mu.Lock()
	pc.rdl = t
	pc.mu.Unlock()
	signal(pc.readable)
	return nil
}

// SetWriteDeadline sets the write deadline (WriteTo never blocks; an
// expired deadline fails it).
func (pc *PacketConn) SetWriteDeadline(t time.Time) error {
	pc.mu.Lock()
	pc.wdl = t
	pc.mu.Unlock()
	return nil
}

// udpConn is a connected UDP socket (Dial "udp"): Read keeps only datagrams
// from the remote address, Write sends to it. It is also a net.PacketConn,
// which is how miekg/dns tells UDP from TCP.
type udpConn struct {
	*PacketConn
	raddr *net.UDPAddr
}

var (
	_ net.Conn       = (*udpConn)(nil)
	_ net.PacketConn = (*udpConn)(nil)
)

func (h *Host) dialUDP(network string, ip net.IP, port int) (net.Conn, error) {
	pc, err := h.bindUDP(network, 0, "udp>"+(&net.UDPAddr{IP: ip, Port: port}).String())
	if err != nil {
		return nil, err
	}
	return &udpConn{PacketConn: pc, raddr: &net.UDPAddr{IP: ip, Port: port}}, nil
}

func (c *udpConn) Read(b []byte) (int, error) {
	for {
		n, from, err := c.ReadFrom(b)
		if err != nil {
			return n, err
		}
		if ua := from.(*net.UDPAddr); ua.Port == c.raddr.Port && ua.IP.Equal(c.raddr.IP) {
			return n, nil
		}
	}
}

func (c *udpConn) Write(b []byte) (int, error) { return c.WriteTo(b, c.raddr) }

func (c *udpConn) RemoteAddr() net.Addr { return c.raddr }
