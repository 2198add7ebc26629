package smtp

import (
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

// countingListener records every write(2)-level Write its connections
// make: what the server hands the socket, call by call.
type countingListener struct {
	net.Listener
	mu     sync.Mutex
	writes []string
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

func (l *countingListener) taken() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.writes
	l.writes = nil
	return w
}

type countingConn struct {
	net.Conn
	l *countingListener
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.l.mu.Lock()
	c.l.writes = append(c.l.writes, string(b))
	c.l.mu.Unlock()
	return c.Conn.Write(b)
}

func startCounting(t *testing.T, b *memBackend) (*countingListener, string) {
	t.Helper()
	s, err := New(Config{}, b, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	raw, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := &countingListener{Listener: raw}
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(l) }()
	t.Cleanup(func() { s.Close(); <-done })
	return l, raw.Addr().String()
}

// The replies of a pipelined group (RFC 2920) go out in one write, as do
// the lines of a multi-line reply, and a reply the client waits for is
// written before the server waits for input: each reply below is read
// before the client sends anything more.
func TestRepliesCoalesced(t *testing.T) {
	b := newBackend()
	l, addr := startCounting(t, b)
	d := dial(t, addr)
	assert.Len(t, l.taken(), 1, "the greeting")

	d.send("EHLO c.test")
	d.expect("250")
	ehlo := l.taken()
	require.Len(t, ehlo, 1, "a multi-line reply in one write")
	assert.Contains(t, ehlo[0], "250-PIPELINING\r\n")

	d.c.Write([]byte("MAIL FROM:<s@r.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<nobody@x.test>\r\nDATA\r\n"))
	d.expect("250")
	d.expect("250")
	d.expect("550 5.1.1")
	d.expect("354")
	group := l.taken()
	require.Len(t, group, 1, "four replies, one write")
	assert.Equal(t, 4, strings.Count(group[0], "\r\n"))

	// Not pipelined: the 250 after the message is not held.
	d.send("Subject: t\r\n\r\nbody\r\n.")
	d.expect("250 2.0.0")
	assert.Len(t, l.taken(), 1)
	require.Len(t, b.got, 1)

	// The last reply goes out at close.
	d.send("QUIT")
	d.expect("221")
	assert.Equal(t, []string{"221 2.0.0 Bye\r\n"}, l.taken())
}
