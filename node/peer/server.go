package peer

import (
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"mailarray/node/bufpool"
	"mailarray/node/catalog"
	"mailarray/node/fault"
	"mailarray/node/store"
)

// Server answers the protocol (doc.go) from a Handler. Serve it on one
// listener; Close ends it with every stream it serves.
type Server struct {
	cfg Config
	h   Handler
	srv *http.Server

	// The streams served, which the HTTP server no longer tracks once
	// upgraded.
	smu     sync.Mutex
	sconns  map[net.Conn]struct{}
	sclosed bool
	swg     sync.WaitGroup
}

// NewServer returns a server of h's node. cfg.TLS makes it demand mutual
// TLS, cfg.Key the peer key; MaxCopyBytes, Log, ChargeCPU and Inject are
// used as documented in Config.
func NewServer(cfg Config, h Handler) *Server {
	cfg.validate(false) // a server's config cannot fail: defaults only
	s := &Server{cfg: cfg, h: h}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug)}
	return s
}

// Serve serves on l (inside TLS when the config has it) until Close; it
// returns nil once closed.
func (s *Server) Serve(l net.Listener) error {
	if s.cfg.TLS != nil {
		l = tls.NewListener(l, s.cfg.TLS.server)
	}
	if err := s.srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close closes the listener and every connection, streams included, and
// waits for the stream requests running. It uses http.Server.Close, not
// Shutdown, whose polling uses global randomness.
func (s *Server) Close() {
	s.srv.Close()
	s.closeStreams()
}

// Streams returns how many streams the server is serving (for metrics).
func (s *Server) Streams() int {
	s.smu.Lock()
	defer s.smu.Unlock()
	return len(s.sconns)
}

// Handler returns the protocol's HTTP handler, the peer key checked.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.routes() {
		mux.HandleFunc(r.pattern, r.h)
	}
	return s.authorize(mux)
}

// route is one request of the protocol (doc.go) and its handler.
type route struct {
	pattern string // "METHOD /path", as http.ServeMux takes it
	h       http.HandlerFunc
}

// routes lists every request the server answers, in doc.go's order: the
// one table Handler serves and Routes reports.
func (s *Server) routes() []route {
	return []route{
		{"PUT /v1/copies/{id}", s.handlePutCopy},
		{"GET /v1/copies/{id}", s.handleGetCopy},
		{"HEAD /v1/copies/{id}", s.handleHeadCopy},
		{"POST /v1/entries", s.handlePostEntries},
		{"GET /v1/entries/{id}", s.handleGetEntry},
		{"POST /v1/abort/{id}", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.h.Abort(r.PathValue("id"))) }},
		{"GET /v1/buckets", s.handleGetBuckets},
		{"GET /v1/buckets/{b}", s.handleGetBucket},
		{"POST /v1/locks/{mailbox}", s.handlePostLock},
		{"DELETE /v1/locks/{mailbox}", s.handleDeleteLock},
		{"GET /v1/uids/{mailbox}", s.handleGetUIDs},
		{"POST /v1/copy-batch", s.handleCopyBatch},
		{"GET " + streamPath, s.handleStream},
		{"GET /v1/load", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.h.Load()) }},
		{"GET /v1/mirror", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.h.Mirror()) }},
		{"GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.h.Status()) }},
		{"POST /v1/rebalance", func(w http.ResponseWriter, r *http.Request) {
			s.h.Rebalance()
			w.WriteHeader(http.StatusAccepted)
		}},
		{"POST /v1/drain", func(w http.ResponseWriter, r *http.Request) { s.handleDrain(w, true) }},
		{"GET /v1/drain", func(w http.ResponseWriter, r *http.Request) { s.handleDrain(w, false) }},
	}
}

// Routes returns the pattern ("METHOD /path/{param}") of every request
// the server answers, for scans that check each one is guarded.
func Routes() []string {
	var out []string
	for _, r := range (&Server{}).routes() {
		out = append(out, r.pattern)
	}
	return out
}

func (s *Server) authorize(h http.Handler) http.Handler {
	key := []byte(s.cfg.Key)
	if len(key) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(headerKey)), key) != 1 {
			s.cfg.Log.Warn("peer: unauthenticated request refused", "remote", r.RemoteAddr, "path", r.URL.Path)
			http.Error(w, "peer key required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) handlePutCopy(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e, err := DecodeEntryHeader(r.Header.Get(headerEntry))
	if err != nil || e.ID != id {
		http.Error(w, "bad entry", http.StatusBadRequest)
		return
	}
	// The store frames its own copy of data: the body buffer is reused.
	data, err := readBodyInto(bufpool.Get(0), r.Body, r.ContentLength, s.cfg.MaxCopyBytes)
	defer bufpool.Put(data)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	status, text := s.storeCopy(e, data)
	writeStatus(w, status, text)
}

// copyDeletedText is the error text of the 409 that refuses a copy whose
// entry is a tombstone on the receiving node.
const copyDeletedText = "entry deleted"

// storeCopy stores a copy sent by a peer with its pending entry e: the
// status to answer (204 once durable) and the error's text.
func (s *Server) storeCopy(e catalog.Entry, data []byte) (int, string) {
	s.cfg.chargeCPU(len(data))
	if store.Checksum(data) != e.Sum {
		return http.StatusBadRequest, "checksum mismatch"
	}
	if err := s.h.StoreCopy(e, data); err != nil {
		if errors.Is(err, ErrCopyDeleted) {
			// The id is final here: a 204 would count a copy towards a
			// quorum whose transaction was already resolved away.
			return http.StatusConflict, copyDeletedText
		}
		if errors.Is(err, catalog.ErrFutureVersion) {
			// The sender's clock is far ahead of ours: refused, not
			// a storage failure (catalog.MaxAhead).
			return http.StatusBadRequest, "entry version too far in the future"
		}
		s.cfg.Log.Error("peer: store copy", "id", e.ID, "err", err)
		return http.StatusInsufficientStorage, "store failed"
	}
	return http.StatusNoContent, ""
}

func (s *Server) handleGetCopy(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.cfg.inject(fault.PeerFetch); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	data, err := s.h.GetCopy(id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		http.Error(w, "no copy", http.StatusNotFound)
		return
	case errors.Is(err, store.ErrCorrupt):
		s.cfg.Log.Error("peer: copy fails its checksum", "id", id)
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

func (s *Server) handleHeadCopy(w http.ResponseWriter, r *http.Request) {
	if !s.h.HasCopy(r.PathValue("id")) {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handlePostEntries(w http.ResponseWriter, r *http.Request) {
	// Decoding copies everything out of body: the buffer is reused.
	body, err := readBodyInto(bufpool.Get(0), r.Body, r.ContentLength, MaxEntriesBytes+1)
	defer bufpool.Put(body)
	if err != nil || len(body) > MaxEntriesBytes {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	status, text := s.applyEntries(body)
	writeStatus(w, status, text)
}

// applyEntries merges a pushed batch of entries (EncodeEntries): the
// status to answer and the error's text.
func (s *Server) applyEntries(body []byte) (int, string) {
	entries, err := DecodeEntries(body)
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	if err := s.h.ApplyEntries(entries); err != nil {
		return http.StatusInternalServerError, "apply failed"
	}
	return http.StatusNoContent, ""
}

func (s *Server) handleGetEntry(w http.ResponseWriter, r *http.Request) {
	e, ok := s.h.Entry(r.PathValue("id"))
	if !ok {
		http.Error(w, "no entry", http.StatusNotFound)
		return
	}
	w.Write(e.Encode(nil))
}

func (s *Server) handleGetBuckets(w http.ResponseWriter, r *http.Request) {
	// The horizon first: the digests are taken at the raised horizon.
	mine := s.h.ExchangeHorizon(horizonOf(r.Header))
	mine.From = ""
	setHorizon(w.Header().Set, mine)
	d := s.h.BucketDigests()
	buf := make([]byte, 0, 8*len(d))
	for _, v := range d {
		buf = binary.LittleEndian.AppendUint64(buf, v)
	}
	w.Write(buf)
}

func (s *Server) handleGetBucket(w http.ResponseWriter, r *http.Request) {
	b, err := strconv.Atoi(r.PathValue("b"))
	if err != nil || b < 0 || b >= catalog.Buckets {
		http.Error(w, "bad bucket", http.StatusBadRequest)
		return
	}
	w.Write(EncodeEntries(s.h.Bucket(b)))
}

func (s *Server) handlePostLock(w http.ResponseWriter, r *http.Request) {
	owner := r.URL.Query().Get("owner")
	ttl, _ := strconv.Atoi(r.URL.Query().Get("ttl_ms"))
	if owner == "" || ttl <= 0 {
		http.Error(w, "owner and ttl_ms required", http.StatusBadRequest)
		return
	}
	// A peer asks for the lease its node uses; a longer one is cut to
	// ours rather than refused, so that nodes whose lease TTLs differ
	// (a rolling upgrade) still lock each other's mailboxes.
	// (Compared in milliseconds: a huge ttl_ms would overflow a Duration.)
	d := s.cfg.MaxLockTTL
	if int64(ttl) <= d.Milliseconds() {
		d = time.Duration(ttl) * time.Millisecond
	} else {
		s.cfg.Log.Warn("peer: lock ttl cut to the maximum", "remote", r.RemoteAddr, "mailbox", r.PathValue("mailbox"), "ttl_ms", ttl, "max_ms", s.cfg.MaxLockTTL.Milliseconds())
	}
	if !s.h.Lock(r.PathValue("mailbox"), owner, d) {
		http.Error(w, "in use", http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleDeleteLock(w http.ResponseWriter, r *http.Request) {
	s.h.Unlock(r.PathValue("mailbox"), r.URL.Query().Get("owner"))
	w.WriteHeader(http.StatusNoContent)
}

// handleGetUIDs answers GET /v1/uids/{mailbox}?since=N: the highest UID (4
// bytes, little endian) then the entries with a UID above N.
func (s *Server) handleGetUIDs(w http.ResponseWriter, r *http.Request) {
	since, err := strconv.ParseUint(r.URL.Query().Get("since"), 10, 32)
	if err != nil {
		http.Error(w, "since required", http.StatusBadRequest)
		return
	}
	top, entries := s.h.UIDsAbove(r.PathValue("mailbox"), uint32(since))
	buf := binary.LittleEndian.AppendUint32(nil, top)
	w.Write(append(buf, EncodeEntries(entries)...))
}

// handleCopyBatch answers POST /v1/copy-batch (doc.go).
func (s *Server) handleCopyBatch(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r.Body, r.ContentLength, 1<<20)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	ids, err := decodeIDs(body)
	if err != nil || len(ids) > CopyBatchMax {
		http.Error(w, "bad id list", http.StatusBadRequest)
		return
	}
	if err := s.cfg.inject(fault.PeerFetch); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	// The answer is built in a pooled buffer, each copy appended straight
	// from the store's read transaction (no copy per message to collect).
	out := bufpool.Get(0)
	defer func() { bufpool.Put(out) }()
	total := 0
	failed := false
	read := 0 // ids answered; the rest are skipped
	err = s.h.GetCopies(ids, func(i int, data []byte, err error) bool {
		read = i + 1
		switch {
		case err == nil:
			out = append(out, batchOK)
			out = binary.AppendUvarint(out, uint64(len(data)))
			out = append(out, data...)
			total += len(data)
		case errors.Is(err, store.ErrNotFound):
			out = append(out, batchMissing)
		case errors.Is(err, store.ErrCorrupt):
			s.cfg.Log.Error("peer: copy fails its checksum", "id", ids[i])
			out = append(out, batchCorrupt)
		default:
			failed = true
			return false
		}
		return total < CopyBatchBytes // past it, the reader asks again
	})
	for range ids[read:] {
		out = append(out, batchSkipped)
	}
	if err != nil || failed {
		http.Error(w, "store failed", http.StatusInternalServerError)
		return
	}
	// Declared, the length lets the reader take the answer in one buffer
	// of its size (readBody); chunked, it grew one by doubling.
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.Write(out)
}

func (s *Server) handleDrain(w http.ResponseWriter, start bool) {
	v, err := s.h.Drain(start)
	switch {
	case errors.Is(err, ErrDrainRefused):
		http.Error(w, err.Error(), http.StatusConflict)
	case err != nil:
		s.cfg.Log.Error("peer: drain", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		writeJSON(w, v)
	}
}
