package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailarray/node/loginlog"
	"mailarray/node/throttle"
)

// Errors a Backend returns.
var (
	// ErrAuth: Authenticate refused the address or password (401).
	ErrAuth = errors.New("web: wrong address or password")
	// ErrNotFound: Read or Delete found no such message in the mailbox
	// (404), whether it does not exist or belongs to another mailbox.
	ErrNotFound = errors.New("web: no such message")
	// ErrBusy: Delete could not lock the mailbox, which another session
	// (POP3) holds (409).
	ErrBusy = errors.New("web: mailbox in use")
)

// Entry is one message of a mailbox as the backend lists it.
type Entry struct {
	ID       string
	Size     int64
	Received time.Time
}

// Backend is what webmail needs from the node. Its methods are called
// concurrently. mailbox is always an address Authenticate returned.
type Backend interface {
	// Authenticate checks a password and returns the mailbox's canonical
	// address, or ErrAuth.
	Authenticate(ctx context.Context, address, password string) (string, error)
	// List returns the mailbox's messages, oldest first.
	List(ctx context.Context, mailbox string) ([]Entry, error)
	// Read returns message id of mailbox, or ErrNotFound.
	Read(ctx context.Context, mailbox, id string) ([]byte, error)
	// Delete removes message id of mailbox everywhere, or returns
	// ErrNotFound or ErrBusy.
	Delete(ctx context.Context, mailbox, id string) error
}

// Config of webmail.
type Config struct {
	// SessionIdle ends a session unused this long; SessionMaxAge ends any
	// session this old.
	SessionIdle   time.Duration
	SessionMaxAge time.Duration
	// MaxSessions bounds the sessions held in memory; a login beyond it
	// gets 503 until sessions expire.
	MaxSessions int
	// FailedLoginDelay is added to every failed login's answer.
	FailedLoginDelay time.Duration
	// MaxFailedLogins per client address, and per mailbox, in
	// FailedLoginWindow; more attempts get 429 until the window ends.
	MaxFailedLogins   int
	FailedLoginWindow time.Duration
	// PageSize is the default number of messages listed; MaxPageSize the
	// most a client may ask for.
	PageSize, MaxPageSize int
	// SummaryCache bounds the list's cache of parsed headers (messages
	// never change, so entries stay valid until evicted).
	SummaryCache int
	// FetchParallel bounds the messages read at once to list a page.
	FetchParallel int
	// Logins, when set, is told every login attempt (node/loginlog); the
	// server logs each one anyway.
	Logins loginlog.Recorder
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{
		SessionIdle:       30 * time.Minute,
		SessionMaxAge:     12 * time.Hour,
		MaxSessions:       10000,
		FailedLoginDelay:  500 * time.Millisecond,
		MaxFailedLogins:   10,
		FailedLoginWindow: time.Minute,
		PageSize:          50,
		MaxPageSize:       200,
		SummaryCache:      20000,
		FetchParallel:     4,
	}
}

// Validate rejects nonsense.
func (c *Config) Validate() error {
	switch {
	case c.SessionIdle <= 0 || c.SessionMaxAge < c.SessionIdle:
		return fmt.Errorf("web: config: session idle %v, max age %v: need 0 < idle <= max age", c.SessionIdle, c.SessionMaxAge)
	case c.MaxSessions < 1 || c.MaxFailedLogins < 1 || c.SummaryCache < 1 || c.FetchParallel < 1:
		return errors.New("web: config: limits must be >= 1")
	case c.FailedLoginDelay < 0 || c.FailedLoginWindow <= 0:
		return errors.New("web: config: failed login delay >= 0 and window > 0")
	case c.PageSize < 1 || c.MaxPageSize < c.PageSize:
		return fmt.Errorf("web: config: page size %d, max %d", c.PageSize, c.MaxPageSize)
	}
	return nil
}

// CookieName is the session cookie.
const CookieName = "mailarray_session"

// maxLoginBodyBytes bounds the login request.
const maxLoginBodyBytes = 4096

//go:embed static
var static embed.FS

// Server is webmail: the page and its JSON API. It holds no goroutines.
type Server struct {
	cfg      Config
	b        Backend
	log      *slog.Logger
	sessions *sessions
	failures *throttle.Throttle
	cache    *summaryCache
}

// New returns webmail; Register mounts it.
func New(cfg Config, b Backend, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{
		cfg: cfg, b: b, log: log,
		sessions: newSessions(cfg.SessionIdle, cfg.SessionMaxAge, cfg.MaxSessions),
		failures: throttle.New(cfg.FailedLoginWindow, cfg.MaxFailedLogins, 100000),
		cache:    newSummaryCache(cfg.SummaryCache),
	}, nil
}

// Register adds the page and the API to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.file("static/index.html"))
	mux.HandleFunc("GET /webmail/app.js", s.file("static/app.js"))
	mux.HandleFunc("GET /webmail/app.css", s.file("static/app.css"))
	mux.HandleFunc("POST /v1/mail/login", s.login)
	mux.HandleFunc("POST /v1/mail/logout", s.logout)
	mux.HandleFunc("GET /v1/mail/session", s.auth(s.session))
	mux.HandleFunc("GET /v1/mail/messages", s.auth(s.list))
	mux.HandleFunc("GET /v1/mail/messages/{id}", s.auth(s.read))
	mux.HandleFunc("GET /v1/mail/messages/{id}/raw", s.auth(s.raw))
	mux.HandleFunc("GET /v1/mail/messages/{id}/attachments/{n}", s.auth(s.attachment))
	mux.HandleFunc("DELETE /v1/mail/messages/{id}", s.auth(s.delete))
}

// pageCSP allows the page its own script, style and API and nothing else:
// no inline script, no other origin, no framing.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

func (s *Server) file(name string) http.HandlerFunc {
	data, err := static.ReadFile(name)
	if err != nil {
		panic("web: invariant broken: embedded file missing: " + name)
	}
	var ctype string
	switch {
	case strings.HasSuffix(name, ".html"):
		ctype = "text/html; charset=utf-8"
	case strings.HasSuffix(name, ".js"):
		ctype = "text/javascript; charset=utf-8"
	case strings.HasSuffix(name, ".css"):
		ctype = "text/css; charset=utf-8"
	default:
		panic("web: invariant broken: no content type for embedded file " + name)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		w.Write(data)
	}
}

// apiError answers with {"error": msg} and logs requests that were bad.
func (s *Server) apiError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	level := slog.LevelInfo
	if code >= 500 {
		level = slog.LevelWarn
	}
	s.log.Log(r.Context(), level, "web: request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "status", code, "reason", msg)
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

type loginRequest struct {
	Address  string `json:"address"`
	Password string `json:"password"`
}

// recordLogin logs a login attempt and tells Config.Logins. remote is
// the connection's address (a proxy's, behind one).
func (s *Server) recordLogin(r *http.Request, mailbox, result, reason string) {
	loginlog.Record(s.log, s.cfg.Logins, loginlog.Event{Protocol: "web", Remote: r.RemoteAddr, Mailbox: mailbox, Result: result, Reason: reason})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	// A JSON body needs a CORS preflight from another origin, which this
	// server never grants: no other site can log a browser in (login CSRF).
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		s.apiError(w, r, http.StatusUnsupportedMediaType, "the login is a JSON object {address, password}")
		return
	}
	var req loginRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLoginBodyBytes)).Decode(&req); err != nil {
		s.apiError(w, r, http.StatusBadRequest, "the login is a JSON object {address, password}")
		return
	}
	addr := strings.ToLower(strings.TrimSpace(req.Address))
	now := time.Now()
	keys := []string{"ip:" + throttle.Key(r.RemoteAddr), "mailbox:" + addr}
	if ok, wait := s.failures.Begin(now, keys...); !ok {
		s.recordLogin(r, addr, loginlog.Throttled, "too many failed logins")
		secs := int(wait/time.Second) + 1
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		s.apiError(w, r, http.StatusTooManyRequests, fmt.Sprintf("too many failed logins; try again in %d s", secs))
		return
	}
	mailbox, err := s.b.Authenticate(r.Context(), addr, req.Password)
	if err != nil {
		if !errors.Is(err, ErrAuth) {
			s.failures.Succeeded(keys...) // not a guess: the password was not checked
			s.recordLogin(r, addr, loginlog.Error, err.Error())
			s.apiError(w, r, http.StatusInternalServerError, "cannot check the password now")
			return
		}
		// A fixed delay slows guessing without telling anything.
		select {
		case <-time.After(s.cfg.FailedLoginDelay):
		case <-r.Context().Done():
		}
		s.recordLogin(r, addr, loginlog.Failure, "invalid credentials")
		s.apiError(w, r, http.StatusUnauthorized, "wrong address or password")
		return
	}
	s.failures.Succeeded(keys...)
	token := s.sessions.create(mailbox, now)
	if token == "" {
		s.apiError(w, r, http.StatusServiceUnavailable, "too many sessions; try again later")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		// Behind a TLS proxy the cookie must not travel in clear; a forged
		// header only spoils the forger's own cookie.
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
	})
	s.recordLogin(r, mailbox, loginlog.Success, "")
	writeJSON(w, http.StatusOK, map[string]string{"mailbox": mailbox})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	// JSON only, as for the login: a form on another site (or on a sibling
	// host, which SameSite counts as the same site) cannot send it, so it
	// cannot log the browser out (a form POST is a top-level navigation,
	// whose answer may clear even a SameSite=Strict cookie).
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		s.apiError(w, r, http.StatusUnsupportedMediaType, "the logout is a JSON request (Content-Type: application/json)")
		return
	}
	if c, err := r.Cookie(CookieName); err == nil {
		s.sessions.remove(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

type authedHandler func(w http.ResponseWriter, r *http.Request, mailbox string)

// auth serves h only to a request with a live session.
func (s *Server) auth(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(CookieName)
		if err != nil {
			// Not a bad request: how the page learns it must show the
			// login form. Not logged.
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not logged in"})
			return
		}
		ss, ok := s.sessions.get(c.Value, time.Now())
		if !ok {
			s.apiError(w, r, http.StatusUnauthorized, "session expired; log in again")
			return
		}
		h(w, r, ss.mailbox)
	}
}

func (s *Server) session(w http.ResponseWriter, r *http.Request, mailbox string) {
	writeJSON(w, http.StatusOK, map[string]string{"mailbox": mailbox})
}

// listPage is the answer to GET /v1/mail/messages.
type listPage struct {
	Mailbox  string    `json:"mailbox"`
	Total    int       `json:"total"`
	Offset   int       `json:"offset"`
	Messages []Summary `json:"messages"`
}

// list answers a page of the mailbox, newest first (?offset=&limit=).
func (s *Server) list(w http.ResponseWriter, r *http.Request, mailbox string) {
	offset, limit := 0, s.cfg.PageSize
	for key, p := range map[string]*int{"offset": &offset, "limit": &limit} {
		if v := r.URL.Query().Get(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				s.apiError(w, r, http.StatusBadRequest, key+": not a number >= 0")
				return
			}
			*p = n
		}
	}
	limit = min(max(limit, 1), s.cfg.MaxPageSize)
	entries, err := s.b.List(r.Context(), mailbox)
	if err != nil {
		s.apiError(w, r, http.StatusInternalServerError, "cannot list the mailbox: "+err.Error())
		return
	}
	page := listPage{Mailbox: mailbox, Total: len(entries), Offset: offset, Messages: []Summary{}}
	// Newest first: entries are oldest first.
	var want []Entry
	for i := len(entries) - 1 - offset; i >= 0 && len(want) < limit; i-- {
		want = append(want, entries[i])
	}
	page.Messages = s.summaries(r.Context(), mailbox, want)
	writeJSON(w, http.StatusOK, page)
}

// summaries reads the header of each entry (from the cache when it can),
// FetchParallel at a time. A message that cannot be read is listed with
// what the catalog knows.
func (s *Server) summaries(ctx context.Context, mailbox string, es []Entry) []Summary {
	out := make([]Summary, len(es))
	sem := make(chan struct{}, s.cfg.FetchParallel)
	var wg sync.WaitGroup
	for i, e := range es {
		if sum, ok := s.cache.get(e.ID); ok {
			out[i] = sum
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			data, err := s.b.Read(ctx, mailbox, e.ID)
			if err != nil {
				s.log.Warn("web: message not readable for the list", "mailbox", mailbox, "id", e.ID, "err", err)
				out[i] = Summary{ID: e.ID, Subject: "(not readable now)", Size: e.Size, Received: e.Received, Date: e.Received}
				return
			}
			out[i] = ParseSummary(e.ID, data, e.Size, e.Received)
			s.cache.put(out[i])
		}()
	}
	wg.Wait()
	return out
}

// message reads a message of the session's mailbox, answering the error
// itself.
func (s *Server) message(w http.ResponseWriter, r *http.Request, mailbox string) ([]byte, bool) {
	data, err := s.b.Read(r.Context(), mailbox, r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNotFound):
		s.apiError(w, r, http.StatusNotFound, "no such message")
		return nil, false
	case err != nil:
		s.apiError(w, r, http.StatusServiceUnavailable, "cannot read the message now: "+err.Error())
		return nil, false
	}
	return data, true
}

func (s *Server) read(w http.ResponseWriter, r *http.Request, mailbox string) {
	data, ok := s.message(w, r, mailbox)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, ParseView(r.PathValue("id"), data))
}

// download sends bytes the browser must save, never render: a message or
// an attachment is untrusted content from this origin.
func download(w http.ResponseWriter, ctype, filename string, data []byte) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": filename}))
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, no-store")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

func (s *Server) raw(w http.ResponseWriter, r *http.Request, mailbox string) {
	data, ok := s.message(w, r, mailbox)
	if !ok {
		return
	}
	download(w, "message/rfc822", r.PathValue("id")+".eml", data)
}

// passTypes are attachment types served as declared (for a player or a
// viewer); any other is served as application/octet-stream.
var passTypes = map[string]bool{
	"image/tiff": true, "image/png": true, "image/jpeg": true, "image/gif": true,
	"audio/wav": true, "audio/x-wav": true, "audio/mpeg": true, "application/pdf": true, "text/plain": true,
}

func (s *Server) attachment(w http.ResponseWriter, r *http.Request, mailbox string) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 {
		s.apiError(w, r, http.StatusBadRequest, "attachment: not an index")
		return
	}
	data, ok := s.message(w, r, mailbox)
	if !ok {
		return
	}
	v := ParseView(r.PathValue("id"), data)
	if n >= len(v.Attachments) {
		s.apiError(w, r, http.StatusNotFound, "no such attachment")
		return
	}
	a := v.Attachments[n]
	ctype := "application/octet-stream"
	if passTypes[a.ContentType] {
		ctype = a.ContentType
	}
	download(w, ctype, a.Filename, a.data)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, mailbox string) {
	id := r.PathValue("id")
	err := s.b.Delete(r.Context(), mailbox, id)
	switch {
	case errors.Is(err, ErrNotFound):
		s.apiError(w, r, http.StatusNotFound, "no such message")
	case errors.Is(err, ErrBusy):
		s.apiError(w, r, http.StatusConflict, "the mailbox is in use by another session (POP3); try again shortly")
	case err != nil:
		s.apiError(w, r, http.StatusServiceUnavailable, "cannot delete now: "+err.Error())
	default:
		s.cache.drop(id)
		s.log.Info("web: deleted", "mailbox", mailbox, "id", id, "remote", r.RemoteAddr)
		w.WriteHeader(http.StatusNoContent)
	}
}

// summaryCache keeps parsed headers by message id, evicting the oldest
// insertions first. Safe for concurrent use.
type summaryCache struct {
	max  int
	mu   sync.Mutex
	byID map[string]Summary
	fifo []string
}

func newSummaryCache(max int) *summaryCache {
	return &summaryCache{max: max, byID: map[string]Summary{}}
}

func (c *summaryCache) get(id string) (Summary, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.byID[id]
	return s, ok
}

func (c *summaryCache) put(s Summary) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byID[s.ID]; ok {
		return
	}
	for len(c.byID) >= c.max && len(c.fifo) > 0 {
		delete(c.byID, c.fifo[0])
		c.fifo = c.fifo[1:]
	}
	c.byID[s.ID] = s
	c.fifo = append(c.fifo, s.ID)
	if len(c.fifo) > 2*c.max {
		// Slots of dropped ids pile up: keep only the live ones.
		live := c.fifo[:0:0]
		for _, id := range c.fifo {
			if _, ok := c.byID[id]; ok {
				live = append(live, id)
			}
		}
		c.fifo = live
	}
}

func (c *summaryCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byID, id) // its fifo slot goes when it comes up
}
