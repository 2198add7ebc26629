package flushconn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scriptConn is a net.Conn whose reads come from a channel (one chunk per
// Read, as a socket returns what has arrived) and whose writes, one entry
// per Write call, go to another: what the wrapped socket would be asked
// to send, call by call.
type scriptConn struct {
	net.Conn // unused methods panic
	in       chan []byte
	out      chan string
	mu       sync.Mutex
	closed   bool
	halfOut  bool
}

func newScript() *scriptConn {
	return &scriptConn{in: make(chan []byte, 8), out: make(chan string, 64)}
}

func (s *scriptConn) Read(b []byte) (int, error) {
	chunk, ok := <-s.in
	if !ok {
		return 0, io.EOF
	}
	return copy(b, chunk), nil
}

func (s *scriptConn) Write(b []byte) (int, error) {
	s.out <- string(b)
	return len(b), nil
}

func (s *scriptConn) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	close(s.out)
	return nil
}

func (s *scriptConn) CloseWrite() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.halfOut = true
	return nil
}

// writes returns the writes made so far.
func (s *scriptConn) writes() []string {
	var got []string
	for {
		select {
		case w, ok := <-s.out:
			if !ok {
				return got
			}
			got = append(got, w)
		default:
			return got
		}
	}
}

// echoServer is a line server as go-smtp is one: a buffered reader over
// the conn, one reply written per command line, each reply its own Write.
func echoServer(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(line, "\r\n")
		if cmd == "QUIT" {
			c.Write([]byte("221 bye\r\n"))
			c.Close()
			return
		}
		c.Write([]byte("250 " + cmd + "\r\n"))
	}
}

func TestPipelinedCommandsGetOneWrite(t *testing.T) {
	s := newScript()
	done := make(chan struct{})
	go func() { defer close(done); echoServer(New(s)) }()

	// MAIL, RCPT and DATA pipelined in one segment: three replies, one write.
	s.in <- []byte("MAIL\r\nRCPT\r\nDATA\r\n")
	assert.Equal(t, "250 MAIL\r\n250 RCPT\r\n250 DATA\r\n", <-s.out)
	// The server then waits for input; nothing more was written.
	assert.Empty(t, s.writes())

	// QUIT's reply is written at Close, and it is the last write.
	s.in <- []byte("QUIT\r\n")
	<-done
	assert.Equal(t, []string{"221 bye\r\n"}, s.writes())
	assert.True(t, s.closed)
}

func TestUnpipelinedReplyIsNotHeld(t *testing.T) {
	s := newScript()
	go echoServer(New(s))
	t.Cleanup(func() { close(s.in) })

	// One command at a time: each reply is written when the server goes
	// back to read, before that read blocks (nothing more is sent here),
	// so the client waiting for it gets it.
	for _, cmd := range []string{"EHLO c", "MAIL", "RCPT"} {
		s.in <- []byte(cmd + "\r\n")
		select {
		case w := <-s.out:
			assert.Equal(t, "250 "+cmd+"\r\n", w)
		case <-time.After(5 * time.Second):
			t.Fatalf("reply to %s held while the server waits for input", cmd)
		}
	}
}

func TestCloseFlushes(t *testing.T) {
	s := newScript()
	c := New(s)
	n, err := c.Write([]byte("421 4.4.2 closing\r\n"))
	require.NoError(t, err)
	assert.Equal(t, 19, n)
	assert.Empty(t, s.writes(), "held until Close")
	require.NoError(t, c.Close())
	assert.Equal(t, []string{"421 4.4.2 closing\r\n"}, s.writes())
	assert.True(t, s.closed)
}

func TestCloseWriteFlushesFirst(t *testing.T) {
	s := newScript()
	c := New(s)
	c.Write([]byte("500 5.4.0 Too long line\r\n"))
	require.NoError(t, c.CloseWrite())
	assert.Equal(t, []string{"500 5.4.0 Too long line\r\n"}, s.writes())
	assert.True(t, s.halfOut)
}

func TestLargeWriteGoesOutInOrder(t *testing.T) {
	s := newScript()
	c := New(s)
	c.Write([]byte("250 ok\r\n"))
	big := bytes.Repeat([]byte("x"), maxHeld)
	n, err := c.Write(big)
	require.NoError(t, err)
	assert.Equal(t, len(big), n)
	// What was held goes first, then the large write on its own.
	assert.Equal(t, []string{"250 ok\r\n", string(big)}, s.writes())

	// Small writes that would overflow what is held flush it first.
	half := bytes.Repeat([]byte("y"), maxHeld/2+1)
	c.Write(half)
	c.Write(half)
	assert.Equal(t, []string{string(half)}, s.writes())
	require.NoError(t, c.Flush())
	assert.Equal(t, []string{string(half)}, s.writes())
}

// A write deadline applies to held bytes when they are written: the
// failed write is reported by the Read that flushed, and by every later
// write, as the connection cannot be used after it.
func TestWriteDeadlineAppliesAtFlush(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	raw, err := l.Accept()
	require.NoError(t, err)
	c := New(raw)
	defer c.Close()

	require.NoError(t, c.SetWriteDeadline(time.Now().Add(-time.Second)))
	_, err = c.Write([]byte("250 ok\r\n"))
	require.NoError(t, err, "held, not yet written")
	_, err = c.Read(make([]byte, 16))
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrDeadlineExceeded), "got %v", err)
	_, err = c.Write([]byte("250 ok\r\n"))
	assert.True(t, errors.Is(err, os.ErrDeadlineExceeded), "got %v", err)
}

// Over a real socket: replies reach the client, and the client's input
// reaches the server, through a read that flushed.
func TestOverTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			echoServer(New(c))
		}
	}()
	client, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(client)
	client.Write([]byte("NOOP\r\n"))
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "250 NOOP\r\n", line)
	client.Write([]byte("A\r\nB\r\nQUIT\r\n"))
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, "250 A\r\n250 B\r\n221 bye\r\n", string(got))
}
