package pop3

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// addrConn is one end of a net.Pipe that says it comes from remote.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// greetFrom connects a pipe that claims to come from remote to srv and
// returns the server's first line and the client's end.
func greetFrom(t *testing.T, srv *Server, remote string) (string, net.Conn) {
	t.Helper()
	cli, end := net.Pipe()
	a, err := net.ResolveTCPAddr("tcp", remote)
	require.NoError(t, err)
	go srv.ServeConn(addrConn{Conn: end, remote: a})
	t.Cleanup(func() { cli.Close() })
	require.NoError(t, cli.SetReadDeadline(time.Now().Add(ioTimeout)))
	line, err := bufio.NewReader(cli).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSuffix(line, "\r\n"), cli
}

// TestMaxSessionsPerAddr: one client address (an IPv6 /64 counts as one)
// cannot take more than MaxSessionsPerAddr sessions, and other addresses
// still get in while it is capped.
func TestMaxSessionsPerAddr(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSessionsPerAddr = 2
	srv := New(cfg, newTestBackend(), nil)
	t.Cleanup(func() { srv.Close() })
	const refused = "-ERR [SYS/TEMP] too many sessions from your address, try again later"
	first, c1 := greetFrom(t, srv, "[2001:db8:1:2::1]:1000")
	assert.True(t, strings.HasPrefix(first, "+OK"), "first from the /64: %q", first)
	got, _ := greetFrom(t, srv, "[2001:db8:1:2::ff:1]:1000")
	assert.True(t, strings.HasPrefix(got, "+OK"), "second from the /64 (another address in it): %q", got)
	got, _ = greetFrom(t, srv, "[2001:db8:1:2:abcd::9]:1000")
	assert.Equal(t, refused, got, "third from the same /64")
	got, _ = greetFrom(t, srv, "[2001:db8:1:3::1]:1000")
	assert.True(t, strings.HasPrefix(got, "+OK"), "another /64 still gets in: %q", got)
	got, _ = greetFrom(t, srv, "192.0.2.1:1000")
	assert.True(t, strings.HasPrefix(got, "+OK"), "an IPv4 client still gets in: %q", got)
	c1.Close()
	require.Eventually(t, func() bool {
		got, _ := greetFrom(t, srv, "[2001:db8:1:2::7]:1000")
		return strings.HasPrefix(got, "+OK")
	}, ioTimeout, 10*time.Millisecond, "a session that ended makes room")
}

// TestLoginTimeout: an unauthenticated session is closed LoginTimeout
// after it connected even while it keeps sending commands (the idle
// timer alone restarts with each), and a logged-in one is not.
func TestLoginTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = time.Hour
	cfg.LoginTimeout = 300 * time.Millisecond
	ts := startServer(t, cfg, newTestBackend(), nil)

	r := ts.raw(t)
	start := time.Now()
	var last string
	for time.Since(start) < ioTimeout {
		r.send("CAPA\r\n")
		last = r.line()
		if !strings.HasPrefix(last, "+OK") {
			break
		}
		r.multi()
		time.Sleep(20 * time.Millisecond) // a client dribbling commands
	}
	assert.Equal(t, "-ERR autologout; no login in time", last)
	assert.Empty(t, r.closed())
	assert.Contains(t, ts.logs.String(), `reason="login timeout"`)

	c := ts.login(t, "alice", alicePass)
	for start := time.Now(); time.Since(start) < 3*cfg.LoginTimeout; time.Sleep(20 * time.Millisecond) {
		require.NoError(t, c.Noop(), "a logged-in session has the idle timer only")
	}
	require.NoError(t, c.Quit())
}
