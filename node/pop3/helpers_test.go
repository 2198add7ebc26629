package pop3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

// Test messages. msgDots has lines ".", ".." and ".foo" that must be
// dot-stuffed; msgNoEOL's last line has no CRLF.
const (
	msgDots  = "From: a@example.com\r\nSubject: dots\r\n\r\nfirst\r\n.\r\n..\r\n.foo\r\nlast\r\n"
	msgPlain = "Subject: two\r\n\r\nline1\r\nline2\r\nline3\r\n"
	msgNoEOL = "Subject: three\r\n\r\nno final newline"

	alicePass = "s3cr3t pw" // a space, as RFC 1939 §7 PASS allows
	bobPass   = "b0b-pw"
	wrongPass = "guess-pw-1"
)

// ioTimeout bounds every test read so a bug fails the test instead of
// hanging it.
const ioTimeout = 10 * time.Second

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Hostname = "pop.test"
	cfg.FailedLoginDelay = 0
	return cfg
}

func newTestBackend() *memBackend {
	b := newMemBackend()
	b.addUser("alice", alicePass, msgDots, msgPlain, msgNoEOL)
	b.addUser("bob", bobPass, msgPlain)
	return b
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testServer struct {
	srv     *Server
	addr    string
	backend *memBackend
	logs    *syncBuffer
}

// startServer serves b on a loopback listener (wrapped by wrap if non-nil)
// until the test ends.
func startServer(t testing.TB, cfg Config, b *memBackend, wrap func(net.Listener) net.Listener) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := New(cfg, b, log)
	l, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	if wrap != nil {
		l = wrap(l)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.ErrorIs(t, <-served, ErrServerClosed)
	})
	return &testServer{srv: srv, addr: addr, backend: b, logs: logs}
}

func (ts *testServer) dial(t testing.TB) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, err := (&env.RealNet{}).DialContext(ctx, "tcp", ts.addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func (ts *testServer) client(t testing.TB) *Client {
	t.Helper()
	c, err := NewClient(ts.dial(t))
	require.NoError(t, err)
	c.SetTimeout(ioTimeout)
	return c
}

// login returns a client in the TRANSACTION state.
func (ts *testServer) login(t testing.TB, user, pass string) *Client {
	t.Helper()
	c := ts.client(t)
	require.NoError(t, c.Login(user, pass))
	return c
}

func (ts *testServer) sessions() int {
	ts.srv.mu.Lock()
	defer ts.srv.mu.Unlock()
	return ts.srv.nsessions
}

// rawClient speaks bytes, for what Client will not send.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func (ts *testServer) raw(t testing.TB) *rawClient {
	t.Helper()
	c := ts.dial(t)
	r := &rawClient{t: t, conn: c, br: bufio.NewReader(c)}
	require.True(t, strings.HasPrefix(r.line(), "+OK "), "greeting")
	return r
}

func (r *rawClient) send(s string) {
	r.t.Helper()
	require.NoError(r.t, r.conn.SetWriteDeadline(time.Now().Add(ioTimeout)))
	_, err := io.WriteString(r.conn, s)
	require.NoError(r.t, err)
}

// line reads one line and returns it without its CRLF, which it requires.
func (r *rawClient) line() string {
	r.t.Helper()
	require.NoError(r.t, r.conn.SetReadDeadline(time.Now().Add(ioTimeout)))
	l, err := r.br.ReadString('\n')
	require.NoError(r.t, err, "read line (got %q)", l)
	require.True(r.t, strings.HasSuffix(l, "\r\n"), "line %q lacks CRLF", l)
	return strings.TrimSuffix(l, "\r\n")
}

func (r *rawClient) cmd(s string) string {
	r.t.Helper()
	r.send(s + "\r\n")
	return r.line()
}

// multi reads a multi-line body up to ".", returning the lines as sent
// (still dot-stuffed).
func (r *rawClient) multi() []string {
	r.t.Helper()
	var lines []string
	for {
		l := r.line()
		if l == "." {
			return lines
		}
		lines = append(lines, l)
	}
}

// closed reads until the server closes the connection and returns the lines
// it sent first.
func (r *rawClient) closed() []string {
	r.t.Helper()
	require.NoError(r.t, r.conn.SetReadDeadline(time.Now().Add(ioTimeout)))
	var lines []string
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			require.True(r.t, errors.Is(err, io.EOF) || isReset(err), "want EOF, got %v", err)
			require.Empty(r.t, l, "partial line before close")
			return lines
		}
		lines = append(lines, strings.TrimSuffix(l, "\r\n"))
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// pipeConn is an in-memory conn for ServeConn: reads come from a fixed
// input, writes are collected; deadlines are ignored (reads never block).
type pipeConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

type pipeAddr string

func (a pipeAddr) Network() string { return "mem" }
func (a pipeAddr) String() string  { return string(a) }

func (c *pipeConn) Read(p []byte) (int, error)         { return c.in.Read(p) }
func (c *pipeConn) Write(p []byte) (int, error)        { return c.out.Write(p) }
func (c *pipeConn) Close() error                       { return nil }
func (c *pipeConn) LocalAddr() net.Addr                { return pipeAddr("server") }
func (c *pipeConn) RemoteAddr() net.Addr               { return pipeAddr("client") }
func (c *pipeConn) SetDeadline(t time.Time) error      { return nil }
func (c *pipeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return nil }
