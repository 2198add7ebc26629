package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/store"
)

// Many concurrent copies and pushes to one peer share one stream.
func TestStreamCarriesConcurrentRequests(t *testing.T) {
	h := newMemHandler()
	c, _ := pair(t, Config{}, h)
	var wg sync.WaitGroup
	errs := make(chan error, 80)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := []byte("copy " + strconv.Itoa(i))
			e := pendingEntry("id-"+strconv.Itoa(i), data)
			errs <- c.PutCopy(context.Background(), "s", data, &e)
			errs <- c.PushEntries(context.Background(), "s", []catalog.Entry{e})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	h.mu.Lock()
	copies, pushes := len(h.copies), h.pushes
	h.mu.Unlock()
	assert.Equal(t, 40, copies)
	assert.Equal(t, 40, pushes)
	out, http := c.StreamCounts()
	assert.Equal(t, 1, out, "one stream to the one peer")
	assert.Zero(t, http, "no peer spoken to over HTTP")
}

// oldPeer is a peer of an earlier version: the HTTP peer API without the
// stream. It stores what it is sent.
type oldPeer struct {
	addr     string
	upgrades atomic.Int32
	mu       sync.Mutex
	copies   map[string][]byte
	entries  int
}

func startOldPeer(t *testing.T) *oldPeer {
	o := &oldPeer{copies: map[string][]byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/stream", func(w http.ResponseWriter, r *http.Request) {
		o.upgrades.Add(1)
		http.NotFound(w, r)
	})
	mux.HandleFunc("PUT /v1/copies/{id}", func(w http.ResponseWriter, r *http.Request) {
		e, err := DecodeEntryHeader(r.Header.Get(headerEntry))
		data, _ := io.ReadAll(r.Body)
		if err != nil || e.ID != r.PathValue("id") || store.Checksum(data) != e.Sum {
			http.Error(w, "bad copy", http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		o.copies[e.ID] = data
		o.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/entries", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		es, err := DecodeEntries(b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		o.entries += len(es)
		o.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	o.addr = l.Addr().String()
	return o
}

// A peer that does not speak the stream (a rolling upgrade) gets its
// copies and pushes over HTTP, and is asked to upgrade once per
// streamRetry, not once per request.
func TestStreamFallsBackToHTTP(t *testing.T) {
	old := startOldPeer(t)
	r := &resolver{}
	r.set("old", old.addr)
	c := newClient(t, Config{}, r)
	ctx := context.Background()
	for i := range 5 {
		data := []byte("to an old peer " + string(rune('a'+i)))
		e := pendingEntry("id-"+string(rune('a'+i)), data)
		require.NoError(t, c.PutCopy(ctx, "old", data, &e))
		require.NoError(t, c.PushEntries(ctx, "old", []catalog.Entry{e}))
	}
	old.mu.Lock()
	copies, entries := len(old.copies), old.entries
	old.mu.Unlock()
	assert.Equal(t, 5, copies, "every copy went over HTTP")
	assert.Equal(t, 5, entries, "every push went over HTTP")
	assert.EqualValues(t, 1, old.upgrades.Load(), "one upgrade attempt within streamRetry")
	out, http := c.StreamCounts()
	assert.Equal(t, 0, out, "no stream to the old peer")
	assert.Equal(t, 1, http, "one peer spoken to over HTTP (mailarray_peer_streams{kind=\"http\"})")
}

// silentPeer accepts the upgrade, then reads requests and never answers;
// it answers 404 to every other request.
type silentPeer struct {
	addr     string
	upgrades atomic.Int32
}

func startSilentPeer(t *testing.T) *silentPeer {
	s := &silentPeer{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				br := bufio.NewReader(conn)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				if req.URL.Path != streamPath {
					// The node's other peer requests (load, anti-entropy).
					io.WriteString(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
					return
				}
				s.upgrades.Add(1)
				io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+streamProto+"\r\n\r\n")
				io.Copy(io.Discard, br)
			}()
		}
	}()
	s.addr = l.Addr().String()
	return s
}

// A request to a peer that never answers ends at its deadline, breaks the
// stream, and the next request dials a new one; a cancelled one does not
// break it.
func TestStreamTimeoutRedials(t *testing.T) {
	silent := startSilentPeer(t)
	r := &resolver{}
	r.set("mute", silent.addr)
	c := newClient(t, Config{}, r)
	data := []byte("a copy nobody acknowledges")
	e := pendingEntry("x1", data)
	// A cancelled request (its client went away) is abandoned alone.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.PutCopy(ctx, "mute", data, &e)
	require.ErrorIs(t, err, context.Canceled)
	out, _ := c.StreamCounts()
	require.Equal(t, 1, out, "the stream is kept")
	for i := range 2 {
		// The deadline must outlast the second attempt's dial and upgrade
		// (not bounded by it): a request whose deadline passed before it
		// was written is abandoned alone and breaks nothing. 200 ms, as
		// it was, left a loaded machine too little.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.PutCopy(ctx, "mute", data, &e)
		cancel()
		require.Error(t, err)
		assert.True(t, errors.Is(err, context.DeadlineExceeded), "attempt %d: %v", i, err)
		// The first uses the stream dialled above, and its timeout breaks
		// it; the second dials a fresh one.
		assert.EqualValues(t, i+1, silent.upgrades.Load(), "attempt %d", i)
	}
	out, _ = c.StreamCounts()
	assert.Zero(t, out, "the broken streams are forgotten")
}

// Bad frames get an error reply, or end the stream when it cannot be
// read on (a length beyond the limit); the node keeps serving.
func TestStreamBadFrames(t *testing.T) {
	h := newMemHandler()
	c, addr := pair(t, Config{}, h)
	ctx := context.Background()
	conn, br, err := c.dialStream(ctx, addr)
	require.NoError(t, err)
	defer conn.Close()
	request := func(id uint32, code byte, body []byte) {
		t.Helper()
		f := binary.BigEndian.AppendUint32(nil, uint32(5+len(body)))
		f = binary.BigEndian.AppendUint32(f, id)
		f = append(append(f, code), body...)
		_, err := conn.Write(f)
		require.NoError(t, err)
	}
	reply := func() (uint32, int, string) {
		t.Helper()
		var h [streamReplyHeader]byte
		_, err := io.ReadFull(br, h[:])
		require.NoError(t, err)
		text := make([]byte, binary.BigEndian.Uint32(h[:])-6)
		_, err = io.ReadFull(br, text)
		require.NoError(t, err)
		return binary.BigEndian.Uint32(h[4:]), int(binary.BigEndian.Uint16(h[8:])), string(text)
	}
	data := []byte("copy body")
	good := catalog.Entry{ID: "id-1", Mailbox: "alice@example.com", Size: int64(len(data)), Sum: store.Checksum(data), State: catalog.Pending}
	enc := good.Encode(nil)
	put := func(entry, data []byte) []byte {
		return append(append(binary.BigEndian.AppendUint32(nil, uint32(len(entry))), entry...), data...)
	}
	cases := []struct {
		name   string
		code   byte
		body   []byte
		status int
		text   string
	}{
		{"unknown op", 9, nil, http.StatusBadRequest, "unknown stream op 9"},
		{"short put", opPutCopy, []byte{1}, http.StatusBadRequest, "bad entry"},
		{"entry past the end", opPutCopy, binary.BigEndian.AppendUint32(nil, 1000), http.StatusBadRequest, "bad entry"},
		{"garbled entry", opPutCopy, put([]byte("garbage"), data), http.StatusBadRequest, "bad entry"},
		{"wrong checksum", opPutCopy, put(enc, []byte("other body")), http.StatusBadRequest, "checksum mismatch"},
		{"garbled entries", opPushEntries, []byte{0xff}, http.StatusBadRequest, ""},
		{"good copy", opPutCopy, put(enc, data), http.StatusNoContent, ""},
	}
	for i, tc := range cases {
		request(uint32(100+i), tc.code, tc.body)
		id, status, text := reply()
		assert.EqualValues(t, 100+i, id, tc.name)
		assert.Equal(t, tc.status, status, tc.name)
		if tc.text != "" {
			assert.Contains(t, text, tc.text, tc.name)
		}
	}
	got, err := h.GetCopy("id-1")
	require.NoError(t, err)
	assert.Equal(t, data, got, "the good copy was stored")

	// A length beyond any request ends the stream.
	_, err = conn.Write([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, opPutCopy})
	require.NoError(t, err)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the server closed the stream")
	// The server still serves new streams.
	conn2, _, err := c.dialStream(ctx, addr)
	require.NoError(t, err)
	conn2.Close()
}

// With the peer key the upgrade succeeds; without it, it is refused like
// any peer request (TestServerRefusesRequestsWithoutTheKey).
func TestStreamWithThePeerKey(t *testing.T) {
	h := newMemHandler()
	c, addr := pair(t, Config{Key: "s3cret-array-key"}, h)
	conn, _, err := c.dialStream(context.Background(), addr)
	require.NoError(t, err, "with the key")
	conn.Close()
	data := []byte("over the keyed stream")
	e := pendingEntry("k1", data)
	require.NoError(t, c.PutCopy(context.Background(), "s", data, &e))
	out, http := c.StreamCounts()
	assert.Equal(t, 1, out, "a stream, not HTTP")
	assert.Zero(t, http)
}

// pipeStream is a client stream over net.Pipe (unbuffered: a Write waits
// for the other end to read), and that other end.
func pipeStream() (*peerStream, net.Conn) {
	c, srv := net.Pipe()
	st := &peerStream{s: &streams{}, node: "p", addr: "a", ready: make(chan struct{}), conn: c,
		wlock: make(chan struct{}, 1), pending: map[uint32]*streamRequest{}}
	close(st.ready)
	return st, srv
}

func fill100(b []byte) []byte { return append(b, make([]byte, 100)...) }

// A request cancelled while it waits to be written is abandoned alone: the
// request being written goes on and gets its reply. (It used to break the
// stream, failing every copy in flight to that peer.)
func TestStreamCancelledRequestLeavesOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, srv := pipeStream()
		defer srv.Close()
		resA := make(chan streamReply, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resA <- st.roundTrip(ctx, opPutCopy, fill100) // waits in Write: nobody reads yet
		}()
		synctest.Wait()
		ctxB, cancelB := context.WithCancel(context.Background())
		resB := make(chan streamReply, 1)
		go func() { resB <- st.roundTrip(ctxB, opPutCopy, fill100) }() // waits for A's write
		synctest.Wait()
		cancelB()
		b := <-resB
		require.ErrorIs(t, b.err, context.Canceled)
		// The peer reads A's frame and answers it.
		br := bufio.NewReader(srv)
		var h [streamReqHeader]byte
		_, err := io.ReadFull(br, h[:])
		require.NoError(t, err)
		_, err = io.ReadFull(br, make([]byte, binary.BigEndian.Uint32(h[:])-5))
		require.NoError(t, err)
		st.s.wg.Add(1)
		go st.readReplies(bufio.NewReader(st.conn))
		reply := binary.BigEndian.AppendUint32(nil, 6)
		reply = append(reply, h[4:8]...)
		reply = binary.BigEndian.AppendUint16(reply, http.StatusNoContent)
		_, err = srv.Write(reply)
		require.NoError(t, err)
		a := <-resA
		require.NoError(t, a.err)
		assert.Equal(t, http.StatusNoContent, a.status)
		srv.Close()
		st.s.wg.Wait()
	})
}

// Requests queued behind a Write that never completes end at their
// deadlines. (Queued on a mutex, they stopped the simulator's clock, and
// with it every deadline: the run hung.)
func TestStreamQueuedRequestsMeetTheirDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, srv := pipeStream()
		defer srv.Close()
		done := make(chan streamReply, 3)
		for range 3 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				done <- st.roundTrip(ctx, opPutCopy, fill100)
			}()
		}
		start := time.Now()
		for range 3 {
			r := <-done
			assert.ErrorIs(t, r.err, context.DeadlineExceeded)
		}
		assert.Equal(t, 3*time.Second, time.Since(start), "all end at their deadline, in virtual time")
	})
}

// A request whose deadline passed before it was made fails alone, every
// time, and leaves the stream usable. Go's select picked at random between
// the expired context and the free stream: half the time the request was
// written and its deadline then broke the stream, failing every request
// in flight to that peer, and a simulated run did not replay from its
// seed (callers resuming after a long disk stall).
func TestStreamExpiredRequestLeavesTheStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, srv := pipeStream()
		defer srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		time.Sleep(2 * time.Second)
		for i := range 32 {
			r := st.roundTrip(ctx, opPutCopy, fill100)
			require.ErrorIs(t, r.err, context.DeadlineExceeded, "request %d", i)
			st.mu.Lock()
			err := st.err
			st.mu.Unlock()
			require.NoError(t, err, "request %d broke the stream", i)
		}
	})
}
