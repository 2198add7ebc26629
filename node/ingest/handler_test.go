package ingest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/ingest/ingesttest"
)

// fakeBackend is an in-memory Backend: a set of known mailboxes, an error
// to fail deliveries with, and the deliveries it took.
type fakeBackend struct {
	known      map[string]bool
	checkErr   error
	deliverErr error
	mu         sync.Mutex
	n          int
	got        []*Delivery
}

func (b *fakeBackend) NewID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	return fmt.Sprintf("0000000000%02d", b.n)
}

func (b *fakeBackend) CheckRecipient(ctx context.Context, addr string) error {
	if !b.known[addr] {
		return ErrUnknownRecipient
	}
	return b.checkErr
}

func (b *fakeBackend) Deliver(ctx context.Context, d *Delivery) error {
	if b.deliverErr != nil {
		return b.deliverErr
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, d)
	return nil
}

func newGateway(t *testing.T, b Backend, mutate func(*Config)) *Gateway {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Hostname = "n1.example.com"
	cfg.MaxMessageBytes = 64 << 10
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := New(cfg, b, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return g
}

// parsed is a built message taken apart with the standard library.
type parsed struct {
	header     mail.Header
	text       string
	attachName string
	attachType string
	attach     []byte
}

func parseBuilt(t *testing.T, data []byte) parsed {
	t.Helper()
	require.True(t, bytes.HasPrefix(data, []byte("Received: from [")), "our Received header comes first")
	require.NotContains(t, strings.ReplaceAll(string(data), "\r\n", ""), "\n", "every line ends in CRLF")
	m, err := mail.ReadMessage(bytes.NewReader(data))
	require.NoError(t, err)
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/mixed", mt)
	mr := multipart.NewReader(m.Body, params["boundary"])
	p := parsed{header: m.Header}
	text, err := mr.NextPart()
	require.NoError(t, err)
	assert.Equal(t, "text/plain; charset=us-ascii", text.Header.Get("Content-Type"))
	tb, _ := io.ReadAll(text)
	p.text = string(tb)
	att, err := mr.NextPart()
	require.NoError(t, err)
	p.attachName = att.FileName()
	p.attachType, _, _ = mime.ParseMediaType(att.Header.Get("Content-Type"))
	require.Equal(t, "base64", att.Header.Get("Content-Transfer-Encoding"))
	raw, _ := io.ReadAll(att)
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\r\n") {
		require.LessOrEqual(t, len(line), 76, "base64 lines of at most 76 characters")
	}
	p.attach, err = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw), "\r\n", ""))
	require.NoError(t, err)
	_, err = mr.NextPart()
	require.ErrorIs(t, err, io.EOF, "two parts")
	return p
}

func TestBuildMessage(t *testing.T) {
	date := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		kind, caller string
		doc          []byte
		subject      string
		from         string
		text         string
	}{
		{"fax", "+1 555 0100", ingesttest.TIFF(3, false, bytes.Repeat([]byte{0xAA}, 1000)),
			"Fax from +1 555 0100 (3 pages)", `"Fax +1 555 0100" <fax@example.com>`, "Fax from +1 555 0100: 3 pages, "},
		{"fax", "", ingesttest.TIFF(1, true, nil),
			"Fax (1 page)", `"Fax gateway" <fax@example.com>`, "Fax from an unknown caller: 1 page, "},
		{"voice", "Reception (42)", ingesttest.WAV(8000, 8000*42+3000, nil),
			"Voicemail from Reception (42) (42 s)", `"Voicemail Reception (42)" <voicemail@example.com>`,
			"Voicemail from Reception (42): 42 s of audio (8000 Hz, mono, 16-bit PCM), "},
	}
	for _, tc := range tests {
		k := kindNamed(t, tc.kind)
		sum, err := k.Inspect(tc.doc)
		require.NoError(t, err)
		env := Envelope{ID: "0123456789ab", Caller: tc.caller, To: "alice@example.com", Hostname: "n1.example.com", Remote: "127.0.0.1", Date: date}
		data := k.Build(env, sum, tc.doc)
		assert.LessOrEqual(t, int64(len(data)), MessageBytes(int64(len(tc.doc)))+2048, "MessageBytes estimates the size")
		p := parseBuilt(t, data)
		assert.Equal(t, tc.subject, p.header.Get("Subject"))
		assert.Equal(t, tc.from, p.header.Get("From"))
		from, err := p.header.AddressList("From")
		require.NoError(t, err, "From parses")
		assert.Equal(t, k.From("alice@example.com"), from[0].Address)
		assert.Equal(t, "<alice@example.com>", p.header.Get("To"))
		assert.Equal(t, "<0123456789ab."+tc.kind+"@n1.example.com>", p.header.Get("Message-ID"))
		d, err := p.header.Date()
		require.NoError(t, err)
		assert.True(t, d.Equal(date))
		assert.Contains(t, p.text, tc.text)
		assert.Equal(t, tc.kind+"-0123456789ab"+k.Ext, p.attachName)
		assert.Equal(t, k.ContentType, p.attachType)
		assert.Equal(t, tc.doc, p.attach, "the document is intact")
	}
}

func kindNamed(t *testing.T, name string) *Kind {
	for _, k := range Kinds() {
		if k.Name == name {
			return &k
		}
	}
	t.Fatalf("no kind %s", name)
	return nil
}

func TestValidCaller(t *testing.T) {
	for s, want := range map[string]bool{
		"+1 555 0100": true, "(555) 010-0199": true, "*86#": true, "Front desk": true,
		"": false, " 555": false, "555 ": false, `"x"`: false, "a<b>": false, "x\r\nBcc: y@z": false,
		"é": false, strings.Repeat("1", 65): false, strings.Repeat("1", 64): true,
	} {
		assert.Equal(t, want, ValidCaller(s), "%q", s)
	}
}

// TestGatewayAnswers drives the handler with recorders: one row per answer.
func TestGatewayAnswers(t *testing.T) {
	fax := ingesttest.TIFF(2, false, []byte("page"))
	wav := ingesttest.WAV(8000, 800, nil)
	big := ingesttest.TIFF(1, false, make([]byte, 64<<10))
	tests := []struct {
		name       string
		path       string
		body       []byte
		remote     string
		auth       string
		token      string
		checkErr   error
		deliverErr error
		chunked    bool
		xff        string // X-Forwarded-For, never trusted
		code       int
		errText    string
	}{
		{name: "fax", path: "/v1/ingest/fax?to=alice@example.com&from=%2B1%20555%200100", body: fax, code: 201},
		{name: "voice", path: "/v1/ingest/voice?to=Alice@Example.com", body: wav, code: 201},
		{name: "wav as fax", path: "/v1/ingest/fax?to=alice@example.com", body: wav, code: 415, errText: "not a valid image/tiff document: no TIFF magic"},
		{name: "tiff as voice", path: "/v1/ingest/voice?to=alice@example.com", body: fax, code: 415, errText: "no WAV magic"},
		{name: "empty", path: "/v1/ingest/voice?to=alice@example.com", body: nil, code: 415, errText: "too short"},
		{name: "no to", path: "/v1/ingest/fax", body: fax, code: 400, errText: "to: missing"},
		{name: "bad to", path: "/v1/ingest/fax?to=Alice%20%3Calice@example.com%3E", body: fax, code: 400, errText: "is not an address"},
		{name: "bad from", path: "/v1/ingest/fax?to=alice@example.com&from=a%0d%0aBcc:%20x", body: fax, code: 400, errText: "from:"},
		{name: "unknown", path: "/v1/ingest/fax?to=nobody@example.com", body: fax, code: 404, errText: "no mailbox nobody@example.com"},
		{name: "no quorum", path: "/v1/ingest/fax?to=alice@example.com", body: fax, checkErr: fmt.Errorf("%w: 1 live, quorum 2", ErrUnavailable), code: 503, errText: "try again later"},
		{name: "store fails", path: "/v1/ingest/fax?to=alice@example.com", body: fax, deliverErr: ErrUnavailable, code: 503},
		{name: "pipeline refuses", path: "/v1/ingest/fax?to=alice@example.com", body: fax, deliverErr: fmt.Errorf("%w: sender listed", ErrRejected), code: 422, errText: "sender listed"},
		{name: "quota", path: "/v1/ingest/fax?to=alice@example.com", body: fax, deliverErr: ErrQuota, code: 507},
		{name: "other error", path: "/v1/ingest/fax?to=alice@example.com", body: fax, deliverErr: errors.New("disk on fire"), code: 500, errText: "disk on fire"},
		{name: "too big, declared", path: "/v1/ingest/fax?to=alice@example.com", body: big, code: 413, errText: "over the limit"},
		{name: "too big, chunked", path: "/v1/ingest/fax?to=alice@example.com", body: big, chunked: true, code: 413, errText: "over the limit"},
		{name: "remote without token", path: "/v1/ingest/fax?to=alice@example.com", body: fax, remote: "192.0.2.7:4000", code: 403, errText: "loopback clients only"},
		{name: "remote with token", path: "/v1/ingest/fax?to=alice@example.com", body: fax, remote: "192.0.2.7:4000", token: "s3cret", auth: "Bearer s3cret", code: 201},
		{name: "token missing", path: "/v1/ingest/fax?to=alice@example.com", body: fax, token: "s3cret", code: 401, errText: "bearer token is required"},
		{name: "token wrong", path: "/v1/ingest/fax?to=alice@example.com", body: fax, token: "s3cret", auth: "Bearer s3cre", code: 401, errText: "wrong bearer token"},
		{name: "basic auth", path: "/v1/ingest/fax?to=alice@example.com", body: fax, token: "s3cret", auth: "Basic czNjcmV0", code: 401},
		{name: "scheme in lower case", path: "/v1/ingest/fax?to=alice@example.com", body: fax, token: "s3cret", auth: "bearer s3cret", code: 201},
		{name: "token alone", path: "/v1/ingest/fax?to=alice@example.com", body: fax, token: "s3cret", auth: "s3cret", code: 401},
		{name: "IPv6 loopback", path: "/v1/ingest/fax?to=alice@example.com", body: fax, remote: "[::1]:4000", code: 201},
		{name: "IPv4-mapped loopback", path: "/v1/ingest/fax?to=alice@example.com", body: fax, remote: "[::ffff:127.0.0.1]:4000", code: 201},
		{name: "IPv4-mapped remote", path: "/v1/ingest/fax?to=alice@example.com", body: fax, remote: "[::ffff:192.0.2.7]:4000", code: 403},
		{name: "IPv6 remote", path: "/v1/ingest/fax?to=alice@example.com", body: fax, remote: "[2001:db8::7]:4000", code: 403},
		{name: "forwarded for loopback", path: "/v1/ingest/fax?to=alice@example.com", body: fax, remote: "192.0.2.7:4000", xff: "127.0.0.1", code: 403, errText: "loopback clients only"},
	}
	for _, tc := range tests {
		b := &fakeBackend{known: map[string]bool{"alice@example.com": true}, checkErr: tc.checkErr, deliverErr: tc.deliverErr}
		g := newGateway(t, b, func(c *Config) { c.Token = tc.token })
		mux := http.NewServeMux()
		g.Register(mux)
		req := httptest.NewRequest(http.MethodPost, tc.path, bytes.NewReader(tc.body))
		if tc.chunked {
			req.ContentLength = -1
		}
		req.RemoteAddr = "127.0.0.1:5555"
		if tc.remote != "" {
			req.RemoteAddr = tc.remote
		}
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		if tc.xff != "" {
			req.Header.Set("X-Forwarded-For", tc.xff)
			req.Header.Set("X-Real-IP", tc.xff)
			req.Header.Set("Forwarded", "for="+tc.xff)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		require.Equal(t, tc.code, rec.Code, "%s: %s", tc.name, rec.Body.String())
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"), tc.name)
		var got map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got), tc.name)
		if tc.code != 201 {
			assert.Contains(t, got["error"], tc.errText, tc.name)
			assert.Empty(t, b.got, "%s: nothing delivered", tc.name)
			if tc.code == 503 {
				assert.NotEmpty(t, rec.Header().Get("Retry-After"), tc.name)
			}
			if tc.code == 401 {
				assert.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer", tc.name)
			}
			continue
		}
		require.Len(t, b.got, 1, tc.name)
		d := b.got[0]
		assert.Equal(t, got["id"], d.ID, tc.name)
		assert.Equal(t, "alice@example.com", d.To, "%s: recipient lower-cased", tc.name)
		assert.Equal(t, got["to"], d.To, tc.name)
		assert.Equal(t, float64(len(d.Data)), got["size_bytes"], tc.name)
		p := parseBuilt(t, d.Data)
		assert.Equal(t, got["subject"], p.header.Get("Subject"), tc.name)
		assert.Equal(t, tc.body, p.attach, "%s: the document arrives intact", tc.name)
	}
}

func TestGatewayLimitsInflight(t *testing.T) {
	b := &fakeBackend{known: map[string]bool{"alice@example.com": true}}
	g := newGateway(t, b, func(c *Config) { c.MaxInflight = 1 })
	mux := http.NewServeMux()
	g.Register(mux)
	g.inflight <- struct{}{} // one upload in progress
	req := httptest.NewRequest(http.MethodPost, "/v1/ingest/fax?to=alice@example.com", bytes.NewReader(ingesttest.TIFF(1, false, nil)))
	req.RemoteAddr = "127.0.0.1:1"
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), "busy")
	<-g.inflight
	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodPost, "/v1/ingest/fax?to=alice@example.com", bytes.NewReader(ingesttest.TIFF(1, false, nil)))
	req.RemoteAddr = "127.0.0.1:1"
	mux.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusCreated, rec.Code, "the slot is free again: %s", rec.Body.String())
}

func TestMaxDocumentBytesFits(t *testing.T) {
	b := &fakeBackend{known: map[string]bool{"alice@example.com": true}}
	g := newGateway(t, b, nil)
	doc := ingesttest.TIFF(1, false, make([]byte, g.MaxDocumentBytes()-200))
	doc = append(doc, make([]byte, g.MaxDocumentBytes()-int64(len(doc)))...)
	req := httptest.NewRequest(http.MethodPost, "/v1/ingest/fax?to=alice@example.com&from=%2B15550100123456789012", bytes.NewReader(doc))
	req.RemoteAddr = "127.0.0.1:1"
	rec := httptest.NewRecorder()
	mux := http.NewServeMux()
	g.Register(mux)
	mux.ServeHTTP(rec, req)
	require.Equal(t, http.StatusCreated, rec.Code, "a document of exactly MaxDocumentBytes fits: %s", rec.Body.String())
	assert.LessOrEqual(t, int64(len(b.got[0].Data)), g.cfg.MaxMessageBytes)
}
