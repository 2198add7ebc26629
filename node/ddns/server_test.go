package ddns

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

// testServer is a Server on loopback UDP and TCP sockets.
type testServer struct {
	*Server
	net     *env.RealNet
	udpAddr string
	tcpAddr string
}

type serverOpts struct {
	cfg     *Config
	log     *slog.Logger
	wrapUDP bool // serve a net.PacketConn that is not a *net.UDPConn, as the simulator does
}

func startServer(t *testing.T, src Source, o serverOpts) *testServer {
	t.Helper()
	n := &env.RealNet{}
	pc, err := n.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := n.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := DefaultConfig()
	if o.cfg != nil {
		cfg = *o.cfg
	}
	s := New(cfg, src, nil, &env.Env{Net: n, Log: o.log})
	ts := &testServer{Server: s, net: n, udpAddr: pc.LocalAddr().String(), tcpAddr: l.Addr().String()}
	var servePC net.PacketConn = pc
	if o.wrapUDP {
		servePC = struct{ net.PacketConn }{pc}
	}
	udpDone := make(chan error, 1)
	tcpDone := make(chan error, 1)
	go func() { udpDone <- s.ServeUDP(servePC) }()
	go func() { tcpDone <- s.ServeTCP(l) }()
	t.Cleanup(func() {
		require.NoError(t, s.Close())
		assert.ErrorIs(t, <-udpDone, ErrServerClosed)
		assert.ErrorIs(t, <-tcpDone, ErrServerClosed)
	})
	return ts
}

func (ts *testServer) exchange(t *testing.T, m *dns.Msg, tcp bool) *dns.Msg {
	t.Helper()
	addr := ts.udpAddr
	if tcp {
		addr = ts.tcpAddr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := Exchange(ctx, ts.net, addr, m, tcp)
	require.NoError(t, err)
	return r
}

func TestServeMX(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		t.Run(fmt.Sprintf("generic PacketConn %v", wrap), func(t *testing.T) {
			ts := startServer(t, testCluster(), serverOpts{wrapUDP: wrap})
			want := rrs(t, "example.com. 5 IN MX 10 n1.example.com.", "example.com. 5 IN MX 20 n2.example.com.", "example.com. 5 IN MX 30 n3.example.com.")
			for _, tcp := range []bool{false, true} {
				r := ts.exchange(t, query("example.com.", dns.TypeMX), tcp)
				assert.Equal(t, dns.RcodeSuccess, r.Rcode)
				assert.True(t, r.Authoritative)
				answer, _, extra := sections(r)
				assert.Len(t, answer, 3)
				assert.Len(t, extra, 3)
				// Rotation: the UDP query got n1 first, the TCP one n2.
				if !tcp {
					assert.Equal(t, want, answer)
				} else {
					assert.Equal(t, "n2.example.com.", firstMX(t, r))
				}
			}
		})
	}
}

func TestServeMXWithMiekgClient(t *testing.T) {
	ts := startServer(t, testCluster(), serverOpts{})
	for _, c := range []*dns.Client{{Net: "udp"}, {Net: "tcp"}} {
		addr := ts.udpAddr
		if c.Net == "tcp" {
			addr = ts.tcpAddr
		}
		r, _, err := c.Exchange(query("example.com.", dns.TypeMX), addr)
		require.NoError(t, err, c.Net)
		assert.Equal(t, dns.RcodeSuccess, r.Rcode, c.Net)
		assert.Len(t, r.Answer, 3, c.Net)
	}
}

func TestServeRoundRobinRotation(t *testing.T) {
	ts := startServer(t, testCluster(), serverOpts{})
	ctx := context.Background()
	var got []string
	for i := range 6 {
		var mxs []*dns.MX
		var err error
		if i%2 == 0 {
			mxs, err = LookupMX(ctx, ts.net, ts.udpAddr, "example.com")
		} else {
			r := ts.exchange(t, query("example.com.", dns.TypeMX), true) // TCP shares the rotation
			for _, rr := range r.Answer {
				mxs = append(mxs, rr.(*dns.MX))
			}
		}
		require.NoError(t, err)
		require.Len(t, mxs, 3)
		got = append(got, mxs[0].Mx)
	}
	want := []string{"n1.example.com.", "n2.example.com.", "n3.example.com.", "n1.example.com.", "n2.example.com.", "n3.example.com."}
	assert.Equal(t, want, got)
}

func TestServePopA(t *testing.T) {
	ts := startServer(t, testCluster(), serverOpts{})
	ctx := context.Background()
	ips, err := LookupA(ctx, ts.net, ts.udpAddr, "pop.example.com")
	require.NoError(t, err)
	assert.Equal(t, []string{"10.0.0.1", "10.0.0.3"}, ipStrings(ips))
	ips, err = LookupA(ctx, ts.net, ts.udpAddr, "POP.Example.Com.")
	require.NoError(t, err)
	assert.Equal(t, []string{"10.0.0.3", "10.0.0.1"}, ipStrings(ips), "rotated, case-insensitive")

	ips, err = LookupA(ctx, ts.net, ts.udpAddr, "n1.example.com")
	require.NoError(t, err)
	assert.Equal(t, []string{"10.0.0.1"}, ipStrings(ips))

	_, err = LookupA(ctx, ts.net, ts.udpAddr, "nope.example.com")
	var rerr *RcodeError
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, dns.RcodeNameError, rerr.Rcode)
	assert.Equal(t, "ddns: lookup nope.example.com. A: NXDOMAIN", err.Error())
}

func ipStrings(ips []net.IP) []string {
	out := []string{}
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

func TestServeRefusesForeignZones(t *testing.T) {
	ts := startServer(t, testCluster(), serverOpts{})
	for _, tcp := range []bool{false, true} {
		r := ts.exchange(t, query("google.com.", dns.TypeA), tcp)
		assert.Equal(t, dns.RcodeRefused, r.Rcode)
		assert.False(t, r.Authoritative)
		assert.Empty(t, r.Answer)
		assert.Empty(t, r.Ns)
	}
	_, err := LookupMX(context.Background(), ts.net, ts.udpAddr, "example.net")
	var rerr *RcodeError
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, dns.RcodeRefused, rerr.Rcode)
	assert.Equal(t, uint64(3), ts.Stats()["rcode.REFUSED"])
}

func TestServeTruncatesAndTCPRetries(t *testing.T) {
	ts := startServer(t, bigCluster(40), serverOpts{})

	// No EDNS: 512 bytes, too small for 40 MX records.
	udp := ts.exchange(t, query("example.com.", dns.TypeMX), false)
	assert.True(t, udp.Truncated, "TC set")
	assert.Less(t, len(udp.Answer), 40)
	tcp := ts.exchange(t, query("example.com.", dns.TypeMX), true)
	assert.False(t, tcp.Truncated)
	assert.Len(t, tcp.Answer, 40)
	assert.Len(t, tcp.Extra, 40)

	// EDNS 1232 holds the 40 MX but not all their addresses: no TC.
	edns := ts.exchange(t, query("example.com.", dns.TypeMX).SetEdns0(1232, false), false)
	assert.False(t, edns.Truncated)
	assert.Len(t, edns.Answer, 40)
	// The client's size is capped by MaxUDPBytes and floored at 512.
	small := ts.exchange(t, query("example.com.", dns.TypeMX).SetEdns0(100, false), false)
	assert.True(t, small.Truncated)
	require.NotNil(t, small.IsEdns0())

	// LookupMX falls back to TCP and gets them all.
	mxs, err := LookupMX(context.Background(), ts.net, ts.udpAddr, "example.com")
	require.NoError(t, err)
	assert.Len(t, mxs, 40)
	for i := 1; i < len(mxs); i++ {
		assert.Less(t, mxs[i-1].Preference, mxs[i].Preference)
	}
	assert.Equal(t, uint64(2), ts.Stats()[StatTruncated])
}

// rawUDP sends b and, if wantReply, returns the reply.
func rawUDP(t *testing.T, ts *testServer, b []byte, wantReply bool) *dns.Msg {
	t.Helper()
	c, err := ts.net.DialContext(context.Background(), "udp", ts.udpAddr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(b)
	require.NoError(t, err)
	if !wantReply {
		return nil
	}
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	require.NoError(t, err)
	var m dns.Msg
	require.NoError(t, m.Unpack(buf[:n]))
	return &m
}

func header(id, bits, qd, an, ns, ar uint16) []byte {
	b := make([]byte, headerBytes)
	for i, v := range []uint16{id, bits, qd, an, ns, ar} {
		binary.BigEndian.PutUint16(b[2*i:], v)
	}
	return b
}

func pack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	require.NoError(t, err)
	return b
}

func TestServeMalformed(t *testing.T) {
	ts := startServer(t, testCluster(), serverOpts{})
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	twoQuestions := query("example.com.", dns.TypeMX)
	twoQuestions.Question = append(twoQuestions.Question, twoQuestions.Question[0])
	update := new(dns.Msg).SetUpdate("example.com.")
	update.Id = 77

	tests := []struct {
		name      string
		packet    []byte
		wantRcode int // -1: no reply expected
		wantID    uint16
	}{
		{"truncated question", append(header(0x1234, 0, 1, 0, 0, 0), 7, 'e', 'x', 'a'), dns.RcodeFormatError, 0x1234},
		{"QDCOUNT 0", header(0x2345, 0, 0, 0, 0, 0), dns.RcodeFormatError, 0x2345},
		{"QDCOUNT 2", pack(t, twoQuestions), dns.RcodeFormatError, twoQuestions.Id},
		{"many answer records claimed", header(0x3456, 0, 1, 40000, 0, 0), dns.RcodeFormatError, 0x3456},
		{"opcode UPDATE", pack(t, update), dns.RcodeNotImplemented, 77},
		{"shorter than a header", []byte{1, 2, 3, 4, 5}, -1, 0},
		{"a response", header(0x4567, qrBit, 1, 0, 0, 0), -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rawUDP(t, ts, tt.packet, tt.wantRcode >= 0)
			if r != nil {
				assert.Equal(t, dns.RcodeToString[tt.wantRcode], dns.RcodeToString[r.Rcode])
				assert.Equal(t, tt.wantID, r.Id)
				assert.True(t, r.Response)
			}
			// The server keeps answering.
			ok := ts.exchange(t, query("n1.example.com.", dns.TypeA), false)
			assert.Equal(t, dns.RcodeSuccess, ok.Rcode)
		})
	}
	st := ts.Stats()
	assert.Equal(t, uint64(4), st["rcode.FORMERR"])
	assert.Equal(t, uint64(1), st["rcode.NOTIMP"])
	assert.Equal(t, uint64(2), st[StatMalformed], "truncated question and short packet")
	// The response is screened in its own goroutine, which may finish
	// after the next query's answer.
	require.Eventually(t, func() bool { return ts.Stats()[StatIgnored] == 1 }, 5*time.Second, time.Millisecond)

	// Random packets, whatever they get, do not stop the server.
	for range 50 {
		b := make([]byte, 12+rng.IntN(200))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		rawUDP(t, ts, b, false)
	}
	ok := ts.exchange(t, query("n1.example.com.", dns.TypeA), false)
	assert.Equal(t, dns.RcodeSuccess, ok.Rcode)
}

func TestServeMalformedTCP(t *testing.T) {
	ts := startServer(t, testCluster(), serverOpts{})
	dial := func() net.Conn {
		c, err := ts.net.DialContext(context.Background(), "tcp", ts.tcpAddr)
		require.NoError(t, err)
		return c
	}

	// Well framed garbage gets FORMERR on the same connection, which then
	// still serves a good query.
	c := dial()
	defer c.Close()
	co := &dns.Conn{Conn: c}
	bad := append(header(0x1234, 0, 1, 0, 0, 0), 7, 'e', 'x', 'a')
	_, err := co.Write(bad) // dns.Conn frames it with the length prefix
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	r, err := co.ReadMsg()
	require.NoError(t, err)
	assert.Equal(t, dns.RcodeFormatError, r.Rcode)
	assert.Equal(t, uint16(0x1234), r.Id)
	require.NoError(t, co.WriteMsg(query("n2.example.com.", dns.TypeA)))
	r, err = co.ReadMsg()
	require.NoError(t, err)
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)

	// Unframed bytes (an HTTP request) and a hang-up.
	c2 := dial()
	_, err = c2.Write([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))
	require.NoError(t, err)
	require.NoError(t, c2.Close())
	// A frame shorter than a header: dropped, connection kept.
	c3 := dial()
	defer c3.Close()
	_, err = c3.Write([]byte{0, 3, 1, 2, 3})
	require.NoError(t, err)
	co3 := &dns.Conn{Conn: c3}
	require.NoError(t, c3.SetDeadline(time.Now().Add(5*time.Second)))
	require.NoError(t, co3.WriteMsg(query("example.com.", dns.TypeSOA)))
	r, err = co3.ReadMsg()
	require.NoError(t, err)
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)

	assert.Equal(t, dns.RcodeSuccess, ts.exchange(t, query("example.com.", dns.TypeMX), true).Rcode)
}

// syncBuffer is an io.Writer safe for the server's and the test's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeLogsRejectedQueries(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := DefaultConfig()
	cfg.LogLimitPerSecond = 2
	ts := startServer(t, testCluster(), serverOpts{log: log, cfg: &cfg})

	ts.exchange(t, query("example.com.", dns.TypeMX), false) // answered: not logged
	ts.exchange(t, query("google.com.", dns.TypeA), false)
	rawUDP(t, ts, append(header(0x1234, 0, 1, 0, 0, 0), 7, 'e', 'x', 'a'), true)
	for range 5 { // over the limit within the second (almost surely)
		ts.exchange(t, query("google.com.", dns.TypeA), true)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	assert.Contains(t, lines[0], `msg="rejected query"`)
	assert.Contains(t, lines[0], "component=ddns")
	assert.Contains(t, lines[0], "rcode=REFUSED")
	assert.Contains(t, lines[0], "remote=127.0.0.1:")
	assert.Contains(t, lines[0], "qname=google.com.")
	assert.Contains(t, out, "rcode=FORMERR")
	assert.NotContains(t, out, "example.com")
	assert.LessOrEqual(t, len(lines), 2+2, "rate limited (at most two windows within the test)")
	assert.Positive(t, ts.Stats()[StatLogSuppressed])
}

func TestCloseStopsEveryGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	n := &env.RealNet{}
	s := New(DefaultConfig(), testCluster(), nil, &env.Env{Net: n})
	var done []chan error
	var tcpAddr, udpAddr string
	for range 2 {
		pc, err := n.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		l, err := n.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		udpAddr, tcpAddr = pc.LocalAddr().String(), l.Addr().String()
		u, c := make(chan error, 1), make(chan error, 1)
		go func() { u <- s.ServeUDP(pc) }()
		go func() { c <- s.ServeTCP(l) }()
		done = append(done, u, c)
	}
	// An idle TCP client holding a connection open must not keep Close waiting.
	c, err := n.DialContext(context.Background(), "tcp", tcpAddr)
	require.NoError(t, err)
	defer c.Close()
	co := &dns.Conn{Conn: c}
	require.NoError(t, co.WriteMsg(query("example.com.", dns.TypeMX)))
	_, err = co.ReadMsg()
	require.NoError(t, err)
	r, err := Exchange(context.Background(), n, udpAddr, query("example.com.", dns.TypeMX), false)
	require.NoError(t, err)
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)

	require.NoError(t, s.Close())
	for _, d := range done {
		assert.ErrorIs(t, <-d, ErrServerClosed)
	}
	require.NoError(t, s.Close(), "Close is idempotent")

	pc, err := n.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorIs(t, s.ServeUDP(pc), ErrServerClosed, "serving after Close")
	assert.ErrorIs(t, pc.SetReadDeadline(time.Now()), net.ErrClosed, "ServeUDP closed the socket it was given")

	c.Close()
	// Polled with a deadline here, not with require.Eventually, whose own
	// goroutine would be counted.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines left after Close")
}

func TestServeUDPReturnsReadErrors(t *testing.T) {
	s := New(DefaultConfig(), testCluster(), nil, nil)
	err := s.ServeUDP(failingPacketConn{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ddns: serve udp")
	assert.ErrorIs(t, err, errBroken)
	require.NoError(t, s.Close())
}

var errBroken = errors.New("broken socket")

// failingPacketConn fails every read with a permanent error.
type failingPacketConn struct{ net.PacketConn }

func (failingPacketConn) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, errBroken }
func (failingPacketConn) SetReadDeadline(time.Time) error        { return nil }
func (failingPacketConn) Close() error                           { return nil }

// hidingNet dials through RealNet but hides that UDP conns are PacketConns,
// as a simulated network's conns might.
type hidingNet struct{ env.RealNet }

func (h *hidingNet) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := h.RealNet.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}

func TestExchangeOverPlainConn(t *testing.T) {
	ts := startServer(t, testCluster(), serverOpts{})
	mxs, err := LookupMX(context.Background(), &hidingNet{}, ts.udpAddr, "example.com")
	require.NoError(t, err)
	assert.Len(t, mxs, 3)
}

func TestExchangeHonoursContext(t *testing.T) {
	n := &env.RealNet{}
	silent, err := n.ListenPacket("udp", "127.0.0.1:0") // never answers
	require.NoError(t, err)
	defer silent.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = Exchange(ctx, n, silent.LocalAddr().String(), query("example.com.", dns.TypeMX), false)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, err = Exchange(ctx, n, silent.LocalAddr().String(), query("example.com.", dns.TypeMX), false)
	assert.ErrorIs(t, err, context.Canceled)

	_, err = Exchange(context.Background(), n, silent.LocalAddr().String(), nil, false)
	assert.Error(t, err)
}

func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (apt-get install dnsutils): skipping the interoperability check")
	}
	ts := startServer(t, testCluster(), serverOpts{})
	host, port, err := net.SplitHostPort(ts.udpAddr)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, dig, "@"+host, "-p", port, "example.com", "MX", "+short", "+time=2", "+tries=1").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "10 n1.example.com.\n20 n2.example.com.\n30 n3.example.com.\n", string(out))

	// dig's default query carries EDNS with a cookie; a foreign zone is refused.
	out, err = exec.CommandContext(ctx, dig, "@"+host, "-p", port, "google.com", "A", "+time=2", "+tries=1").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "status: REFUSED")
}
