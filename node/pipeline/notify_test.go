package pipeline

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

// startHTTP serves h on 127.0.0.1 through env.RealNet.
func startHTTP(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	l, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// startNotifier returns a notifier with short backoffs and one worker,
// stopped at cleanup.
func startNotifier(t *testing.T, cfg NotifyConfig) (*Notifier, *logBuffer) {
	t.Helper()
	log, logs := testLogger()
	n := NewNotifier(cfg, &env.RealNet{}, env.NewRand(1), log)
	done := make(chan struct{})
	go func() { defer close(done); n.Run(context.Background()) }()
	t.Cleanup(func() {
		require.NoError(t, n.Close())
		<-done
	})
	return n, logs
}

func fastNotify() NotifyConfig {
	return NotifyConfig{QueueMax: 10, MaxAttempts: 3, BackoffMin: time.Millisecond, BackoffMax: 4 * time.Millisecond, Timeout: 5 * time.Second}
}

func TestNotifyWebhook(t *testing.T) {
	got := make(chan Event, 1)
	var contentType atomic.Value
	srv := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		contentType.Store(r.Header.Get("Content-Type"))
		var ev Event
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&ev) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got <- ev
	})
	n, _ := startNotifier(t, fastNotify())
	data := buildMessage(t, "Alice <alice@example.org>", "=?utf-8?q?caf=C3=A9?= news", textPart("hello"))
	ev := NewEvent("T1", "ignored", "alice@example.org", data)
	assert.Equal(t, "caf\u00e9 news", ev.Subject)
	require.True(t, n.Notify("bob@mx.test", srv.URL+"/hook", ev))
	select {
	case e := <-got:
		assert.Equal(t, Event{ID: "T1", Mailbox: "bob@mx.test", From: "alice@example.org", Subject: "caf\u00e9 news", Size: int64(len(data))}, e)
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook call")
	}
	assert.Equal(t, "application/json", contentType.Load())
	require.Eventually(t, func() bool { return n.Stats().Sent == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, NotifyStats{Queued: 1, Sent: 1}, n.Stats())
}

func TestNotifyRetries(t *testing.T) {
	var calls atomic.Int64
	ok := make(chan int64, 1)
	srv := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		c := calls.Add(1)
		if c <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		ok <- c
	})
	n, logs := startNotifier(t, fastNotify())
	require.True(t, n.Notify("bob@mx.test", srv.URL, Event{ID: "T2"}))
	select {
	case c := <-ok:
		assert.Equal(t, int64(3), c, "delivered on the third attempt")
	case <-time.After(10 * time.Second):
		t.Fatal("never delivered")
	}
	require.Eventually(t, func() bool { return n.Stats().Sent == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, NotifyStats{Queued: 1, Sent: 1, Retried: 2}, n.Stats())
	assert.Contains(t, logs.String(), "attempt=3")
}

func TestNotifyGivesUp(t *testing.T) {
	var unavailable, notFound atomic.Int64
	srv := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/gone") {
			notFound.Add(1)
			w.WriteHeader(http.StatusNotFound)
			return
		}
		unavailable.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	})
	n, _ := startNotifier(t, fastNotify())
	require.True(t, n.Notify("bob@mx.test", srv.URL+"/down", Event{ID: "a"}))
	require.True(t, n.Notify("bob@mx.test", srv.URL+"/gone", Event{ID: "b"}))
	require.Eventually(t, func() bool { return n.Stats().Failed == 2 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, int64(3), unavailable.Load(), "MaxAttempts tries")
	assert.Equal(t, int64(1), notFound.Load(), "a 404 is not retried")
	assert.Equal(t, 0, n.Stats().Pending)
}

func TestNotifySMS(t *testing.T) {
	type sms struct{ To, Text string }
	got := make(chan sms, 1)
	gw := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		var s sms
		assert.NoError(t, json.NewDecoder(r.Body).Decode(&s))
		got <- s
	})
	cfg := fastNotify()
	cfg.SMSGateway = gw.URL + "/send"
	n, logs := startNotifier(t, cfg)
	ev := Event{ID: "T3", From: "alice@example.org", Subject: strings.Repeat("long subject ", 20), Size: 1234}
	require.True(t, n.Notify("bob@mx.test", "sms:+15551234567", ev))
	select {
	case s := <-got:
		assert.Equal(t, "+15551234567", s.To)
		assert.True(t, strings.HasPrefix(s.Text, "New mail for bob@mx.test from alice@example.org: long subject"), s.Text)
		assert.Len(t, []rune(s.Text), MaxSMSTextRunes)
	case <-time.After(10 * time.Second):
		t.Fatal("no SMS")
	}
	require.Eventually(t, func() bool { return n.Stats().Sent == 1 }, 5*time.Second, time.Millisecond)
	assert.NotContains(t, logs.String(), "15551234567", "the number is masked in logs")
	assert.Contains(t, logs.String(), "sms:...4567")
}

// TestNotifySetSMSGateway: a new gateway takes the notices queued from
// then on; a bad one is refused and the old one stays.
func TestNotifySetSMSGateway(t *testing.T) {
	got := make(chan string, 2)
	gw := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { got <- r.URL.Path })
	n, _ := startNotifier(t, fastNotify())
	assert.False(t, n.Notify("bob@mx.test", "sms:+15551234567", Event{ID: "T6"}), "no gateway yet")
	require.NoError(t, n.SetSMSGateway(gw.URL+"/one"))
	require.Error(t, n.SetSMSGateway("ftp://gw.test/"))
	require.True(t, n.Notify("bob@mx.test", "sms:+15551234567", Event{ID: "T7"}))
	select {
	case p := <-got:
		assert.Equal(t, "/one", p)
	case <-time.After(10 * time.Second):
		t.Fatal("no SMS")
	}
	require.NoError(t, n.SetSMSGateway(""))
	assert.False(t, n.Notify("bob@mx.test", "sms:+15551234567", Event{ID: "T8"}), "gateway removed")
}

func TestNotifyRefusals(t *testing.T) {
	log, logs := testLogger()
	cfg := fastNotify()
	cfg.QueueMax = 2
	n := NewNotifier(cfg, &env.RealNet{}, env.NewRand(1), log) // no worker: the queue fills
	tests := []struct {
		target string
		want   bool
	}{
		{"http://127.0.0.1:1/a", true},
		{"https://127.0.0.1:1/b", true},
		{"http://127.0.0.1:1/c", false}, // full
		{"sms:+15551234567", false},     // no gateway
		{"sms:12345", false},
		{"ftp://example.org/", false},
		{"", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, n.Notify("bob@mx.test", tt.target, Event{}), tt.target)
	}
	assert.Equal(t, NotifyStats{Queued: 2, Dropped: 1, Invalid: 4, Pending: 2}, n.Stats())
	assert.Contains(t, logs.String(), "queue_full=true")
	require.NoError(t, n.Close())
	assert.Equal(t, NotifyStats{Queued: 2, Dropped: 1, Invalid: 4, Abandoned: 2}, n.Stats())
	assert.False(t, n.Notify("bob@mx.test", "http://127.0.0.1:1/d", Event{}), "closed")
	n.Run(context.Background()) // returns at once after Close
	require.NoError(t, n.Close(), "Close is idempotent")
}

func TestNotifyCloseStopsWorker(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	srv := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a hang-up only once the body is read
		close(entered)
		select { // hang until the client gives up
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	n := NewNotifier(fastNotify(), &env.RealNet{}, env.NewRand(1), nil)
	done := make(chan struct{})
	go func() { defer close(done); n.Run(context.Background()) }()
	require.True(t, n.Notify("bob@mx.test", srv.URL, Event{ID: "T4"}))
	require.True(t, n.Notify("bob@mx.test", srv.URL, Event{ID: "T5"}))
	<-entered
	require.NoError(t, n.Close())
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	assert.Equal(t, NotifyStats{Queued: 2, Abandoned: 2}, n.Stats(), "one queued, one in flight")
}

func TestNotifyConfig(t *testing.T) {
	cfg := NotifyConfig{}
	require.NoError(t, cfg.Validate())
	assert.Equal(t, DefaultNotifyConfig(), cfg)
	for _, bad := range []NotifyConfig{
		{QueueMax: -1},
		{MaxAttempts: -1},
		{BackoffMin: time.Second, BackoffMax: time.Millisecond},
		{SMSGateway: "sms.example.org"},
		{Timeout: -1},
	} {
		assert.Error(t, bad.Validate(), "%+v", bad)
	}
	assert.Panics(t, func() { NewNotifier(NotifyConfig{QueueMax: -1}, &env.RealNet{}, env.NewRand(1), nil) })

	// Backoff doubles up to its cap, with at most half again of jitter.
	n := NewNotifier(NotifyConfig{BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second}, &env.RealNet{}, env.NewRand(7), nil)
	defer n.Close()
	for attempt, base := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 9: time.Second} {
		d := n.backoff(attempt)
		assert.GreaterOrEqual(t, d, base, "attempt %d", attempt)
		assert.LessOrEqual(t, d, base+base/2, "attempt %d", attempt)
	}
}
