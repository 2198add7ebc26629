package ingest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"net/netip"
	"strings"
	"time"
)

// Errors a Backend returns to choose the HTTP status. Any other error is
// a local failure (500).
var (
	// ErrUnknownRecipient: no such mailbox, or a domain not hosted here
	// (404).
	ErrUnknownRecipient = errors.New("ingest: unknown recipient")
	// ErrUnavailable: too few live storage nodes to make the message
	// durable, or a filter that could not check it; try again later (503).
	ErrUnavailable = errors.New("ingest: storage unavailable")
	// ErrRejected: the inbound pipeline refused the message (422).
	ErrRejected = errors.New("ingest: refused by the inbound pipeline")
	// ErrQuota: the mailbox is over its quota (507).
	ErrQuota = errors.New("ingest: mailbox over quota")
)

// Delivery is one document, wrapped in its message, handed to the backend.
type Delivery struct {
	ID     string // transaction id, from Backend.NewID
	From   string // envelope sender
	To     string // the recipient, lower case
	Data   []byte // the message, CRLF line ends, our Received header first
	Remote net.Addr
}

// Backend is what the gateway needs from the node. Its methods are called
// concurrently.
type Backend interface {
	// NewID returns a fresh transaction id.
	NewID() string
	// CheckRecipient returns nil if mail for addr is accepted, or
	// ErrUnknownRecipient or ErrUnavailable.
	CheckRecipient(ctx context.Context, addr string) error
	// Deliver runs the inbound pipeline on d and makes it durable, or
	// fails wholly with one of the package's errors (or another).
	Deliver(ctx context.Context, d *Delivery) error
}

// Config of the gateway.
type Config struct {
	// Hostname names this node in Received and Message-ID.
	Hostname string
	// MaxMessageBytes bounds the message built around a document (the
	// node passes its max-message-bytes, the SMTP limit): the document
	// itself may be about 3/4 of it, base64 taking the rest.
	MaxMessageBytes int64
	// Token, when set, must come with every request as "Authorization:
	// Bearer <token>". When empty only loopback clients are served.
	Token string
	// MaxInflight bounds the documents being received and delivered at
	// once (each is held in memory, about 2.5 times its size); more get
	// 503.
	MaxInflight int
	// ReadTimeout bounds the upload of one document.
	ReadTimeout time.Duration
	// DeliverTimeout bounds the pipeline and placement of one message, as
	// the SMTP listener's does.
	DeliverTimeout time.Duration
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{
		Hostname:        "localhost",
		MaxMessageBytes: 25 << 20,
		MaxInflight:     16,
		ReadTimeout:     2 * time.Minute,
		DeliverTimeout:  30 * time.Second,
	}
}

// minMessageBytes leaves room for the headers and the text part.
const minMessageBytes = 4096

// Validate rejects nonsense.
func (c *Config) Validate() error {
	switch {
	case c.Hostname == "":
		return errors.New("ingest: config: empty hostname")
	case c.MaxMessageBytes < minMessageBytes:
		return fmt.Errorf("ingest: config: max message bytes %d < %d", c.MaxMessageBytes, minMessageBytes)
	case c.MaxInflight < 1:
		return fmt.Errorf("ingest: config: max inflight %d < 1", c.MaxInflight)
	case c.ReadTimeout <= 0 || c.DeliverTimeout <= 0:
		return errors.New("ingest: config: timeouts must be positive")
	}
	return nil
}

// Gateway serves POST /v1/ingest/<kind>?to=ADDRESS[&from=CALLER] for each
// of Kinds(). It holds no goroutines.
type Gateway struct {
	cfg      Config
	b        Backend
	log      *slog.Logger
	token    [sha256.Size]byte
	inflight chan struct{}
}

// New returns a gateway; Register mounts it.
func New(cfg Config, b Backend, log *slog.Logger) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, b: b, log: log, inflight: make(chan struct{}, cfg.MaxInflight)}
	g.token = sha256.Sum256([]byte(cfg.Token))
	return g, nil
}

// Register adds the gateway's routes to mux.
func (g *Gateway) Register(mux *http.ServeMux) {
	for _, k := range Kinds() {
		mux.HandleFunc("POST /v1/ingest/"+k.Name, func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, &k) })
	}
}

// MaxDocumentBytes is the largest document whose message fits the limit.
func (g *Gateway) MaxDocumentBytes() int64 {
	room := g.cfg.MaxMessageBytes - minMessageBytes
	return room / (base64LineChars + 2) * (base64LineChars / 4 * 3)
}

// Result is the JSON answer to a delivered document.
type Result struct {
	ID        string         `json:"id"`
	To        string         `json:"to"`
	Kind      string         `json:"kind"`
	Subject   string         `json:"subject"`
	SizeBytes int            `json:"size_bytes"`
	Document  map[string]any `json:"document"`
}

// problem is an error answer: its status and what the client is told.
type problem struct {
	code int
	msg  string
}

func fail(code int, f string, a ...any) *problem {
	return &problem{code: code, msg: fmt.Sprintf(f, a...)}
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, k *Kind) {
	t0 := time.Now()
	res, p := g.ingest(w, r, k)
	if p != nil {
		g.log.Info("ingest: refused", "kind", k.Name, "remote", r.RemoteAddr, "to", r.URL.Query().Get("to"), "status", p.code, "reason", p.msg)
		if p.code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "60")
		}
		if p.code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mailarray ingest"`)
		}
		writeJSON(w, p.code, map[string]string{"error": p.msg})
		return
	}
	g.log.Info("ingest: accepted", "kind", k.Name, "id", res.ID, "remote", r.RemoteAddr, "to", res.To, "size", res.SizeBytes, "ms", time.Since(t0).Milliseconds())
	writeJSON(w, http.StatusCreated, res)
}

// ingest does the work of one request, in the order that refuses cheaply
// first: authentication, parameters, declared size, recipient, then the
// upload, its format, and delivery.
func (g *Gateway) ingest(w http.ResponseWriter, r *http.Request, k *Kind) (*Result, *problem) {
	if p := g.authorize(r); p != nil {
		return nil, p
	}
	q := r.URL.Query()
	to, err := recipient(q.Get("to"))
	if err != nil {
		return nil, fail(http.StatusBadRequest, "to: %v", err)
	}
	caller := q.Get("from")
	if caller != "" && !ValidCaller(caller) {
		return nil, fail(http.StatusBadRequest, "from: %q is not a caller id (1-64 of A-Z a-z 0-9 + * # . ( ) _ - and inner spaces)", caller)
	}
	maxDoc := g.MaxDocumentBytes()
	if r.ContentLength > maxDoc {
		return nil, fail(http.StatusRequestEntityTooLarge, "%d bytes is over the limit of %d bytes for a document", r.ContentLength, maxDoc)
	}
	select {
	case g.inflight <- struct{}{}:
		defer func() { <-g.inflight }()
	default:
		return nil, fail(http.StatusServiceUnavailable, "busy: %d documents in progress; try again later", g.cfg.MaxInflight)
	}
	cctx, cancel := context.WithTimeout(r.Context(), g.cfg.DeliverTimeout)
	err = g.b.CheckRecipient(cctx, to)
	cancel()
	if err != nil {
		return nil, deliveryProblem(to, err)
	}
	// A slow upload must not hold a slot for ever.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(g.cfg.ReadTimeout))
	doc, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDoc))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fail(http.StatusRequestEntityTooLarge, "over the limit of %d bytes for a document", maxDoc)
		}
		return nil, fail(http.StatusBadRequest, "reading the document: %v", err)
	}
	sum, err := k.Inspect(doc)
	if err != nil {
		return nil, fail(http.StatusUnsupportedMediaType, "not a valid %s document: %v", k.ContentType, strings.TrimPrefix(err.Error(), ErrFormat.Error()+": "))
	}
	id := g.b.NewID()
	remote := remoteAddr(r)
	env := Envelope{ID: id, Caller: caller, To: to, Hostname: g.cfg.Hostname, Remote: remote.IP.String(), Date: time.Now()}
	data := k.Build(env, sum, doc)
	if int64(len(data)) > g.cfg.MaxMessageBytes {
		// MaxDocumentBytes leaves room for the headers; this is a guard.
		return nil, fail(http.StatusRequestEntityTooLarge, "the message would be %d bytes, over the limit of %d", len(data), g.cfg.MaxMessageBytes)
	}
	// The delivery's own time starts once the upload is in.
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.DeliverTimeout)
	defer cancel()
	if err := g.b.Deliver(ctx, &Delivery{ID: id, From: k.From(to), To: to, Data: data, Remote: remote}); err != nil {
		return nil, deliveryProblem(to, err)
	}
	return &Result{ID: id, To: to, Kind: k.Name, Subject: k.Subject(caller, sum), SizeBytes: len(data), Document: sum.Fields}, nil
}

// deliveryProblem maps a Backend error to its answer.
func deliveryProblem(to string, err error) *problem {
	switch {
	case errors.Is(err, ErrUnknownRecipient):
		return fail(http.StatusNotFound, "no mailbox %s here", to)
	case errors.Is(err, ErrUnavailable):
		return fail(http.StatusServiceUnavailable, "cannot store the message now (%v); try again later", err)
	case errors.Is(err, ErrRejected):
		return fail(http.StatusUnprocessableEntity, "%v", err)
	case errors.Is(err, ErrQuota):
		return fail(http.StatusInsufficientStorage, "mailbox %s is over its quota", to)
	}
	return fail(http.StatusInternalServerError, "local error: %v", err)
}

// authorize checks the bearer token, or without one that the client is on
// this host: the connection's own address, never a header such as
// X-Forwarded-For that the client writes (behind a proxy on this host
// every client is loopback: set a token there).
func (g *Gateway) authorize(r *http.Request) *problem {
	if g.cfg.Token == "" {
		if ip, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !ip.Addr().Unmap().IsLoopback() {
			return fail(http.StatusForbidden, "ingest is open to loopback clients only (no ingest-token is set)")
		}
		return nil
	}
	// The scheme is case-insensitive (RFC 9110 section 11.1): "bearer" is
	// as good as "Bearer".
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return fail(http.StatusUnauthorized, "a bearer token is required (Authorization: Bearer <ingest-token>)")
	}
	// Compare digests: constant time whatever the lengths.
	h := sha256.Sum256([]byte(strings.TrimSpace(got)))
	if subtle.ConstantTimeCompare(h[:], g.token[:]) != 1 {
		return fail(http.StatusUnauthorized, "wrong bearer token")
	}
	return nil
}

// recipient validates ?to=: one bare address (local@domain), lower-cased.
func recipient(s string) (string, error) {
	if s == "" {
		return "", errors.New("missing (?to=ADDRESS)")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || !strings.Contains(s, "@") {
		return "", fmt.Errorf("%q is not an address like alice@example.com", s)
	}
	return strings.ToLower(s), nil
}

func remoteAddr(r *http.Request) *net.TCPAddr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return &net.TCPAddr{}
	}
	return net.TCPAddrFromAddrPort(ap)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
