package imap

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

const (
	alice     = "alice@example.com"
	alicePass = "secret"
	// ioTimeout bounds every test read so a bug fails the test instead of
	// hanging it.
	ioTimeout = 10 * time.Second
	// pollTick is how often require.Eventually looks again.
	pollTick = time.Millisecond
)

// testConfig is DefaultConfig without the delay after a failed login.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.FailedLoginDelay = 0
	return cfg
}

type testServer struct {
	srv     *Server
	addr    string
	backend *memBackend
}

// startServer serves a memBackend with alice on a loopback listener until
// the test ends.
func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	b := newMemBackend(t)
	b.addUser(alice, alicePass)
	srv := New(cfg, b)
	b.cat.OnChange(srv.CatalogChanged)
	l, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	return &testServer{srv: srv, addr: l.Addr().String(), backend: b}
}

func (ts *testServer) conn(t testing.TB) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, err := (&env.RealNet{}).DialContext(ctx, "tcp", ts.addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// client returns a greeted client.
func (ts *testServer) client(t testing.TB, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	cl := imapclient.New(ts.conn(t), opts)
	t.Cleanup(func() { cl.Close() })
	require.NoError(t, cl.WaitGreeting())
	return cl
}

// login returns a client logged in as alice.
func (ts *testServer) login(t testing.TB) *imapclient.Client {
	t.Helper()
	cl := ts.client(t, nil)
	require.NoError(t, cl.Login(alice, alicePass).Wait())
	return cl
}

// rawClient is a line-level client, for exchanges imapclient does not
// make.
type rawClient struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func (ts *testServer) raw(t testing.TB) *rawClient {
	t.Helper()
	c := ts.conn(t)
	r := &rawClient{t: t, c: c, r: bufio.NewReader(c)}
	r.until("* ")
	return r
}

func (r *rawClient) send(line string) {
	r.t.Helper()
	_, err := r.c.Write([]byte(line + "\r\n"))
	require.NoError(r.t, err)
}

// until reads lines up to and including the first that starts with
// prefix, and returns them.
func (r *rawClient) until(prefix string) []string {
	r.t.Helper()
	var lines []string
	require.NoError(r.t, r.c.SetReadDeadline(time.Now().Add(ioTimeout)))
	for {
		l, err := r.r.ReadString('\n')
		require.NoError(r.t, err, "waiting for %q after %q", prefix, lines)
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if strings.HasPrefix(l, prefix) {
			return lines
		}
	}
}
