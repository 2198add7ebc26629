package peer

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"mailarray/node/bufpool"
)

// The peer stream carries the replication hot path, a copy with its
// pending entry (what PUT /v1/copies/{id} does) and pushed catalog entries
// (POST /v1/entries), over one long-lived, pipelined connection per peer
// instead of one HTTP/1.1 exchange each: no request line, header block,
// request and response objects or transport goroutine hand-offs per
// message. It is opened by an HTTP upgrade on the peer listener, so mutual
// TLS and the peer key guard it exactly as every other peer request:
//
//	GET /v1/stream HTTP/1.1
//	Connection: Upgrade
//	Upgrade: mailarray-peer/1
//
//	HTTP/1.1 101 Switching Protocols
//
// Then both sides send frames, each led by the big-endian length of what
// follows it:
//
//	request:  len u32 | id u32 | op u8 | body
//	reply:    len u32 | id u32 | status u16 | text
//
// The server runs requests concurrently (so copies still share group
// commits) and replies in any order, by id; status is the HTTP status the
// same request would have had, text its error. A peer that does not answer
// the upgrade with 101 (a node of an older version, during a rolling
// upgrade) is spoken to over plain HTTP until streamRetry has passed.
const (
	streamPath  = "/v1/stream"
	streamProto = "mailarray-peer/1"

	opPutCopy     byte = 1 // body: entry length u32 | catalog entry | copy
	opPushEntries byte = 2 // body: encodeEntries

	// streamMaxCopy: larger copies go over HTTP, so that a big message does
	// not hold up the small ones queued behind it on the stream.
	streamMaxCopy = 256 << 10
	// A stream's server holds at most streamBudget bytes of requests at
	// once, counted in units of streamBudgetUnit (a request takes at least
	// one: at most 1,024 run at once); its reader waits beyond.
	streamBudget     = 64 << 20
	streamBudgetUnit = 64 << 10
	// streamMaxEntry bounds the entry that leads a copy.
	streamMaxEntry = 64 << 10
	// streamMaxReply bounds a reply's text.
	streamMaxReply = 64 << 10
	// streamRetry is how long a peer that refused the upgrade is spoken to
	// over HTTP before the upgrade is tried again.
	streamRetry = time.Minute

	streamReqHeader   = 9
	streamReplyHeader = 10
)

// errStreamRefused: the peer answered the upgrade with something else
// than 101; the request goes over HTTP.
var errStreamRefused = errors.New("peer: stream refused")

// streams is a node's client side: one stream per peer address.
type streams struct {
	c       *Client
	mu      sync.Mutex
	conns   map[string]*peerStream // by peer address
	refused map[string]time.Time   // address -> until when HTTP is used
	closed  bool
	wg      sync.WaitGroup // the streams' reply readers
}

// peerStream is one upgraded connection to a peer.
type peerStream struct {
	s     *streams
	node  string
	addr  string
	ready chan struct{} // closed once dialled (or failed to)
	conn  net.Conn      // set before ready is closed

	// wlock lets one frame be written at a time. A channel, not a mutex:
	// a writer waiting for a blocked Write must still see its context end,
	// and in the simulator a goroutine waiting on a mutex would stop the
	// clock (docs/design.md).
	wlock chan struct{}

	mu      sync.Mutex
	seq     uint32
	pending map[uint32]*streamRequest
	err     error // set once the stream is broken; nothing more is sent
}

// streamRequest is a request waiting for its reply.
type streamRequest struct {
	reply chan streamReply
	sent  bool // its whole frame was written (under peerStream.mu)
}

type streamReply struct {
	status int
	text   []byte
	err    error
	unsent bool // the request never wholly left: it may be sent again
}

// call sends one request to node over its stream and waits for the reply.
// fill appends the request's body to the frame it is given. ok is false
// when node does not speak the stream (the caller uses HTTP).
func (s *streams) call(ctx context.Context, node, op string, code byte, fill func([]byte) []byte) (ok bool, err error) {
	st, err := s.get(ctx, node)
	if errors.Is(err, errStreamRefused) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("peer: %s %s: %w", node, op, err)
	}
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, RequestTimeout)
		defer cancel()
	}
	r := st.roundTrip(ctx, code, fill)
	if r.unsent && ctx.Err() == nil {
		// The stream broke before this request went out (the peer closed
		// an idle stream, say): once more on a fresh one.
		if st, err = s.get(ctx, node); errors.Is(err, errStreamRefused) {
			return false, nil
		} else if err != nil {
			return true, fmt.Errorf("peer: %s %s: %w", node, op, err)
		}
		r = st.roundTrip(ctx, code, fill)
	}
	switch {
	case r.err != nil:
		return true, fmt.Errorf("peer: %s %s: %w", node, op, r.err)
	case r.status/100 != 2:
		return true, fmt.Errorf("peer: %s %s: %w", node, op, &streamStatusError{r.status, string(r.text)})
	}
	return true, nil
}

// get returns the stream to node, dialling it if there is none.
func (s *streams) get(ctx context.Context, node string) (*peerStream, error) {
	addr := s.c.cfg.Resolver.PeerAddr(node)
	if addr == "" {
		return nil, fmt.Errorf("%w: %s", ErrUnreachable, node)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, net.ErrClosed
	}
	st := s.conns[addr]
	if st == nil {
		if until, ok := s.refused[addr]; ok {
			if time.Now().Before(until) {
				s.mu.Unlock()
				return nil, errStreamRefused
			}
			delete(s.refused, addr)
		}
		st = &peerStream{s: s, node: node, addr: addr, ready: make(chan struct{}), wlock: make(chan struct{}, 1), pending: make(map[uint32]*streamRequest)}
		if s.conns == nil {
			s.conns = make(map[string]*peerStream)
		}
		s.conns[addr] = st
		s.mu.Unlock()
		// The dial serves every request waiting for it: the context of the
		// one that started it bounds it only by its deadline's values, not
		// by its cancellation (DialTimeout bounds it anyway).
		st.dial(context.WithoutCancel(ctx))
	} else {
		s.mu.Unlock()
	}
	// A stream already ready is taken even by a caller whose context is
	// done (roundTrip then abandons the request alone): one select over
	// both would pick at random, and a simulated run would not replay
	// (after a long disk stall, callers resume with deadlines long past).
	select {
	case <-st.ready:
	default:
		select {
		case <-st.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	st.mu.Lock()
	err := st.err
	st.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return st, nil
}

// dial connects the stream and starts its reply reader; on failure the
// stream is broken (and forgotten, so the next call dials again).
func (st *peerStream) dial(ctx context.Context) {
	defer close(st.ready)
	conn, br, err := st.s.c.dialStream(ctx, st.addr)
	if err != nil {
		if errors.Is(err, errStreamRefused) {
			st.s.mu.Lock()
			if st.s.refused == nil {
				st.s.refused = make(map[string]time.Time)
			}
			st.s.refused[st.addr] = time.Now().Add(streamRetry)
			st.s.mu.Unlock()
			st.s.c.cfg.Log.Info("peer: stream refused; using HTTP", "peer", st.node, "err", err)
		}
		st.fail(err)
		return
	}
	st.s.mu.Lock()
	if st.s.closed {
		st.s.mu.Unlock()
		conn.Close()
		st.fail(net.ErrClosed)
		return
	}
	st.conn = conn
	st.s.wg.Add(1)
	st.s.mu.Unlock()
	go st.readReplies(br)
}

// dialStream connects to addr and upgrades the connection.
func (c *Client) dialStream(ctx context.Context, addr string) (net.Conn, *bufio.Reader, error) {
	ctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	raw, err := c.cfg.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	conn := raw
	// The upgrade exchange is bounded like the dial; the stream itself is
	// bounded per request, by its caller's context.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	if c.cfg.TLS != nil {
		tc := tls.Client(conn, c.cfg.TLS.client)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, err
		}
		conn = tc
	}
	var req strings.Builder
	req.WriteString("GET " + streamPath + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nUpgrade: " + streamProto + "\r\n")
	if c.cfg.Key != "" {
		req.WriteString(headerKey + ": " + c.cfg.Key + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), streamProto) {
		conn.Close()
		return nil, nil, fmt.Errorf("%w: %s", errStreamRefused, resp.Status)
	}
	if !stop() {
		conn.Close()
		return nil, nil, ctx.Err()
	}
	return conn, br, nil
}

// roundTrip writes one request frame and waits for its reply. A request
// whose context is cancelled is abandoned alone (a frame being written is
// finished first: the stream stays usable). One whose deadline passes
// breaks the stream too (closed, its other requests failed), so that the
// next request dials afresh instead of queueing behind a peer that does
// not answer, as net/http closes the connection of a request that timed
// out.
func (st *peerStream) roundTrip(ctx context.Context, code byte, fill func([]byte) []byte) streamReply {
	req := &streamRequest{reply: make(chan streamReply, 1)}
	st.mu.Lock()
	if st.err != nil {
		err := st.err
		st.mu.Unlock()
		return streamReply{err: err, unsent: true}
	}
	st.seq++
	id := st.seq
	st.pending[id] = req
	st.mu.Unlock()

	// A context already done abandons the request here, not in the select
	// below, which would pick at random between it and a free stream (and,
	// picking the stream, wrote the request, then broke the stream for
	// everyone from the context's AfterFunc).
	if err := ctx.Err(); err != nil {
		st.deliver(id, streamReply{err: fmt.Errorf("stream: %w", err)})
		return <-req.reply
	}
	select {
	case st.wlock <- struct{}{}:
	case <-ctx.Done():
		// Still queued: nothing of it was written.
		st.deliver(id, streamReply{err: fmt.Errorf("stream: %w", ctx.Err())})
		return <-req.reply
	}
	// The header is filled in below, once the body's length is known.
	frame := fill(bufpool.Get(0)[:streamReqHeader])
	binary.BigEndian.PutUint32(frame[0:], uint32(len(frame)-4))
	binary.BigEndian.PutUint32(frame[4:], id)
	frame[8] = code
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			st.fail(fmt.Errorf("stream: %w", ctx.Err()))
		} else {
			st.deliver(id, streamReply{err: fmt.Errorf("stream: %w", ctx.Err())})
		}
	})
	_, err := st.conn.Write(frame)
	<-st.wlock
	bufpool.Put(frame)
	if err != nil {
		st.fail(err)
	} else {
		st.mu.Lock()
		req.sent = true
		st.mu.Unlock()
	}
	r := <-req.reply // fail, the reader or the context answers it
	stop()
	return r
}

// deliver hands a reply to the request with that id, if it still waits.
func (st *peerStream) deliver(id uint32, r streamReply) {
	st.mu.Lock()
	req := st.pending[id]
	delete(st.pending, id)
	st.mu.Unlock()
	if req != nil {
		req.reply <- r
	}
}

// fail breaks the stream: closed, forgotten by its node, and every pending
// request answered with err.
func (st *peerStream) fail(err error) {
	st.mu.Lock()
	if st.err != nil {
		st.mu.Unlock()
		return
	}
	st.err = err
	// In the order they were sent, not the map's: the callers woken below
	// may each send again (a retry, or a copy moved to a fallback node on
	// one shared stream), and the simulator replays a run only if they
	// wake, and so write, in the same order every time. Whether each was
	// wholly written is read here, under the lock its writer sets it with.
	type failed struct {
		req    *streamRequest
		unsent bool
	}
	var pending []failed
	for _, id := range slices.Sorted(maps.Keys(st.pending)) {
		req := st.pending[id]
		// A request not wholly written was not run: it may be sent again.
		pending = append(pending, failed{req: req, unsent: !req.sent})
	}
	st.pending = nil
	st.mu.Unlock()
	if st.conn != nil {
		st.conn.Close()
	}
	st.s.mu.Lock()
	if st.s.conns[st.addr] == st {
		delete(st.s.conns, st.addr)
	}
	st.s.mu.Unlock()
	for _, f := range pending {
		f.req.reply <- streamReply{err: err, unsent: f.unsent}
	}
}

// readReplies reads reply frames until the connection ends.
func (st *peerStream) readReplies(br *bufio.Reader) {
	defer st.s.wg.Done()
	var hdr [streamReplyHeader]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			st.fail(err)
			return
		}
		n := binary.BigEndian.Uint32(hdr[0:])
		if n < streamReplyHeader-4 || n-(streamReplyHeader-4) > streamMaxReply {
			st.fail(fmt.Errorf("stream: bad reply frame (%d bytes)", n))
			return
		}
		r := streamReply{status: int(binary.BigEndian.Uint16(hdr[8:]))}
		if k := n - (streamReplyHeader - 4); k > 0 {
			r.text = make([]byte, k)
			if _, err := io.ReadFull(br, r.text); err != nil {
				st.fail(err)
				return
			}
		}
		st.deliver(binary.BigEndian.Uint32(hdr[4:]), r)
	}
}

// close breaks every stream and waits for their readers.
func (s *streams) close() {
	s.mu.Lock()
	s.closed = true
	var all []*peerStream
	for _, addr := range slices.Sorted(maps.Keys(s.conns)) { // replayable order (see fail)
		all = append(all, s.conns[addr])
	}
	s.mu.Unlock()
	for _, st := range all {
		<-st.ready
		st.fail(net.ErrClosed)
	}
	s.wg.Wait()
}

// StreamCounts returns how many streams the client has open to peers, and
// to how many peers it speaks HTTP because they refused the stream (for
// metrics).
func (c *Client) StreamCounts() (out, http int) {
	now := time.Now()
	c.streams.mu.Lock()
	defer c.streams.mu.Unlock()
	out = len(c.streams.conns)
	for _, until := range c.streams.refused {
		if now.Before(until) {
			http++
		}
	}
	return out, http
}

// streamStatusError is a stream request's answer that is not a success,
// by the HTTP status the same request would have had.
type streamStatusError struct {
	status int
	text   string
}

func (e *streamStatusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.text)
}
