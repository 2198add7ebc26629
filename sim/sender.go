package sim

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// The sender loop shared by the simulated load generator (loadgen.go, over
// simnet in virtual time) and the real-socket one (real_load.go, in wall
// time): take a queued message, resolve the MX targets, connect with MX
// fallback, send up to MessagesPerConnection messages on the connection,
// record each outcome. What differs between the two is behind senderWorld
// (clock, resolver, dialer, the 250's send time) and sendQueue (how
// messages reach the sender); smtpload.go has the SMTP dialogue itself.

// mxTarget is one MX target as a sender dials it.
type mxTarget struct {
	node string // the node's name, for Record.Node
	addr string // its SMTP listener, host:port
}

// senderWorld is what the loop needs from its generator, per sender.
type senderWorld interface {
	// now is the time since the load started: virtual in the simulator,
	// wall on real sockets.
	now() time.Duration
	// mxTargets resolves the array's MX targets, in preference order.
	mxTargets(ctx context.Context) ([]mxTarget, error)
	// dial connects to t's SMTP listener, giving up after timeout (or the
	// generator's own bound).
	dial(ctx context.Context, t mxTarget, timeout time.Duration) (net.Conn, error)
	// ackedAt is when the listener sent the 250 the sender read on conn at
	// now, since the load started; 0 where it cannot be known.
	ackedAt(conn net.Conn, now time.Duration) time.Duration
}

// sendQueue is how messages reach a sender.
type sendQueue interface {
	// wait blocks until a message may be queued; false when ctx ends.
	wait(ctx context.Context) bool
	// take returns the next queued message without blocking, or nil.
	take() *Record
}

// errNoMXTarget: no MX target could be dialed (none has a listener).
var errNoMXTarget = errors.New("sim: no MX target has an SMTP listener")

// sendLoop is one SMTP client (a relay sending to the array), delivering
// the messages queued to it in order.
type sendLoop struct {
	name   string // the client's name: EHLO <name>.load.test
	spec   *LoadSpec
	seed   uint64 // the run's, in each Message-ID
	filler []byte
	world  senderWorld
	queue  sendQueue

	// mu is the generator's: it guards the records and accepted, which the
	// report and the progress bar read from other goroutines.
	mu       *sync.Mutex
	accepted *int

	// conn is the current session's connection (the 250's send time).
	conn net.Conn
}

// run delivers queued messages until ctx ends.
func (l *sendLoop) run(ctx context.Context) {
	for l.queue.wait(ctx) {
		for ctx.Err() == nil {
			rec := l.queue.take()
			if rec == nil {
				break
			}
			l.session(ctx, rec)
		}
	}
}

// session delivers rec and then, on the same connection, up to
// MessagesPerConnection-1 more queued messages.
func (l *sendLoop) session(ctx context.Context, rec *Record) {
	start := l.world.now()
	timeout := l.spec.SMTPTimeout.D()
	targets, err := l.world.mxTargets(ctx)
	if err != nil {
		l.finish(rec, start, Failed, 0, ReasonDNS, "", "")
		return
	}
	c, node, stop, err := l.connect(ctx, targets, timeout)
	if err != nil {
		if code, reason := classify(err); code != 0 {
			l.finish(rec, start, Rejected, code, "", node, "")
		} else {
			l.finish(rec, start, Failed, 0, reason, node, "")
		}
		return
	}
	defer stop()
	defer c.Close()
	for sent := 0; ; {
		ok := l.transaction(c, rec, start, node)
		sent++
		if !ok || sent >= l.spec.MessagesPerConnection || ctx.Err() != nil {
			if ok {
				c.Quit()
			}
			return
		}
		if rec = l.queue.take(); rec == nil {
			c.Quit()
			return
		}
		start = l.world.now()
	}
}

// connect dials the MX targets in order until one greets with 220 and
// accepts EHLO. A target that refuses, times out or answers 421 is skipped
// (RFC 5321 section 5.1: try the next MX). node is the last target tried.
func (l *sendLoop) connect(ctx context.Context, targets []mxTarget, timeout time.Duration) (c *smtp.Client, node string, stop func() bool, err error) {
	lastErr := errNoMXTarget
	l.conn = nil
	for _, t := range targets {
		node = t.node
		conn, err := l.world.dial(ctx, t, timeout)
		if err != nil {
			lastErr = err
			continue
		}
		// Cancelling the load cuts the session at once.
		c, stop, err = greet(ctx, conn, timeout, l.name)
		if err != nil {
			lastErr = err
			continue
		}
		l.conn = conn
		return c, node, stop, nil
	}
	return nil, node, nil, lastErr
}

// transaction sends one message on c and records the outcome; it reports
// whether the connection may carry another.
func (l *sendLoop) transaction(c *smtp.Client, rec *Record, start time.Duration, node string) bool {
	return transact(c, rec, l.seed, l.filler, func(o Outcome, code int, reason, id string) {
		l.finish(rec, start, o, code, reason, node, id)
	})
}

// finish records rec's outcome, under the generator's mutex.
func (l *sendLoop) finish(rec *Record, start time.Duration, o Outcome, code int, reason, node, id string) {
	now := l.world.now()
	l.mu.Lock()
	rec.Start, rec.Done = start, now
	rec.Outcome, rec.Code, rec.Reason, rec.Node, rec.ID = o, code, reason, node, id
	if o == Accepted {
		*l.accepted++
		rec.Acked = l.world.ackedAt(l.conn, now)
	}
	l.mu.Unlock()
}
