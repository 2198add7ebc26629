package smtp

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

// memBackend is an in-memory Backend: mailboxes in a set, messages in a
// slice; Deliver can be held to test shutdown during a transaction.
type memBackend struct {
	mu       sync.Mutex
	boxes    map[string]bool
	domains  map[string]bool
	got      []*Message
	hold     chan struct{} // when non-nil, Deliver waits on it
	entered  chan struct{}
	failWith error
	failRcpt error // when set, CheckRecipient's answer for unknown mailboxes
	n        int
}

func (b *memBackend) NewID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	return "tx" + string(rune('0'+b.n))
}

func (b *memBackend) CheckRecipient(ctx context.Context, addr string) error {
	at := strings.LastIndexByte(addr, '@')
	if !b.domains[addr[at+1:]] {
		return ErrNotHosted
	}
	if !b.boxes[addr] {
		if b.failRcpt != nil {
			return b.failRcpt
		}
		return ErrUnknownMailbox
	}
	return nil
}

func deadline() time.Time { return time.Now().Add(5 * time.Second) }

func (b *memBackend) Deliver(ctx context.Context, m *Message) error {
	if b.entered != nil {
		b.entered <- struct{}{}
	}
	if b.hold != nil {
		<-b.hold
	}
	if b.failWith != nil {
		return b.failWith
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, m)
	return nil
}

func start(t *testing.T, b *memBackend, cfg Config) (*Server, string) {
	t.Helper()
	s, err := New(cfg, b, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	l, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(l) }()
	t.Cleanup(func() { s.Close(); <-done })
	return s, l.Addr().String()
}

func newBackend() *memBackend {
	return &memBackend{boxes: map[string]bool{"a@x.test": true}, domains: map[string]bool{"x.test": true}}
}

// dialog speaks raw SMTP so replies can be checked exactly.
type dialog struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *dialog {
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	d := &dialog{t: t, c: c, r: bufio.NewReader(c)}
	d.expect("220")
	return d
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (d *dialog) reply() string {
	d.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := d.r.ReadString('\n')
		require.NoError(d.t, err)
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

func (d *dialog) expect(prefix string) string {
	d.t.Helper()
	got := d.reply()
	require.True(d.t, strings.HasPrefix(got, prefix), "want %q, got %q", prefix, got)
	return got
}

func (d *dialog) send(line string) { d.c.Write([]byte(line + "\r\n")) }

func TestReplies(t *testing.T) {
	b := newBackend()
	_, addr := start(t, b, Config{MaxMessageBytes: 2048})
	d := dial(t, addr)
	d.send("EHLO c.test")
	d.expect("250")
	d.send("MAIL FROM:<s@r.test> SIZE=999999")
	d.expect("552 5.3.4")
	d.send("MAIL FROM:<s@r.test>")
	d.expect("250")
	tests := []struct{ rcpt, want string }{
		{"<nobody@x.test>", "550 5.1.1"},
		{"<a@relay.test>", "550 5.7.1"},
		{"<A@X.test>", "250"},
	}
	for _, tc := range tests {
		d.send("RCPT TO:" + tc.rcpt)
		d.expect(tc.want)
	}
	d.send("DATA")
	d.expect("354")
	d.c.Write([]byte("Subject: t\nbare LF line\r\n..dot\r\n.\r\n"))
	got := d.expect("250 2.0.0 Ok: queued as tx1")
	assert.Contains(t, got, "tx1")
	require.Len(t, b.got, 1)
	m := b.got[0]
	assert.Equal(t, []string{"a@x.test"}, m.To)
	s := string(m.Data)
	assert.True(t, strings.HasPrefix(s, "Received: from c.test ([127.0.0.1])\r\n\tby "), s)
	assert.Contains(t, s, "with ESMTP id tx1\r\n\tfor <a@x.test>; ")
	assert.True(t, strings.HasSuffix(s, "Subject: t\r\nbare LF line\r\n.dot\r\n"), "CRLF normalised, dot-unstuffed: %q", s)
}

func TestDeliverFailureIs451(t *testing.T) {
	b := newBackend()
	b.failWith = errors.Join(ErrUnavailable, errors.New("only 1 node"))
	_, addr := start(t, b, Config{})
	d := dial(t, addr)
	d.send("HELO c.test")
	d.expect("250")
	d.send("MAIL FROM:<>")
	d.expect("250")
	d.send("RCPT TO:<a@x.test>")
	d.expect("250")
	d.send("DATA")
	d.expect("354")
	d.send("x\r\n.")
	d.expect("451 4.3.0")
}

func TestShutdownDrains(t *testing.T) {
	b := newBackend()
	b.hold = make(chan struct{})
	b.entered = make(chan struct{}, 1)
	s, addr := start(t, b, Config{})
	idle := dial(t, addr)
	idle.send("EHLO idle.test")
	idle.expect("250")
	busy := dial(t, addr)
	busy.send("EHLO busy.test")
	busy.expect("250")
	busy.send("MAIL FROM:<s@r.test>")
	busy.expect("250")
	busy.send("RCPT TO:<a@x.test>")
	busy.expect("250")
	busy.send("DATA")
	busy.expect("354")
	busy.send("Subject: in flight\r\n\r\nbody\r\n.")
	<-b.entered // the transaction is inside Deliver

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	idle.expect("421 4.4.2") // idle session told to go away at once
	close(b.hold)            // let the transaction finish
	busy.expect("250 2.0.0") // it is acknowledged
	busy.expect("421")       // and then the session ends
	require.NoError(t, <-done)
	assert.Len(t, b.got, 1, "the in-flight message was delivered")
	_, err := net.DialTimeout("tcp", addr, time.Second)
	assert.Error(t, err, "no new sessions after shutdown")
}

func TestSessionLimitPerIP(t *testing.T) {
	_, addr := start(t, newBackend(), Config{MaxSessionsPerIP: 2})
	dial(t, addr)
	dial(t, addr)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	assert.True(t, strings.HasPrefix(line, "421 4.4.5"), "third session from one IP refused: %q", line)
}

func TestClientLibrarySeesCodes(t *testing.T) {
	_, addr := start(t, newBackend(), Config{})
	c, err := gosmtp.Dial(addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Mail("s@r.test", nil))
	err = c.Rcpt("zz@x.test", nil)
	var se *gosmtp.SMTPError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 550, se.Code)
	assert.Equal(t, gosmtp.EnhancedCode{5, 1, 1}, se.EnhancedCode)
}

func TestConnectionRatePerIP(t *testing.T) {
	_, addr := start(t, newBackend(), Config{RatePerIP: 3})
	for i := 0; i < 3; i++ {
		d := dial(t, addr)
		d.send("QUIT")
		d.expect("221")
	}
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	assert.True(t, strings.HasPrefix(line, "421 4.4.5"), "fourth connection within the minute refused: %q", line)
}
