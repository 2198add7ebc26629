package imap

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pipeListener hands the server net.Pipe ends that claim to come from
// chosen addresses.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// greetFrom connects from remote and returns the server's first line and
// the client's end.
func (l *pipeListener) greetFrom(t *testing.T, remote string) (string, net.Conn) {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", remote)
	require.NoError(t, err)
	cli, end := net.Pipe()
	t.Cleanup(func() { cli.Close() })
	l.conns <- addrConn{Conn: end, remote: a}
	require.NoError(t, cli.SetReadDeadline(time.Now().Add(ioTimeout)))
	line, err := bufio.NewReader(cli).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimRight(line, "\r\n"), cli
}

// TestMaxSessionsPerAddr: one client address (an IPv6 /64 counts as one)
// cannot take more than MaxSessionsPerAddr sessions, and other addresses
// still get in while it is capped.
func TestMaxSessionsPerAddr(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSessionsPerAddr = 2
	srv := New(cfg, newMemBackend(t))
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	ok := func(line string) bool { return strings.HasPrefix(line, "* OK") }
	first, c1 := l.greetFrom(t, "[2001:db8:1:2::1]:1000")
	assert.True(t, ok(first), "first from the /64: %q", first)
	got, _ := l.greetFrom(t, "[2001:db8:1:2::ff:1]:1000")
	assert.True(t, ok(got), "second from the /64: %q", got)
	got, _ = l.greetFrom(t, "[2001:db8:1:2:abcd::9]:1000")
	assert.Equal(t, "* BYE [UNAVAILABLE] too many sessions from your address, try again later", got, "third from the same /64")
	got, _ = l.greetFrom(t, "[2001:db8:1:3::1]:1000")
	assert.True(t, ok(got), "another /64 still gets in: %q", got)
	got, _ = l.greetFrom(t, "192.0.2.1:1000")
	assert.True(t, ok(got), "an IPv4 client still gets in: %q", got)
	c1.Close()
	require.Eventually(t, func() bool {
		got, _ := l.greetFrom(t, "[2001:db8:1:2::7]:1000")
		return ok(got)
	}, ioTimeout, 10*time.Millisecond, "a session that ended makes room")
}

// TestLoginTimeout: a session not logged in is told BYE LoginTimeout
// after it connected although it keeps sending commands (imapserver's
// own read timer restarts with each); a logged-in one stays.
func TestLoginTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.LoginTimeout = 300 * time.Millisecond
	ts := startServer(t, cfg)
	r := ts.raw(t)
	var last []string
	for start := time.Now(); time.Since(start) < ioTimeout; time.Sleep(20 * time.Millisecond) {
		r.send("a NOOP")
		last = r.until("") // one line: the tagged OK, or the BYE
		if strings.HasPrefix(last[0], "* BYE") {
			break
		}
		require.Equal(t, "a OK NOOP completed", last[0])
	}
	assert.Equal(t, []string{"* BYE autologout: no login in time"}, last)

	cl := ts.login(t)
	for start := time.Now(); time.Since(start) < 3*cfg.LoginTimeout; time.Sleep(20 * time.Millisecond) {
		require.NoError(t, cl.Noop().Wait(), "a logged-in session is not cut")
	}
}
