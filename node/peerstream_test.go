package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/store"
)

// The replication of a cluster goes over one stream per peer: every copy
// and push of many concurrent deliveries shares it.
func TestPeerStreamCarriesReplication(t *testing.T) {
	c := newTestCluster(t, 2, 2, 2)
	sent := deliverMany(t, c, 40)
	c.waitConverged(10 * time.Second)
	assertMailbox(t, c.nodes["n2"], sent)
	assertMailbox(t, c.nodes["n1"], sent)
	for name, nd := range c.nodes {
		out, in, http := nd.peer.streamCounts()
		assert.Equal(t, 1, out, "%s replicates over one stream to its one peer", name)
		assert.Equal(t, 1, in, "%s serves one stream, its peer's", name)
		assert.Zero(t, http, "%s speaks HTTP to no peer", name)
	}
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
		e, err := decodeEntryHeader(r.Header.Get(headerEntry))
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
		es, err := decodeEntries(b)
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

// addFakePeer makes a storage member name whose peer API is at addr, and
// returns n1 once it has it in its ring.
func (c *testCluster) addFakePeer(name, addr string) *Node {
	c.t.Helper()
	c.group.Set(env.Member{Name: name, Addr: net.IPv4(127, 0, 0, 1), Status: env.StatusAlive, Tags: map[string]string{env.TagPeer: addr, env.TagRoles: "store"}})
	n1 := c.nodes["n1"]
	require.Eventually(c.t, func() bool { return slices.Contains(n1.members.Table().Ring, name) }, 5*time.Second, 5*time.Millisecond)
	return n1
}

// A peer that does not speak the stream (a rolling upgrade) gets its
// copies and pushes over HTTP, and is asked to upgrade once per
// streamRetry, not once per request.
func TestPeerStreamFallsBackToHTTP(t *testing.T) {
	c := newTestCluster(t, 1, 2, 2)
	old := startOldPeer(t)
	n1 := c.addFakePeer("old", old.addr)
	for i := range 5 {
		_, err := send(t, n1.Addr("smtp"), []string{"alice@example.com"}, testMessage("to an old peer "+string(rune('a'+i)), 800))
		require.NoError(t, err, "250 once the old peer holds the second copy")
	}
	old.mu.Lock()
	copies := len(old.copies)
	old.mu.Unlock()
	assert.Equal(t, 5, copies, "every second copy went over HTTP")
	require.Eventually(t, func() bool {
		old.mu.Lock()
		defer old.mu.Unlock()
		return old.entries >= 5
	}, 5*time.Second, 10*time.Millisecond, "the commits were pushed over HTTP")
	assert.EqualValues(t, 1, old.upgrades.Load(), "one upgrade attempt within streamRetry")
	out, _, http := n1.peer.streamCounts()
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
func TestPeerStreamTimeoutRedials(t *testing.T) {
	c := newTestCluster(t, 1, 1, 1)
	silent := startSilentPeer(t)
	n1 := c.addFakePeer("mute", silent.addr)
	data := []byte("a copy nobody acknowledges")
	e := catalog.Entry{ID: "x1", Mailbox: "alice@example.com", Size: int64(len(data)), Sum: store.Checksum(data), State: catalog.Pending}
	// A cancelled request (its client went away) is abandoned alone.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := n1.peer.putCopy(ctx, "mute", data, &e)
	require.ErrorIs(t, err, context.Canceled)
	n1.peer.streams.mu.Lock()
	require.Len(t, n1.peer.streams.conns, 1, "the stream is kept")
	n1.peer.streams.mu.Unlock()
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := n1.peer.putCopy(ctx, "mute", data, &e)
		cancel()
		require.Error(t, err)
		assert.True(t, errors.Is(err, context.DeadlineExceeded), "attempt %d: %v", i, err)
		// The first uses the stream dialled above, and its timeout breaks
		// it; the second dials a fresh one.
		assert.EqualValues(t, i+1, silent.upgrades.Load(), "attempt %d", i)
	}
	n1.peer.streams.mu.Lock()
	defer n1.peer.streams.mu.Unlock()
	assert.Empty(t, n1.peer.streams.conns, "the broken streams are forgotten")
}

// Bad frames get an error reply, or end the stream when it cannot be
// read on (a length beyond the limit); the node keeps serving.
func TestPeerStreamBadFrames(t *testing.T) {
	c := newTestCluster(t, 1, 1, 1)
	n1 := c.nodes["n1"]
	ctx := context.Background()
	conn, br, err := n1.peer.dialStream(ctx, n1.Addr("peer"))
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
	got, err := n1.store.Get("id-1")
	require.NoError(t, err)
	assert.Equal(t, data, got, "the good copy was stored")

	// A length beyond any request ends the stream.
	_, err = conn.Write([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, opPutCopy})
	require.NoError(t, err)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the server closed the stream")
	// The node still serves new streams.
	conn2, _, err := n1.peer.dialStream(ctx, n1.Addr("peer"))
	require.NoError(t, err)
	conn2.Close()
}

// With the peer key the upgrade succeeds; without it, it is refused like
// any peer request (TestPeerAPIRefusesRequestsWithoutTheKey).
func TestPeerStreamWithThePeerKey(t *testing.T) {
	c := &testCluster{t: t, nodes: map[string]*Node{}, dirs: map[string]string{}, r: 1, w: 1, users: testUsers}
	cfg := c.config("n1")
	cfg.PeerKey = "s3cret-array-key"
	n, err := New(cfg, &Env{Net: &env.RealNet{}, Rand: env.NewRand(1), Membership: staticSelf("n1"), DataDir: cfg.DataDir, Log: testLogger(t)})
	require.NoError(t, err)
	require.NoError(t, n.Start())
	defer n.Close()
	conn, _, err := n.peer.dialStream(context.Background(), n.Addr("peer"))
	require.NoError(t, err, "with the key")
	conn.Close()
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
func TestPeerStreamCancelledRequestLeavesOthers(t *testing.T) {
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
func TestPeerStreamQueuedRequestsMeetTheirDeadline(t *testing.T) {
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
func TestPeerStreamExpiredRequestLeavesTheStream(t *testing.T) {
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
