package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"mailarray/sim/simnet"
)

// MemberlistTransport runs hashicorp/memberlist (and so serf) over one
// simulated host: gossip datagrams over a PacketConn, push-pull and
// fallback probes over streams. It is how the simulator measures real
// serf's failure detection inside a synctest bubble (serf_test.go), which
// calibrates the modeled membership (MembershipConfig).
//
// Unlike memberlist's MockTransport, it never blocks: incoming packets and
// streams go to buffered channels and are dropped (counted) when nobody
// reads them, as a full socket buffer drops them. MockTransport's
// unbuffered hand-off blocks forever once the receiving node has stopped,
// which deadlocks a bubble.
type MemberlistTransport struct {
	host *simnet.Host
	pc   net.PacketConn
	ln   net.Listener
	port int

	packets chan *memberlist.Packet
	streams chan net.Conn

	wg      sync.WaitGroup
	once    sync.Once
	mu      sync.Mutex
	dropped int64
}

var _ memberlist.Transport = (*MemberlistTransport)(nil)

// Limits of the transport's queues.
const (
	mlPacketQueue = 1024
	mlStreamQueue = 64
	mlPacketBytes = 65536
)

// NewMemberlistTransport binds UDP and TCP port on host (0: an ephemeral
// port, the same for both).
func NewMemberlistTransport(host *simnet.Host, port int) (*MemberlistTransport, error) {
	ln, err := host.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("sim: memberlist transport: %w", err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	pc, err := host.ListenPacket("udp", ":"+strconv.Itoa(port))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("sim: memberlist transport: %w", err)
	}
	t := &MemberlistTransport{
		host: host, pc: pc, ln: ln, port: port,
		packets: make(chan *memberlist.Packet, mlPacketQueue),
		streams: make(chan net.Conn, mlStreamQueue),
	}
	t.wg.Add(2)
	go t.readPackets()
	go t.accept()
	return t, nil
}

// Addr is the transport's gossip address, ip:port.
func (t *MemberlistTransport) Addr() string {
	return net.JoinHostPort(t.host.IP(), strconv.Itoa(t.port))
}

// Dropped counts packets and streams discarded because their queue was
// full.
func (t *MemberlistTransport) Dropped() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped
}

func (t *MemberlistTransport) readPackets() {
	defer t.wg.Done()
	for {
		buf := make([]byte, mlPacketBytes)
		n, from, err := t.pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed (Shutdown, or the host crashed)
		}
		p := &memberlist.Packet{Buf: buf[:n], From: from, Timestamp: time.Now()}
		select {
		case t.packets <- p:
		default:
			t.drop()
		}
	}
}

func (t *MemberlistTransport) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		select {
		case t.streams <- c:
		default:
			c.Close()
			t.drop()
		}
	}
}

func (t *MemberlistTransport) drop() {
	t.mu.Lock()
	t.dropped++
	t.mu.Unlock()
}

// FinalAdvertiseAddr advertises the host's address unless ip is given.
func (t *MemberlistTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip == "" {
		ip = t.host.IP()
	}
	addr := net.ParseIP(ip)
	if addr == nil {
		return nil, 0, fmt.Errorf("sim: memberlist transport: advertise address %q is not an IP", ip)
	}
	if port == 0 {
		port = t.port
	}
	return addr, port, nil
}

// WriteTo sends one gossip datagram.
func (t *MemberlistTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	ap, err := netip.ParseAddrPort(addr) // memberlist gossips IP literals
	if err != nil {
		return time.Time{}, fmt.Errorf("sim: memberlist transport: %w", err)
	}
	_, err = t.pc.WriteTo(b, net.UDPAddrFromAddrPort(ap))
	return time.Now(), err
}

// PacketCh delivers incoming datagrams.
func (t *MemberlistTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout opens a stream to addr.
func (t *MemberlistTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return t.host.DialContext(ctx, "tcp", addr)
}

// StreamCh delivers incoming streams.
func (t *MemberlistTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown closes the sockets and waits for the transport's goroutines.
func (t *MemberlistTransport) Shutdown() error {
	t.once.Do(func() {
		t.pc.Close()
		t.ln.Close()
		t.wg.Wait()
		// Streams accepted and never taken are closed here.
		for {
			select {
			case c := <-t.streams:
				c.Close()
			default:
				return
			}
		}
	})
	return nil
}
