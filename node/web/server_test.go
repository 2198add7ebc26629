package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memBackend is an in-memory Backend: mailboxes with passwords and
// messages, oldest first.
type memBackend struct {
	mu        sync.Mutex
	passwords map[string]string
	boxes     map[string][]Entry
	data      map[string][]byte
	busy      bool
	reads     int
}

func newMemBackend() *memBackend {
	return &memBackend{
		passwords: map[string]string{"alice@example.com": "secret", "bob@example.com": "hunter2"},
		boxes:     map[string][]Entry{},
		data:      map[string][]byte{},
	}
}

func (b *memBackend) add(mailbox, id string, msg []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.boxes[mailbox] = append(b.boxes[mailbox], Entry{ID: id, Size: int64(len(msg)), Received: time.Unix(1700000000, 0)})
	b.data[id] = msg
}

func (b *memBackend) Authenticate(ctx context.Context, address, password string) (string, error) {
	if p, ok := b.passwords[address]; ok && p == password {
		return address, nil
	}
	return "", ErrAuth
}

func (b *memBackend) List(ctx context.Context, mailbox string) ([]Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Entry(nil), b.boxes[mailbox]...), nil
}

func (b *memBackend) find(mailbox, id string) int {
	for i, e := range b.boxes[mailbox] {
		if e.ID == id {
			return i
		}
	}
	return -1
}

func (b *memBackend) Read(ctx context.Context, mailbox, id string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reads++
	if b.find(mailbox, id) < 0 {
		return nil, ErrNotFound
	}
	return b.data[id], nil
}

func (b *memBackend) Delete(ctx context.Context, mailbox, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := b.find(mailbox, id)
	if i < 0 {
		return ErrNotFound
	}
	if b.busy {
		return ErrBusy
	}
	b.boxes[mailbox] = append(b.boxes[mailbox][:i], b.boxes[mailbox][i+1:]...)
	return nil
}

func testMessage(subject, body string) []byte {
	return crlf("From: Sender <s@remote.test>\nTo: alice@example.com\nSubject: " + subject + "\nDate: Mon, 2 Mar 2026 10:00:00 +0000\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n" + body + "\n" +
		"--b\nContent-Type: text/html; name=evil.html\nContent-Disposition: attachment; filename=evil.html\n\n<script>alert(1)</script>\n--b--\n")
}

// client is a browser stand-in: a cookie jar and JSON helpers.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newServer(t *testing.T, b Backend, mutate func(*Config)) (*Server, *httptest.Server) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.FailedLoginDelay = time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg, b, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	mux := http.NewServeMux()
	s.Register(mux)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return s, ts
}

func newClient(t *testing.T, ts *httptest.Server) *client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &client{t: t, base: ts.URL, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// do sends a request and returns the status, headers and body.
func (c *client) do(method, path string, body any) (int, http.Header, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	require.NoError(c.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return resp.StatusCode, resp.Header, b
}

func (c *client) login(address, password string) int {
	code, _, _ := c.do("POST", "/v1/mail/login", map[string]string{"address": address, "password": password})
	return code
}

func TestWebmailAPI(t *testing.T) {
	b := newMemBackend()
	b.add("alice@example.com", "m1", testMessage("first", "Hello one."))
	b.add("alice@example.com", "m2", testMessage("=?utf-8?q?s=C3=A9cond?=", "Hello two."))
	b.add("bob@example.com", "b1", testMessage("bob's", "Private."))
	_, ts := newServer(t, b, nil)
	c := newClient(t, ts)

	code, _, _ := c.do("GET", "/v1/mail/messages", nil)
	assert.Equal(t, http.StatusUnauthorized, code, "not logged in")
	require.Equal(t, http.StatusOK, c.login("alice@example.com", "secret"))
	cookies := c.hc.Jar.Cookies(mustURL(t, ts.URL))
	require.Len(t, cookies, 1)
	assert.Equal(t, CookieName, cookies[0].Name)

	code, _, body := c.do("GET", "/v1/mail/messages", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	var page listPage
	require.NoError(t, json.Unmarshal(body, &page))
	assert.Equal(t, 2, page.Total)
	require.Len(t, page.Messages, 2)
	assert.Equal(t, "m2", page.Messages[0].ID, "newest first")
	assert.Equal(t, "sécond", page.Messages[0].Subject)
	assert.Equal(t, "Sender", page.Messages[1].From, "the display name")

	// Paging, and the summaries come from the cache the second time.
	reads := b.reads
	code, _, body = c.do("GET", "/v1/mail/messages?offset=1&limit=1", nil)
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(body, &page))
	require.Len(t, page.Messages, 1)
	assert.Equal(t, "m1", page.Messages[0].ID)
	assert.Equal(t, reads, b.reads, "listed summaries are cached")
	code, _, _ = c.do("GET", "/v1/mail/messages?limit=x", nil)
	assert.Equal(t, http.StatusBadRequest, code)

	code, _, body = c.do("GET", "/v1/mail/messages/m1", nil)
	require.Equal(t, http.StatusOK, code)
	var v View
	require.NoError(t, json.Unmarshal(body, &v))
	assert.Equal(t, "first", v.Subject)
	assert.Equal(t, "Hello one.", strings.TrimSpace(v.Text))
	require.Len(t, v.Attachments, 1)
	assert.Equal(t, "evil.html", v.Attachments[0].Filename)

	// Downloads are attachments, never rendered, and an HTML attachment
	// is not served as HTML.
	code, h, body := c.do("GET", "/v1/mail/messages/m1/attachments/0", nil)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "application/octet-stream", h.Get("Content-Type"))
	assert.Equal(t, `attachment; filename=evil.html`, h.Get("Content-Disposition"))
	assert.Contains(t, h.Get("Content-Security-Policy"), "sandbox")
	assert.Equal(t, "<script>alert(1)</script>", string(body))
	code, h, body = c.do("GET", "/v1/mail/messages/m1/raw", nil)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "message/rfc822", h.Get("Content-Type"))
	assert.Equal(t, testMessage("first", "Hello one."), body)
	code, _, _ = c.do("GET", "/v1/mail/messages/m1/attachments/1", nil)
	assert.Equal(t, http.StatusNotFound, code)

	// Another mailbox's message is not there for alice.
	for _, p := range []string{"/v1/mail/messages/b1", "/v1/mail/messages/b1/raw", "/v1/mail/messages/b1/attachments/0"} {
		code, _, _ = c.do("GET", p, nil)
		assert.Equal(t, http.StatusNotFound, code, p)
	}
	code, _, _ = c.do("DELETE", "/v1/mail/messages/b1", nil)
	assert.Equal(t, http.StatusNotFound, code)
	assert.Len(t, b.boxes["bob@example.com"], 1, "bob's message untouched")

	b.busy = true
	code, _, _ = c.do("DELETE", "/v1/mail/messages/m1", nil)
	assert.Equal(t, http.StatusConflict, code, "a POP3 session holds the mailbox")
	b.busy = false
	code, _, _ = c.do("DELETE", "/v1/mail/messages/m1", nil)
	assert.Equal(t, http.StatusNoContent, code)
	code, _, _ = c.do("GET", "/v1/mail/messages/m1", nil)
	assert.Equal(t, http.StatusNotFound, code)
	code, _, body = c.do("GET", "/v1/mail/messages", nil)
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(body, &page))
	assert.Equal(t, 1, page.Total)

	// A logout another site could send (a form post, a body-less POST) is
	// refused: the session stays.
	for _, ctype := range []string{"", "application/x-www-form-urlencoded", "text/plain"} {
		req, err := http.NewRequest("POST", ts.URL+"/v1/mail/logout", strings.NewReader("x=1"))
		require.NoError(t, err)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := c.hc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode, "logout as %q", ctype)
		assert.Empty(t, resp.Header.Values("Set-Cookie"), "logout as %q leaves the cookie", ctype)
	}
	code, _, _ = c.do("GET", "/v1/mail/session", nil)
	assert.Equal(t, http.StatusOK, code, "still logged in")

	code, _, _ = c.do("POST", "/v1/mail/logout", map[string]string{})
	assert.Equal(t, http.StatusNoContent, code)
	code, _, _ = c.do("GET", "/v1/mail/messages", nil)
	assert.Equal(t, http.StatusUnauthorized, code, "logged out")
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

func TestWebmailLogin(t *testing.T) {
	b := newMemBackend()
	_, ts := newServer(t, b, func(c *Config) { c.MaxFailedLogins = 3 })
	c := newClient(t, ts)

	// The cookie's attributes.
	resp, err := http.Post(ts.URL+"/v1/mail/login", "application/json", strings.NewReader(`{"address":" Alice@Example.com ","password":"secret"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "address trimmed and lower-cased")
	sc := resp.Header.Get("Set-Cookie")
	assert.Contains(t, sc, "HttpOnly")
	assert.Contains(t, sc, "SameSite=Strict")
	assert.NotContains(t, sc, "Secure", "plain HTTP")

	// A form post (what another site could make a browser send) is refused.
	resp, err = http.Post(ts.URL+"/v1/mail/login", "application/x-www-form-urlencoded", strings.NewReader("address=alice@example.com&password=secret"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)

	for i := 0; i < 3; i++ {
		assert.Equal(t, http.StatusUnauthorized, c.login("bob@example.com", "wrong"), "attempt %d", i+1)
	}
	code, h, body := c.do("POST", "/v1/mail/login", map[string]string{"address": "bob@example.com", "password": "hunter2"})
	assert.Equal(t, http.StatusTooManyRequests, code, "even the right password waits out the window: %s", body)
	assert.NotEmpty(t, h.Get("Retry-After"))
	assert.Equal(t, http.StatusTooManyRequests, c.login("alice@example.com", "secret"), "the client address is blocked too")
	code, _, _ = c.do("GET", "/v1/mail/session", nil)
	assert.Equal(t, http.StatusUnauthorized, code)
}

// gatedBackend holds every Authenticate until its gate opens, counting
// those that reached it.
type gatedBackend struct {
	*memBackend
	gate    chan struct{}
	mu      sync.Mutex
	entered int
	wake    chan struct{}
}

func (b *gatedBackend) Authenticate(ctx context.Context, address, password string) (string, error) {
	b.mu.Lock()
	b.entered++
	b.mu.Unlock()
	b.wake <- struct{}{}
	<-b.gate
	return b.memBackend.Authenticate(ctx, address, password)
}

func TestWebmailLoginThrottleCountsParallelAttempts(t *testing.T) {
	// Guesses sent at once must not all pass the check before the first
	// failure is counted: an attempt counts from its start.
	const max, sent = 3, 10
	b := &gatedBackend{memBackend: newMemBackend(), gate: make(chan struct{}), wake: make(chan struct{}, sent)}
	_, ts := newServer(t, b, func(c *Config) { c.MaxFailedLogins = max })
	codes := make(chan int, sent)
	for range sent {
		go func() {
			resp, err := http.Post(ts.URL+"/v1/mail/login", "application/json", strings.NewReader(`{"address":"bob@example.com","password":"guess"}`))
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	// Every request either reaches the password check or is refused.
	got := map[int]int{}
	for reached := 0; reached+got[http.StatusTooManyRequests]+got[0] < sent; {
		select {
		case <-b.wake:
			reached++
		case code := <-codes:
			got[code]++
		case <-time.After(10 * time.Second):
			t.Fatalf("stuck: %d reached the password check, answers %v", reached, got)
		}
	}
	b.mu.Lock()
	entered := b.entered
	b.mu.Unlock()
	assert.Equal(t, max, entered, "only MaxFailedLogins guesses are checked")
	close(b.gate)
	for len(codes) > 0 || got[http.StatusUnauthorized] < entered {
		got[<-codes]++
	}
	assert.Equal(t, map[int]int{http.StatusTooManyRequests: sent - max, http.StatusUnauthorized: max}, got)
}

func TestSessionsExpire(t *testing.T) {
	s := newSessions(time.Minute, time.Hour, 2)
	t0 := time.Unix(1000, 0)
	a := s.create("a@x", t0)
	require.NotEmpty(t, a)
	_, ok := s.get(a, t0.Add(59*time.Second))
	assert.True(t, ok, "within the idle time")
	_, ok = s.get(a, t0.Add(118*time.Second))
	assert.True(t, ok, "use extends it")
	_, ok = s.get(a, t0.Add(179*time.Second))
	assert.False(t, ok, "idle too long")
	assert.Equal(t, 0, s.len(), "an expired session is dropped")

	b := s.create("b@x", t0)
	c := s.create("c@x", t0)
	require.NotEmpty(t, c)
	assert.Empty(t, s.create("d@x", t0), "full of live sessions")
	alive := 0 // minutes b lives while used every 59 s
	for i := 1; i <= 100; i++ {
		if _, ok = s.get(b, t0.Add(time.Duration(i)*59*time.Second)); !ok {
			break
		}
		alive = i * 59 / 60
	}
	assert.Equal(t, 59, alive, "used, a session lives up to the maximum age, and no longer")
	assert.NotEmpty(t, s.create("d@x", t0.Add(2*time.Hour)), "expired sessions make room")
	_, ok = s.get("forged", t0)
	assert.False(t, ok)
	_, ok = s.get(c+"x", t0)
	assert.False(t, ok)
}

func TestPageServed(t *testing.T) {
	_, ts := newServer(t, newMemBackend(), nil)
	for path, ctype := range map[string]string{"/": "text/html", "/webmail/app.js": "text/javascript", "/webmail/app.css": "text/css"} {
		resp, err := http.Get(ts.URL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), ctype), path)
		assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'", path)
		assert.NotEmpty(t, body, path)
		if path == "/" {
			s := string(body)
			assert.NotContains(t, s, "http://", "no other origin")
			assert.NotContains(t, s, "https://", "no other origin")
			assert.NotContains(t, s, "<script>", "no inline script")
		}
		if path == "/webmail/app.js" {
			assert.NotContains(t, string(body), "innerHTML", "mail is put on the page as text only")
		}
	}
	resp, err := http.Get(ts.URL + "/nothing-here")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "GET / serves / only")
}
