package simnet

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing/synctest"
	"time"
)

type eventKind uint8

const (
	evSyn    eventKind = iota + 1 // stream: connect request
	evSynAck                      // stream: connect accepted
	evRst                         // stream: reset (refused, crashed, aborted)
	evData                        // stream: payload
	evFin                         // stream: orderly close of one direction
	evPacket                      // datagram
	evTimer                       // AfterFunc callback
)

var kindNames = [...]string{evSyn: "SYN", evSynAck: "SYNACK", evRst: "RST", evData: "DATA", evFin: "FIN", evPacket: "UDP", evTimer: "TIMER"}

func (k eventKind) stream() bool { return k <= evFin }

// event is one network event: a stream segment, a datagram or a timer.
// Events are pooled by the Net; senders fill them under Net.mu.
type event struct {
	at   int64  // due time, ns since Net.epoch
	sent int64  // when it was queued, ns since Net.epoch
	ord  uint64 // canonical order, assigned by the driver
	key  string // stream, socket or timer name
	seq  uint64 // position within key
	kind eventKind
	lost bool // datagram drawn lost
	link *link
	pipe *pipe // stream events: the direction travelled

	src  *PacketConn // datagrams: sender
	dst  *Host       // datagrams: destination host and port
	port int

	data []byte // payload, owned by the event until delivered
	fn   func() // timers
}

// eventHeap is a binary min-heap by (at, ord). ord is unique and assigned in
// canonical order, so the heap's order is total and repeatable.
type eventHeap []*event

func (h eventHeap) less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].ord < h[j].ord
}

func (h *eventHeap) push(e *event) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *eventHeap) pop() *event {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = nil
	s = s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s.less(l, m) {
			m = l
		}
		if r < len(s) && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// newEventLocked takes an event from the pool.
func (n *Net) newEventLocked() *event {
	if k := len(n.free); k > 0 {
		e := n.free[k-1]
		n.free = n.free[:k-1]
		return e
	}
	return &event{}
}

func (n *Net) recycleLocked(e *event) {
	*e = event{}
	n.free = append(n.free, e)
}

// poke wakes the driver if it is waiting for work.
func (n *Net) poke() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// sendStream queues one segment of pipe p. It may be called with p.mu held.
func (n *Net) sendStream(p *pipe, kind eventKind, seq uint64, data []byte) {
	n.mu.Lock()
	e := n.newEventLocked()
	e.kind, e.key, e.seq, e.link, e.pipe, e.data = kind, p.key, seq, p.link, p, data
	wake := n.queueLocked(e, e.link)
	p.tail = nil
	if kind == evData {
		p.tail = e
	}
	n.mu.Unlock()
	if wake {
		n.poke()
	}
}

// queueLocked adds a stream segment or datagram sent now over l to the
// pending events and reports whether the driver must be poked: it need
// not be when the event cannot arrive before the driver wakes anyway.
func (n *Net) queueLocked(e *event, l *link) bool {
	e.sent = int64(time.Since(n.epoch))
	n.pending = append(n.pending, e)
	return l == nil || e.sent+int64(l.cfg.Latency) < n.wakeAt
}

// appendStream adds data to pipe p's last segment if that segment is
// still pending (written during this quiescent step) and stays within
// SegmentBytesMax, and reports whether it did. Writes that a goroutine
// makes one after the other without blocking (a reply line by line, HTTP
// headers then body) then travel as one segment, as TCP would coalesce
// them; each segment costs the simulator a driver step. Called with p.mu
// held.
func (n *Net) appendStream(p *pipe, data []byte) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := p.tail
	if e == nil || e.sent != int64(time.Since(n.epoch)) || len(e.data)+len(data) > n.cfg.SegmentBytesMax {
		// Nothing pending, or sent at an earlier instant (the driver
		// schedules late segments as of when they were sent).
		return false
	}
	if need := len(e.data) + len(data); need > cap(e.data) {
		// Move to a segment of the next class rather than let append
		// grow one that no pool takes back; past the classes, double.
		var grown []byte
		if need <= segLarge {
			grown = newSegment(need)
		} else {
			grown = make([]byte, need, max(need, 2*cap(e.data)))
		}
		copy(grown, e.data)
		freeSegment(e.data)
		e.data = grown[:len(e.data)]
	}
	e.data = append(e.data, data...)
	return true
}

// sendPacket queues a datagram from src to dst:port.
func (n *Net) sendPacket(src *PacketConn, seq uint64, dst *Host, port int, data []byte) {
	n.mu.Lock()
	e := n.newEventLocked()
	e.kind, e.key, e.seq, e.src, e.dst, e.port, e.data = evPacket, src.key, seq, src, dst, port, data
	e.link = n.linkLocked(src.host, dst)
	wake := n.queueLocked(e, e.link)
	n.mu.Unlock()
	if wake {
		n.poke()
	}
}

// AfterFunc runs f on the driver goroutine d after now, in canonical order
// with the network's events: at equal times, by (key, call order within
// key). f must not block (it stalls the whole network) and must not call
// synctest.Wait. Calls with the same key should come from one goroutine, or
// their order is not repeatable. The scenario uses it to start actors and
// inject faults at exact virtual times; Cluster uses it for membership
// events.
func (n *Net) AfterFunc(d time.Duration, key string, f func()) {
	at := int64(time.Since(n.epoch) + max(d, 0))
	n.mu.Lock()
	n.timerSeq[key]++
	e := n.newEventLocked()
	e.kind, e.key, e.seq, e.at, e.fn = evTimer, key, n.timerSeq[key], at, f
	e.sent = int64(time.Since(n.epoch))
	n.pending = append(n.pending, e)
	wake := at < n.wakeAt
	n.mu.Unlock()
	if wake {
		n.poke()
	}
}

// Start runs the driver on a new goroutine and returns the function that
// stops it: stop lets the driver drain the queue, then waits for it to
// return. See Run for the teardown order.
func (n *Net) Start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// Run is the driver: it delivers every network event, one at a time, each
// after every other goroutine of the bubble is durably blocked
// (synctest.Wait), in canonical order. It returns once ctx is done and the
// queue is drained (segments held by a partition are abandoned). It must run
// inside the synctest bubble of NewNet, and nothing else in the bubble may
// call synctest.Wait while it runs.
//
// Teardown order, so that every goroutine is gone before the bubble ends:
// stop clients and close idle pooled conns (http.Transport's
// CloseIdleConnections), close servers (http.Server.Close, not Shutdown,
// which polls with global-rand jitter), then end ctx: Run delivers the
// closing segments still queued and returns.
func (n *Net) Run(ctx context.Context) {
	n.mu.Lock()
	if n.running {
		n.mu.Unlock()
		panic("simnet: invariant violated: two drivers running on one Net")
	}
	n.running = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.running = false
		n.flushNotesLocked()
		n.mu.Unlock()
	}()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	done := ctx.Done()
	var recycle []*event
	for {
		synctest.Wait() // the bubble is quiescent: what happened since the last step is complete
		n.mu.Lock()
		n.wakeAt = math.MinInt64 // running: whatever is sent meanwhile, this step sees
		n.steps++
		for _, e := range recycle {
			n.recycleLocked(e)
		}
		recycle = recycle[:0]
		n.flushNotesLocked()
		now := int64(time.Since(n.epoch))
		if len(n.pending) > 0 {
			n.scheduleLocked(math.MaxInt64)
		}
		var next *event
		for len(n.sched) > 0 && n.sched[0].at <= now {
			if e := n.sched.pop(); n.admitLocked(e) {
				next = e
				break
			}
		}
		if next != nil {
			n.mu.Unlock()
			if !n.deliver(next) {
				recycle = append(recycle, next)
			}
			recycle = append(recycle, n.takeApplied()...)
			continue
		}
		if len(n.sched) == 0 {
			n.wakeAt = math.MaxInt64
			n.mu.Unlock()
			if done == nil {
				return
			}
			select {
			case <-n.kick:
			case <-done:
				done = nil
			}
			continue
		}
		wait := time.Duration(n.sched[0].at - now)
		n.wakeAt = n.sched[0].at
		n.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-n.kick:
			timer.Stop()
		case <-done:
			done = nil
			timer.Stop()
		}
	}
}

// scheduleLocked orders the pending events canonically and draws their
// latency and loss in that order, so that the draws do not depend on which
// goroutine sent first.
//
// Events sent at earlier instants, that the driver was not poked for (they
// could not be due before it woke), come first, instant by instant, and
// are drawn as of when they were sent: the draws, the link queues and the
// canonical order are those a step at each of those instants would have
// made. Only events sent before until are scheduled (the driver passes the
// end of time; SetLink, the current instant).
func (n *Net) scheduleLocked(until int64) {
	slices.SortFunc(n.pending, func(a, b *event) int {
		if c := cmp.Compare(a.sent, b.sent); c != 0 {
			return c
		}
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	k := 0
	for k < len(n.pending) && n.pending[k].sent < until {
		e := n.pending[k]
		if e.pipe != nil && e.pipe.tail == e {
			e.pipe.tail = nil // scheduled: later writes start a new segment
		}
		if e.kind != evTimer {
			e.at = n.drawLocked(e, e.sent)
		}
		e.ord = n.ord
		n.ord++
		n.sched.push(e)
		k++
	}
	rest := copy(n.pending, n.pending[k:])
	clear(n.pending[rest:])
	n.pending = n.pending[:rest]
}

// drawLocked returns when e arrives: after the link's queue drains and the
// segment is serialised, plus latency, jitter and, for a lost stream
// segment, one retransmit timeout; never before the stream's previous
// segment.
func (n *Net) drawLocked(e *event, now int64) int64 {
	l := e.link
	at := now
	if bw := l.cfg.BandwidthBytesPerSec; bw > 0 {
		size := int64(len(e.data) + n.cfg.SegmentOverheadBytes)
		l.busyUntil = max(l.busyUntil, now) + size*int64(time.Second)/bw
		at = l.busyUntil
	}
	at += int64(l.cfg.Latency)
	if j := l.cfg.Jitter; j > 0 {
		at += n.rng.Int64N(int64(j))
	}
	if p := l.cfg.LossRate; p > 0 && n.rng.Float64() < p {
		if e.kind == evPacket {
			e.lost = true
		} else {
			at += int64(n.cfg.RetransmitTimeout)
		}
	}
	if p := e.pipe; p != nil {
		at = max(at, p.lastAt) // streams are FIFO
		p.lastAt = at
	}
	return at
}

// Outcomes of an event, hashed into the digest.
const (
	outDelivered = 'D'
	outDropped   = 'X'
	outStalled   = 'S'
)

// admitLocked decides the fate of a due event: held by a partition,
// dropped, or to be delivered (true).
func (n *Net) admitLocked(e *event) bool {
	out := byte(outDelivered)
	switch {
	case e.kind == evTimer:
	case e.link.blocked() && e.kind.stream():
		out = outStalled
	case e.link.held() && !e.link.blocked():
		out = outStalled // a stalled link or a paused host queues datagrams too
	case e.link.blocked() || e.lost:
		out = outDropped
	}
	n.hashLocked(e, out)
	switch out {
	case outStalled:
		n.stalled = append(n.stalled, e)
		return false
	case outDropped:
		n.dropped++
		e.link.dropped++
		n.recycleLocked(e)
		return false
	}
	n.events++
	if l := e.link; l != nil {
		l.messages++
		l.bytes += int64(len(e.data))
		l.from.sent++
		l.to.received++
		l.maxDelay = max(l.maxDelay, e.at-e.sent)
	}
	return true
}

func (n *Net) hashLocked(e *event, out byte) {
	b := binary.LittleEndian.AppendUint64(n.scratch[:0], uint64(e.at))
	b = binary.LittleEndian.AppendUint64(b, e.seq)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.data)))
	b = append(b, byte(e.kind), out)
	b = append(b, e.key...)
	n.digest.Write(b)
	n.digest.Write(e.data)
	n.scratch = b
	if n.cfg.Trace != nil {
		fmt.Fprintf(n.cfg.Trace, "%v %c %s %s #%d len=%d\n", time.Duration(e.at), out, kindNames[e.kind], e.key, e.seq, len(e.data))
	}
}

// deliver performs e on the driver goroutine, outside Net.mu. It reports
// whether the event was kept (held back for in-order delivery).
func (n *Net) deliver(e *event) (kept bool) {
	switch {
	case e.kind == evTimer:
		e.fn()
	case e.kind == evPacket:
		e.dst.deliverPacket(e)
	default:
		return e.pipe.arrive(e)
	}
	return false
}

// takeApplied returns the held-back events that deliver applied in the
// last step; the driver recycles them. Only the driver calls it.
func (n *Net) takeApplied() []*event {
	a := n.applied
	n.applied = n.applied[:0]
	return a
}
