package smtp

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

// expectClosed requires the server to have closed the dialog's connection.
func (d *dialog) expectClosed() {
	d.t.Helper()
	d.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := d.r.ReadString('\n')
	require.ErrorIs(d.t, err, io.EOF, "connection closed, got %q", line)
}

// rcptTimed sends RCPT TO and returns the reply and how long it took.
func (d *dialog) rcptTimed(to string) (string, time.Duration) {
	t0 := time.Now()
	d.send("RCPT TO:<" + to + ">")
	return d.reply(), time.Since(t0)
}

// TestUnknownRcptTarpit: after UnknownRcptTarpitAfter unknown recipients
// each further one is answered late, and the MaxUnknownRcpts-th ends the
// session with 421 4.7.0; known recipients are not delayed.
func TestUnknownRcptTarpit(t *testing.T) {
	const delay = 200 * time.Millisecond
	_, addr := start(t, newBackend(), Config{UnknownRcptTarpitAfter: 2, UnknownRcptDelay: delay, MaxUnknownRcpts: 4})
	d := dial(t, addr)
	d.send("EHLO c.test")
	d.expect("250")
	d.send("MAIL FROM:<s@r.test>")
	d.expect("250")
	for i, want := range []struct {
		to      string
		reply   string
		delayed bool
	}{
		{"nobody1@x.test", "550 5.1.1", false},
		{"nobody2@x.test", "550 5.1.1", false},
		{"nobody3@x.test", "550 5.1.1", true}, // past the threshold: late
		{"a@x.test", "250", false},            // a known one is not counted
		{"nobody4@x.test", "421 4.7.0", true}, // the fourth unknown: the end
	} {
		got, took := d.rcptTimed(want.to)
		assert.True(t, strings.HasPrefix(got, want.reply), "rcpt %d %s: want %q, got %q", i, want.to, want.reply, got)
		if want.delayed {
			assert.GreaterOrEqual(t, took, delay, "rcpt %d %s answered late", i, want.to)
		}
	}
	d.expectClosed()
}

// TestUnknownRcptPerAddress: the count runs per client address across
// sessions, so reconnecting does not reset it; another address is not
// affected.
func TestUnknownRcptPerAddress(t *testing.T) {
	_, addr := start(t, newBackend(), Config{UnknownRcptTarpitAfter: 100, MaxUnknownRcpts: 100, MaxUnknownRcptsPerIP: 3, UnknownRcptDelay: 50 * time.Millisecond})
	rcpt := func(d *dialog, to, want string) {
		t.Helper()
		got, _ := d.rcptTimed(to)
		require.True(t, strings.HasPrefix(got, want), "rcpt %s: want %q, got %q", to, want, got)
	}
	d := dial(t, addr)
	d.send("EHLO c.test")
	d.expect("250")
	d.send("MAIL FROM:<s@r.test>")
	d.expect("250")
	for _, to := range []string{"n1@x.test", "n2@x.test", "n3@x.test"} {
		rcpt(d, to, "550 5.1.1")
	}
	d2 := dial(t, addr)
	d2.send("EHLO c.test")
	d2.expect("250")
	d2.send("MAIL FROM:<s@r.test>")
	d2.expect("250")
	rcpt(d2, "a@x.test", "250")
	rcpt(d2, "n4@x.test", "421 4.7.0") // a new session from the same address
	d2.expectClosed()

	c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	other := &dialog{t: t, c: c, r: bufio.NewReader(c)}
	other.expect("220")
	other.send("EHLO c.test")
	other.expect("250")
	other.send("MAIL FROM:<s@r.test>")
	other.expect("250")
	rcpt(other, "n5@x.test", "550 5.1.1")
}

// fakeAddrListener gives accepted connections the remote addresses in
// addrs, in order (the test dials one at a time).
type fakeAddrListener struct {
	net.Listener
	mu    sync.Mutex
	addrs []net.Addr
}

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func (l *fakeAddrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.addrs[0]
	l.addrs = l.addrs[1:]
	return addrConn{Conn: c, remote: a}, nil
}

// TestSessionLimitPerIPv6Prefix: the per-address cap counts an IPv6 /64
// as one address, so a client cannot walk around it with the addresses
// of its /64.
func TestSessionLimitPerIPv6Prefix(t *testing.T) {
	var addrs []net.Addr
	for _, a := range []string{"[2001:db8:1:2::1]:1", "[2001:db8:1:2::2]:1", "[2001:db8:1:2:ffff::3]:1", "[2001:db8:1:3::1]:1"} {
		ta, err := net.ResolveTCPAddr("tcp", a)
		require.NoError(t, err)
		addrs = append(addrs, ta)
	}
	s, err := New(Config{MaxSessionsPerIP: 2}, newBackend(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	rl, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(&fakeAddrListener{Listener: rl, addrs: addrs}) }()
	t.Cleanup(func() { s.Close(); <-done })
	greet := func() string {
		c, err := net.Dial("tcp", rl.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	for i, want := range []string{"220", "220", "421 4.4.5", "220"} {
		got := greet()
		assert.True(t, strings.HasPrefix(got, want), "connection %d from %v: want %q, got %q", i, addrs[i], want, got)
	}
}
