package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loopServer is an SMTP listener on loopback that counts sessions and
// accepts every message ("queued as <prefix><k>") but those to refuse
// (550); with busy set it answers EHLO 421.
type loopServer struct {
	addr   string
	busy   bool
	refuse string

	mu       sync.Mutex
	sessions int
	queued   int
}

func startLoopServer(t *testing.T, busy bool, refuse string) *loopServer {
	ls := &loopServer{busy: busy, refuse: refuse}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		if ls.busy {
			return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "busy"}
		}
		ls.mu.Lock()
		ls.sessions++
		ls.mu.Unlock()
		return &loopSession{ls: ls}, nil
	}))
	srv.Domain = "loop.test"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ls.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ls
}

type loopSession struct{ ls *loopServer }

func (s *loopSession) Reset()        {}
func (s *loopSession) Logout() error { return nil }
func (s *loopSession) Mail(string, *smtp.MailOptions) error {
	return nil
}

func (s *loopSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == s.ls.refuse {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	return nil
}

func (s *loopSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.ls.mu.Lock()
	s.ls.queued++
	id := fmt.Sprintf("tx%d", s.ls.queued)
	s.ls.mu.Unlock()
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

// fakeWorld is a sender's world with a counting clock, fixed MX targets
// and the machine's network; sliceQueue hands out its records once.
type fakeWorld struct {
	clock   time.Duration
	targets []mxTarget
	dnsErr  error
	dialed  []string
}

func (w *fakeWorld) now() time.Duration { w.clock += time.Millisecond; return w.clock }

func (w *fakeWorld) mxTargets(context.Context) ([]mxTarget, error) { return w.targets, w.dnsErr }

func (w *fakeWorld) dial(ctx context.Context, t mxTarget, timeout time.Duration) (net.Conn, error) {
	w.dialed = append(w.dialed, t.node)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	return d.DialContext(ctx, "tcp", t.addr)
}

func (w *fakeWorld) ackedAt(conn net.Conn, now time.Duration) time.Duration {
	return now - time.Microsecond
}

type sliceQueue struct {
	recs  []*Record
	woken bool
}

func (q *sliceQueue) wait(context.Context) bool {
	if q.woken {
		return false
	}
	q.woken = true
	return true
}

func (q *sliceQueue) take() *Record {
	if len(q.recs) == 0 {
		return nil
	}
	rec := q.recs[0]
	q.recs = q.recs[1:]
	return rec
}

func newTestLoop(w *fakeWorld, perConn int, recs ...*Record) (*sendLoop, *int) {
	var mu sync.Mutex
	accepted := new(int)
	spec := &LoadSpec{SMTPTimeout: Duration(5 * time.Second), MessagesPerConnection: perConn}
	return &sendLoop{name: "sender0", spec: spec, seed: 1, filler: []byte(strings.Repeat(fillerLine, 8)),
		world: w, queue: &sliceQueue{recs: recs}, mu: &mu, accepted: accepted}, accepted
}

func testRecords(n int, mailbox func(i int) string) []*Record {
	out := make([]*Record, n)
	for i := range out {
		out[i] = &Record{Seq: i, Mailbox: mailbox(i), Size: 300}
	}
	return out
}

// TestSendLoopMXFallbackAndConnectionReuse: the shared sender loop skips
// an MX target that refuses the connection and one that answers 421,
// delivers to the next, sends MessagesPerConnection messages on one
// connection, keeps the connection after a rejected recipient, and records
// each outcome with its node, id and times.
func TestSendLoopMXFallbackAndConnectionReuse(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := closed.Addr().String()
	require.NoError(t, closed.Close())
	busy := startLoopServer(t, true, "")
	good := startLoopServer(t, false, "user2@example.com")

	w := &fakeWorld{targets: []mxTarget{{"n1", closedAddr}, {"n2", busy.addr}, {"n3", good.addr}}}
	recs := testRecords(3, func(i int) string { return fmt.Sprintf("user%d@example.com", i+1) })
	loop, accepted := newTestLoop(w, 2, recs...)
	loop.run(context.Background())

	assert.Equal(t, []string{"n1", "n2", "n3", "n1", "n2", "n3"}, w.dialed, "each session tries the targets in order")
	good.mu.Lock()
	assert.Equal(t, 2, good.sessions, "two messages on the first connection, the third on a second")
	good.mu.Unlock()
	assert.Equal(t, 2, *accepted)
	for i, want := range []struct {
		o    Outcome
		code int
		id   string
	}{{Accepted, 250, "tx1"}, {Rejected, 550, ""}, {Accepted, 250, "tx2"}} {
		rec := recs[i]
		assert.Equal(t, want.o, rec.Outcome, "record %d", i)
		assert.Equal(t, want.code, rec.Code, "record %d", i)
		assert.Equal(t, want.id, rec.ID, "record %d", i)
		assert.Equal(t, "n3", rec.Node, "record %d", i)
		assert.Less(t, rec.Start, rec.Done, "record %d", i)
		if want.o == Accepted {
			assert.Equal(t, rec.Done-time.Microsecond, rec.Acked, "record %d: the world's 250 send time", i)
		} else {
			assert.Zero(t, rec.Acked, "record %d", i)
		}
	}
}

// TestSendLoopFailures: no DNS answer fails the message as dns; no
// target that takes the connection fails it with the last target's name.
func TestSendLoopFailures(t *testing.T) {
	mailbox := func(int) string { return "user1@example.com" }

	w := &fakeWorld{dnsErr: errors.New("no answer")}
	recs := testRecords(1, mailbox)
	loop, _ := newTestLoop(w, 1, recs...)
	loop.run(context.Background())
	assert.Equal(t, Failed, recs[0].Outcome)
	assert.Equal(t, ReasonDNS, recs[0].Reason)
	assert.Empty(t, recs[0].Node)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, closed.Close())
	w = &fakeWorld{targets: []mxTarget{{"n1", closed.Addr().String()}}}
	recs = testRecords(1, mailbox)
	loop, _ = newTestLoop(w, 1, recs...)
	loop.run(context.Background())
	assert.Equal(t, Failed, recs[0].Outcome)
	assert.Equal(t, ReasonConnect, recs[0].Reason)
	assert.Equal(t, "n1", recs[0].Node)

	w = &fakeWorld{}
	recs = testRecords(1, mailbox)
	loop, _ = newTestLoop(w, 1, recs...)
	loop.run(context.Background())
	assert.Equal(t, Failed, recs[0].Outcome, "no target with a listener")
	assert.Empty(t, recs[0].Node)
}
