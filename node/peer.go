package node

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/pingcap/failpoint"

	"mailarray/node/bufpool"
	"mailarray/node/catalog"
	"mailarray/node/store"
)

// The peer API: node-to-node HTTP over Env.Net on the --peer listener.
//
//	PUT    /v1/copies/{id}      store a copy; X-Entry carries its (pending) catalog entry
//	GET    /v1/copies/{id}      fetch a copy; X-Sum is its SHA-256, verified by the reader
//	HEAD   /v1/copies/{id}      does the node hold a copy
//	POST   /v1/entries          merge a batch of catalog entries (push)
//	GET    /v1/entries/{id}     one catalog entry
//	POST   /v1/abort/{id}       abort the listener's transaction of a pending entry (txn.go)
//	GET    /v1/buckets          the anti-entropy bucket digests (catalog.Buckets)
//	GET    /v1/buckets/{b}      the entries of one bucket
//	POST   /v1/locks/{mailbox}  take a mailbox lock (owner, ttl_ms); 409 if held
//	DELETE /v1/locks/{mailbox}  release it (owner)
//	GET    /v1/uids/{mailbox}   highest IMAP UID and entries above since=N (imap_uid.go)
//	POST   /v1/copy-batch       many copies in one answer (readbatch.go)
//	GET    /v1/stream           upgrade to the replication stream (peerstream.go):
//	                            copies and pushes, pipelined on one connection
//	GET    /v1/load             the node's load report (JSON)
//	GET    /v1/mirror           the node's mirroring table (JSON)
//	GET    /v1/status           the node's status (JSON)
//	POST   /v1/rebalance        start moving copies to their current placement
//
// With peer-ca/peer-cert/peer-cert-key the API speaks mutual TLS: only
// holders of a certificate from the array's CA get through, and nothing
// crosses the network in clear. When a peer key is configured every
// request must also carry it in X-Mailarray-Key. With neither, the API is
// open to whoever reaches the port: firewall it.

const (
	headerEntry = "X-Entry"
	headerSum   = "X-Sum"
	headerKey   = "X-Mailarray-Key"

	// maxEntriesBody bounds one pushed batch of entries.
	maxEntriesBody = 16 << 20
	// peerTimeout bounds one peer request.
	peerTimeout = 10 * time.Second
	// peerDialTimeout bounds connecting to a peer.
	peerDialTimeout = 2 * time.Second
)

type peerService struct {
	n       *Node
	srv     *http.Server
	tr      *http.Transport
	tls     *peerTLS // nil: plain HTTP
	scheme  string
	streams streams // client side of the peer streams (peerstream.go)

	// The streams served, which the HTTP server no longer tracks once
	// upgraded.
	smu     sync.Mutex
	sconns  map[net.Conn]struct{}
	sclosed bool
	swg     sync.WaitGroup
}

func (n *Node) startPeer() error {
	tr := &http.Transport{
		// A peer that vanished without a reset (host down, partition) must
		// not hold a write for the whole request timeout.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, peerDialTimeout)
			defer cancel()
			return n.env.Net.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	p := &peerService{n: n, tr: tr, scheme: "http://"}
	p.streams.p = p
	if n.cfg.PeerCA != "" {
		pt, err := newPeerTLS(n.cfg.PeerCA, n.cfg.PeerCert, n.cfg.PeerCertKey)
		if err != nil {
			return err
		}
		tr.TLSClientConfig = pt.client
		p.tls, p.scheme = pt, "https://"
	}
	n.peer = p
	if n.cfg.PeerAddr == "" {
		return nil
	}
	l, err := n.listen("peer", n.cfg.PeerAddr)
	if err != nil {
		return err
	}
	if p.tls != nil {
		l = tls.NewListener(l, p.tls.server)
	}
	p.srv = &http.Server{Handler: p.handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	n.serve("peer", func() error {
		if err := p.srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return nil
}

// close follows the teardown order that leaves no goroutine behind: idle
// client connections first, then the server (Close, not Shutdown, whose
// polling uses global randomness).
func (p *peerService) close() {
	p.streams.close()
	p.tr.CloseIdleConnections()
	if p.srv != nil {
		p.srv.Close()
	}
	p.closeStreams()
}

func (p *peerService) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/copies/{id}", p.handlePutCopy)
	mux.HandleFunc("GET /v1/copies/{id}", p.handleGetCopy)
	mux.HandleFunc("HEAD /v1/copies/{id}", p.handleHeadCopy)
	mux.HandleFunc("POST /v1/entries", p.handlePostEntries)
	mux.HandleFunc("GET /v1/entries/{id}", p.handleGetEntry)
	mux.HandleFunc("POST /v1/abort/{id}", p.handleAbort)
	mux.HandleFunc("GET /v1/buckets", p.handleGetBuckets)
	mux.HandleFunc("GET /v1/buckets/{b}", p.handleGetBucket)
	mux.HandleFunc("POST /v1/locks/{mailbox}", p.handlePostLock)
	mux.HandleFunc("DELETE /v1/locks/{mailbox}", p.handleDeleteLock)
	mux.HandleFunc("GET /v1/uids/{mailbox}", p.handleGetUIDs)
	mux.HandleFunc("POST /v1/copy-batch", p.handleCopyBatch)
	mux.HandleFunc("GET "+streamPath, p.handleStream)
	mux.HandleFunc("GET /v1/load", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, p.n.Load()) })
	mux.HandleFunc("GET /v1/mirror", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, p.n.members.Table()) })
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, p.n.Status()) })
	mux.HandleFunc("POST /v1/rebalance", func(w http.ResponseWriter, r *http.Request) {
		p.n.repl.triggerRebalance()
		w.WriteHeader(http.StatusAccepted)
	})
	return p.authorize(mux)
}

func (p *peerService) authorize(h http.Handler) http.Handler {
	key := []byte(p.n.cfg.PeerKey)
	if len(key) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(headerKey)), key) != 1 {
			p.n.log.Warn("peer: unauthenticated request refused", "remote", r.RemoteAddr, "path", r.URL.Path)
			http.Error(w, "peer key required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (p *peerService) handlePutCopy(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e, err := decodeEntryHeader(r.Header.Get(headerEntry))
	if err != nil || e.ID != id {
		http.Error(w, "bad entry", http.StatusBadRequest)
		return
	}
	// The store frames its own copy of data: the body buffer is reused.
	data, err := readBodyInto(bufpool.Get(0), r.Body, r.ContentLength, p.n.cfg.MaxMessageBytes+1<<20)
	defer bufpool.Put(data)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	status, text := p.storeCopy(e, data)
	writeStatus(w, status, text)
}

// storeCopy stores a copy sent by a peer with its pending entry e: the
// status to answer (204 once durable) and the error's text.
func (p *peerService) storeCopy(e catalog.Entry, data []byte) (int, string) {
	p.n.env.ChargeCPU(len(data))
	if store.Checksum(data) != e.Sum {
		return http.StatusBadRequest, "checksum mismatch"
	}
	if err := p.n.writeLocal(context.Background(), data, e); err != nil {
		if errors.Is(err, errCopyDeleted) {
			// The id is final here: a 204 would count a copy towards a
			// quorum whose transaction was already resolved away.
			return http.StatusConflict, copyDeletedText
		}
		p.n.log.Error("peer: store copy", "id", e.ID, "err", err)
		return http.StatusInsufficientStorage, "store failed"
	}
	return http.StatusNoContent, ""
}

// copyDeletedText is the error text of the 409 that refuses a copy whose
// entry is a tombstone on the receiving node.
const copyDeletedText = "entry deleted"

// writeStatus answers with status, and text as the error when it is not
// a success.
func writeStatus(w http.ResponseWriter, status int, text string) {
	if status/100 == 2 {
		w.WriteHeader(status)
		return
	}
	http.Error(w, text, status)
}

func (p *peerService) handleGetCopy(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := p.n.env.Inject("peer.fetch"); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	data, err := p.n.store.Get(id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		http.Error(w, "no copy", http.StatusNotFound)
		return
	case errors.Is(err, store.ErrCorrupt):
		p.n.log.Error("peer: copy fails its checksum", "id", id)
		http.Error(w, "corrupt copy", http.StatusConflict)
		return
	case err != nil:
		http.Error(w, "store failed", http.StatusInternalServerError)
		return
	}
	sum := store.Checksum(data)
	w.Header().Set(headerSum, hex.EncodeToString(sum[:]))
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

func (p *peerService) handleHeadCopy(w http.ResponseWriter, r *http.Request) {
	if !p.n.store.Has(r.PathValue("id")) {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (p *peerService) handlePostEntries(w http.ResponseWriter, r *http.Request) {
	// Decoding copies everything out of body: the buffer is reused.
	body, err := readBodyInto(bufpool.Get(0), r.Body, r.ContentLength, maxEntriesBody+1)
	defer bufpool.Put(body)
	if err != nil || len(body) > maxEntriesBody {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	status, text := p.applyEntries(body)
	writeStatus(w, status, text)
}

// applyEntries merges a pushed batch of entries (encodeEntries): the
// status to answer and the error's text.
func (p *peerService) applyEntries(body []byte) (int, string) {
	entries, err := decodeEntries(body)
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	// The env twin of the catalog.apply failpoint, for pushed entries: a
	// node whose catalog refuses merges from its peers.
	if err := p.n.env.Inject("catalog.apply"); err != nil {
		return http.StatusInternalServerError, "apply failed"
	}
	if _, err := p.n.cat.Apply(entries...); err != nil {
		return http.StatusInternalServerError, "apply failed"
	}
	return http.StatusNoContent, ""
}

func (p *peerService) handleGetEntry(w http.ResponseWriter, r *http.Request) {
	e, ok := p.n.cat.Get(r.PathValue("id"))
	if !ok {
		http.Error(w, "no entry", http.StatusNotFound)
		return
	}
	w.Write(e.Encode(nil))
}

func (p *peerService) handleGetBuckets(w http.ResponseWriter, r *http.Request) {
	p.n.repl.answerHorizon(w, r) // before the digests: see bucketsExchange
	d := p.n.cat.BucketDigests()
	buf := make([]byte, 0, 8*len(d))
	for _, v := range d {
		buf = binary.LittleEndian.AppendUint64(buf, v)
	}
	w.Write(buf)
}

func (p *peerService) handleGetBucket(w http.ResponseWriter, r *http.Request) {
	b, err := strconv.Atoi(r.PathValue("b"))
	if err != nil || b < 0 || b >= catalog.Buckets {
		http.Error(w, "bad bucket", http.StatusBadRequest)
		return
	}
	w.Write(encodeEntries(p.n.cat.Bucket(b)))
}

func (p *peerService) handlePostLock(w http.ResponseWriter, r *http.Request) {
	owner := r.URL.Query().Get("owner")
	ttl, _ := strconv.Atoi(r.URL.Query().Get("ttl_ms"))
	if owner == "" || ttl <= 0 {
		http.Error(w, "owner and ttl_ms required", http.StatusBadRequest)
		return
	}
	if !p.n.locks.acquire(r.PathValue("mailbox"), owner, time.Duration(ttl)*time.Millisecond) {
		http.Error(w, "in use", http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (p *peerService) handleDeleteLock(w http.ResponseWriter, r *http.Request) {
	p.n.locks.release(r.PathValue("mailbox"), r.URL.Query().Get("owner"))
	w.WriteHeader(http.StatusNoContent)
}

// --- client side ---

// errPeerUnreachable: the peer is not a live member or has no peer address.
var errPeerUnreachable = errors.New("node: peer unreachable")

func (p *peerService) url(node, path string) (string, error) {
	addr := p.n.members.PeerAddr(node)
	if addr == "" {
		return "", fmt.Errorf("%w: %s", errPeerUnreachable, node)
	}
	return p.scheme + addr + path, nil
}

func (p *peerService) do(ctx context.Context, method, node, path string, body []byte, hdr map[string]string) (*http.Response, error) {
	u, err := p.url(node, path)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// The timeout covers the exchange and the reading of the body; the
	// body's Close ends it.
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if p.n.cfg.PeerKey != "" {
		req.Header.Set(headerKey, p.n.cfg.PeerKey)
	}
	// The transport itself, not an http.Client: the peer API neither
	// redirects nor sets cookies, and the client's support for both cloned
	// every request's header and armed a second timer per request.
	resp, err := p.tr.RoundTrip(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("node: peer %s %s %s: %w", node, method, path, err)
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

// cancelOnClose ends a request's context when its response body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// readBody reads r to its end, at most limit bytes (limit < 0: no limit),
// into a buffer sized from the declared length when there is one:
// io.ReadAll's doubling growth reallocated and copied every message body
// several times, a large share of the simulator's allocations.
func readBody(r io.Reader, length, limit int64) ([]byte, error) {
	return readBodyInto(nil, r, length, limit)
}

// readBodyInto is readBody reading into dst when the body fits it.
func readBodyInto(dst []byte, r io.Reader, length, limit int64) ([]byte, error) {
	if limit >= 0 {
		r = io.LimitReader(r, limit)
	}
	if length <= 0 || (limit >= 0 && length > limit) {
		return io.ReadAll(r)
	}
	var buf []byte
	if int64(cap(dst)) >= length {
		buf = dst[:length]
	} else {
		buf = make([]byte, length)
	}
	if n, err := io.ReadFull(r, buf); err != nil {
		return buf[:n], err
	}
	// Whatever follows the declared length (nothing, for net/http).
	var probe [1]byte
	for {
		k, err := r.Read(probe[:])
		switch {
		case k > 0:
			rest, err := io.ReadAll(r)
			return append(append(buf, probe[:k]...), rest...), err
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return buf, err
		}
	}
}

// call runs a request and returns the body of a 2xx answer.
func (p *peerService) call(ctx context.Context, method, node, path string, body []byte, hdr map[string]string) (int, []byte, error) {
	resp, err := p.do(ctx, method, node, path, body, hdr)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body, resp.ContentLength, -1)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("node: peer %s %s: read: %w", node, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, b, fmt.Errorf("node: peer %s %s %s: %s: %s", node, method, path, resp.Status, bytes.TrimSpace(b))
	}
	return resp.StatusCode, b, nil
}

func (p *peerService) putCopy(ctx context.Context, node string, data []byte, e *catalog.Entry) error {
	enc := e.Encode(nil)
	ok, err := false, error(nil)
	if len(data) <= streamMaxCopy && len(enc) <= streamMaxEntry {
		ok, err = p.streams.call(ctx, node, "put copy", opPutCopy, func(b []byte) []byte {
			b = binary.BigEndian.AppendUint32(b, uint32(len(enc)))
			return append(append(b, enc...), data...)
		})
	}
	if !ok {
		var code int
		code, _, err = p.call(ctx, http.MethodPut, node, "/v1/copies/"+url.PathEscape(e.ID), data,
			map[string]string{headerEntry: base64.StdEncoding.EncodeToString(enc)})
		if code == http.StatusConflict {
			err = fmt.Errorf("%w: on %s: %w", errCopyDeleted, node, err)
		}
	} else if se := (*streamStatusError)(nil); errors.As(err, &se) && se.status == http.StatusConflict {
		err = fmt.Errorf("%w: on %s: %w", errCopyDeleted, node, err)
	}
	if err == nil {
		// Chaos failpoint (make chaos only): the copy landed on node but its
		// acknowledgement is lost on the way back.
		failpoint.InjectCall("mirror.ack", p.n.cfg.Name, &err)
	}
	return err
}

// fetchCopy gets a copy from node and verifies it against sum.
func (p *peerService) fetchCopy(ctx context.Context, node, id string, sum [32]byte) ([]byte, error) {
	_, b, err := p.call(ctx, http.MethodGet, node, "/v1/copies/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return nil, err
	}
	if store.Checksum(b) != sum {
		return nil, fmt.Errorf("%w: copy of %s from %s", store.ErrCorrupt, id, node)
	}
	return b, nil
}

func (p *peerService) hasCopy(ctx context.Context, node, id string) (bool, error) {
	code, _, err := p.call(ctx, http.MethodHead, node, "/v1/copies/"+url.PathEscape(id), nil, nil)
	if code == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

func (p *peerService) pushEntries(ctx context.Context, node string, entries []catalog.Entry) error {
	ok, err := p.streams.call(ctx, node, "push entries", opPushEntries, func(b []byte) []byte {
		return appendEntries(b, entries)
	})
	if !ok {
		_, _, err = p.call(ctx, http.MethodPost, node, "/v1/entries", encodeEntries(entries), nil)
	}
	return err
}

func (p *peerService) getEntry(ctx context.Context, node, id string) (catalog.Entry, bool, error) {
	code, b, err := p.call(ctx, http.MethodGet, node, "/v1/entries/"+url.PathEscape(id), nil, nil)
	if code == http.StatusNotFound {
		return catalog.Entry{}, false, nil
	}
	if err != nil {
		return catalog.Entry{}, false, err
	}
	e, err := catalog.Decode(b)
	return e, err == nil, err
}

func (p *peerService) buckets(ctx context.Context, node string) ([catalog.Buckets]uint64, error) {
	var out [catalog.Buckets]uint64
	_, b, err := p.call(ctx, http.MethodGet, node, "/v1/buckets", nil, nil)
	if err != nil {
		return out, err
	}
	if len(b) != 8*catalog.Buckets {
		return out, fmt.Errorf("node: peer %s: bucket digests of %d bytes", node, len(b))
	}
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return out, nil
}

func (p *peerService) bucket(ctx context.Context, node string, b int) ([]catalog.Entry, error) {
	_, body, err := p.call(ctx, http.MethodGet, node, "/v1/buckets/"+strconv.Itoa(b), nil, nil)
	if err != nil {
		return nil, err
	}
	return decodeEntries(body)
}

func (p *peerService) lock(ctx context.Context, node, mailbox, owner string, ttl time.Duration) (bool, error) {
	q := "?owner=" + url.QueryEscape(owner) + "&ttl_ms=" + strconv.FormatInt(ttl.Milliseconds(), 10)
	code, _, err := p.call(ctx, http.MethodPost, node, "/v1/locks/"+url.PathEscape(mailbox)+q, nil, nil)
	if code == http.StatusConflict {
		return false, nil
	}
	return err == nil, err
}

func (p *peerService) unlock(ctx context.Context, node, mailbox, owner string) error {
	_, _, err := p.call(ctx, http.MethodDelete, node, "/v1/locks/"+url.PathEscape(mailbox)+"?owner="+url.QueryEscape(owner), nil, nil)
	return err
}

func (p *peerService) getJSON(ctx context.Context, node, path string, v any) error {
	_, b, err := p.call(ctx, http.MethodGet, node, path, nil, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// --- encoding ---

func encodeEntries(entries []catalog.Entry) []byte {
	return appendEntries(nil, entries)
}

// appendEntries appends entries to buf, each led by its length (uvarint).
func appendEntries(buf []byte, entries []catalog.Entry) []byte {
	var tmp []byte
	for i := range entries {
		tmp = entries[i].Encode(tmp[:0])
		buf = binary.AppendUvarint(buf, uint64(len(tmp)))
		buf = append(buf, tmp...)
	}
	return buf
}

func decodeEntries(b []byte) ([]catalog.Entry, error) {
	var out []catalog.Entry
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, catalog.ErrBadEncoding
		}
		e, err := catalog.Decode(b[k : k+int(n)])
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		b = b[k+int(n):]
	}
	return out, nil
}

func decodeEntryHeader(h string) (catalog.Entry, error) {
	b, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		return catalog.Entry{}, err
	}
	return catalog.Decode(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// hostPort is net.SplitHostPort's host, or the whole string.
func hostPort(a string) string {
	h, _, err := net.SplitHostPort(a)
	if err != nil {
		return a
	}
	return h
}
