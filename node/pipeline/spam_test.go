package pipeline

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

func newSpam(t *testing.T, cfg SpamConfig) (*Spam, *logBuffer) {
	t.Helper()
	log, logs := testLogger()
	s, err := NewSpam(cfg, log)
	require.NoError(t, err)
	return s, logs
}

func spamDB(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spam.db")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

func TestSpamLocalDatabase(t *testing.T) {
	path := spamDB(t, "# spam sources\nspam.example\nBulk.Example.\nnot a domain\n")
	cfg := DefaultSpamConfig()
	cfg.DBFile = path
	s, logs := newSpam(t, cfg)
	assert.Equal(t, 2, s.Domains())
	assert.Contains(t, logs.String(), "line=4")

	clean := buildMessage(t, "Alice <alice@example.org>", "hi", textPart("hello"))
	tests := []struct {
		name       string
		envelope   string
		data       []byte
		wantReason string // "" for not listed
	}{
		{"clean", "alice@example.org", clean, ""},
		{"envelope sender", "promo@spam.example", clean, "envelope sender domain spam.example in local database"},
		{"envelope subdomain", "x@mail.bulk.example", clean, "envelope sender domain mail.bulk.example in local database (as bulk.example)"},
		{"header From", "alice@example.org", buildMessage(t, `"Deals" <deals@Spam.Example>`, "hi", textPart("x")), "header From domain spam.example in local database"},
		{"unparsable header From", "alice@example.org", buildMessage(t, "deals@spam.example <broken", "hi", textPart("x")), "header From domain spam.example in local database"},
		{"null sender", "", clean, ""},
		{"look-alike domain", "a@notspam.example", clean, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMessage(tt.data)
			m.From = tt.envelope
			v := check(t, s, m)
			assert.Equal(t, Accept, v.Action)
			if tt.wantReason == "" {
				assert.Empty(t, v.Headers)
				assert.True(t, strings.HasPrefix(v.Reason, "not listed"), v.Reason)
				return
			}
			require.Len(t, v.Headers, 2)
			assert.Equal(t, "X-Spam-Flag: YES", v.Headers[0])
			assert.Equal(t, "X-Spam-Reason: "+tt.wantReason, v.Headers[1])
			assert.Equal(t, "listed: "+tt.wantReason+"; flagged", v.Reason)
		})
	}
	assert.Contains(t, logs.String(), `msg="spam: sender listed" id=T1 from=promo@spam.example`)

	// Through the pipeline: the headers follow our Received header.
	m := testMessage(clean)
	m.From = "promo@spam.example"
	res, err := New(DefaultConfig(), nil, s).Run(context.Background(), m)
	require.NoError(t, err)
	assert.Contains(t, string(res.Data), testReceived+"X-Spam-Flag: YES\r\nX-Spam-Reason: envelope sender domain spam.example in local database\r\nFrom: ")
	assert.Equal(t, []string{"spam: accept: listed: envelope sender domain spam.example in local database; flagged"}, res.Trace)

	// Reject policy: 550 5.7.1.
	cfg.Reject = true
	rs, _ := newSpam(t, cfg)
	res, err = New(DefaultConfig(), nil, rs).Run(context.Background(), m)
	require.NoError(t, err)
	require.NotNil(t, res.Reject)
	assert.Equal(t, 550, res.Reject.Code)
	assert.Equal(t, gosmtp.EnhancedCode{5, 7, 1}, res.Reject.EnhancedCode)
	assert.Equal(t, "Message refused: envelope sender domain spam.example in local database", res.Reject.Message)
	assert.Nil(t, res.Data)
}

func TestSpamDatabaseReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spam.db")
	cfg := DefaultSpamConfig()
	cfg.DBFile = path
	s, _ := newSpam(t, cfg) // missing file: empty
	assert.Equal(t, 0, s.Domains())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Watch(ctx, 5*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })

	require.NoError(t, AddDomain(path, "spam.example"))
	require.Eventually(t, func() bool { return s.Domains() == 1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, AddDomain(path, "more.example"))
	require.Eventually(t, func() bool { return s.Domains() == 2 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, os.Remove(path))
	require.Eventually(t, func() bool { return s.Domains() == 0 }, 5*time.Second, 5*time.Millisecond)
}

// dnsbl is a block list server on loopback UDP with its own ServeMux.
type dnsbl struct {
	addr    string
	queries atomic.Int64
}

// startDNSBL answers A queries: listed names get their address, a name
// under "fail." gets SERVFAIL, anything else NXDOMAIN.
func startDNSBL(t *testing.T, listed map[string]string) *dnsbl {
	t.Helper()
	pc, err := (&env.RealNet{}).ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	d := &dnsbl{addr: pc.LocalAddr().String()}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		d.queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		switch ip, ok := listed[strings.ToLower(q.Name)]; {
		case ok && q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)})
		case strings.HasPrefix(strings.ToLower(q.Name), "fail."), strings.Contains(strings.ToLower(q.Name), ".fail."):
			m.Rcode = dns.RcodeServerFailure
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: mux, NotifyStartedFunc: func() { close(started) }}
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() {
		require.NoError(t, srv.Shutdown())
		<-served
	})
	return d
}

func TestSpamDNSBL(t *testing.T) {
	bl := startDNSBL(t, map[string]string{
		"listed.example.dbl.test.":  "127.0.0.2",
		"refused.example.dbl.test.": "127.255.255.254", // a list's error code, not a listing
		"7.2.0.192.ipbl.test.":      "127.0.0.4",
	})
	cfg := DefaultSpamConfig()
	cfg.DNSBL = []string{"dbl.test", "fail.test"}
	cfg.IPBL = []string{"IPBL.test."}
	cfg.DNSServer = bl.addr
	cfg.Net = &env.RealNet{}
	s, logs := newSpam(t, cfg)

	msg := func(envelope, headerFrom string, ip net.IP) *Message {
		m := testMessage(buildMessage(t, headerFrom, "hi", textPart("x")))
		m.From = envelope
		m.Remote = &net.TCPAddr{IP: ip, Port: 25}
		return m
	}
	clean := net.IPv4(198, 51, 100, 1)
	tests := []struct {
		name string
		m    *Message
		want []string // listed reasons
	}{
		{"envelope domain listed", msg("a@listed.example", "b@ok.example", clean), []string{"envelope sender domain listed.example listed by dbl.test (127.0.0.2)"}},
		{"header From listed", msg("a@ok.example", "B <b@listed.example>", clean), []string{"header From domain listed.example listed by dbl.test (127.0.0.2)"}},
		{"client address listed", msg("a@ok.example", "b@ok.example", net.IPv4(192, 0, 2, 7)), []string{"client 192.0.2.7 listed by ipbl.test (127.0.0.4)"}},
		{"error code is not a listing", msg("a@refused.example", "b@ok.example", clean), nil},
		{"nothing listed", msg("a@ok.example", "b@ok.example", clean), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := check(t, s, tt.m)
			assert.Equal(t, Accept, v.Action)
			if tt.want == nil {
				assert.Empty(t, v.Headers, v.Reason)
				assert.Contains(t, v.Reason, "not listed")
			} else {
				assert.Equal(t, []string{"X-Spam-Flag: YES", "X-Spam-Reason: " + strings.Join(tt.want, "; ")}, v.Headers)
			}
			// The failing zone is noted, never fatal.
			assert.Contains(t, v.Reason, "zone fail.test unavailable")
		})
	}
	assert.Contains(t, logs.String(), "spam: block list query failed")
	assert.Positive(t, bl.queries.Load())

	// IPv6 clients are asked in nibble form.
	assert.Equal(t, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2", reverseIP(net.ParseIP("2001:db8::1")))
}

func TestSpamDNSBLTimeout(t *testing.T) {
	// A resolver that never answers: each query gives up after its own
	// timeout, well inside the filter's.
	pc, err := (&env.RealNet{}).ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	cfg := DefaultSpamConfig()
	cfg.DNSBL = []string{"dbl.test"}
	cfg.DNSServer = pc.LocalAddr().String()
	cfg.Net = &env.RealNet{}
	cfg.QueryTimeout = 50 * time.Millisecond
	s, _ := newSpam(t, cfg)
	start := time.Now()
	v := check(t, s, testMessage(buildMessage(t, "b@ok.example", "hi", textPart("x"))))
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, Accept, v.Action)
	assert.Contains(t, v.Reason, "zone dbl.test unavailable")

	// The caller's deadline, though, is the filter's failure.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Check(ctx, testMessage(buildMessage(t, "b@ok.example", "hi", textPart("x"))))
	assert.ErrorIs(t, err, context.Canceled)
}

func TestSpamConfigValidate(t *testing.T) {
	for _, bad := range []SpamConfig{
		{DNSBL: []string{"dbl.test"}},                            // no server
		{DNSBL: []string{"dbl.test"}, DNSServer: "127.0.0.1:53"}, // no network
		{DNSBL: []string{"dbl.test"}, DNSServer: "nope", Net: &env.RealNet{}},
		{DNSBL: []string{"bad zone"}, DNSServer: "127.0.0.1:53", Net: &env.RealNet{}},
		{DNSBL: make([]string, MaxDNSBLZones+1)},
		{QueryTimeout: -1},
	} {
		assert.Error(t, bad.Validate(), "%+v", bad)
	}
}

func TestSpamDomainFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spam.db")
	got, err := ListDomains(path)
	require.NoError(t, err)
	assert.Empty(t, got)

	require.NoError(t, AddDomain(path, "One.Example."))
	require.NoError(t, AddDomain(path, "two.example"))
	assert.ErrorIs(t, AddDomain(path, "ONE.example"), ErrListed)
	assert.Error(t, AddDomain(path, "not a domain"))
	got, err = ListDomains(path)
	require.NoError(t, err)
	assert.Equal(t, []string{"one.example", "two.example"}, got)

	// Comments and unknown lines an operator wrote survive edits.
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, append([]byte("# keep me\n"), b...), 0o644))
	require.NoError(t, os.Chmod(path, 0o600))
	require.NoError(t, DelDomain(path, "one.example"))
	assert.ErrorIs(t, DelDomain(path, "one.example"), ErrNotListed)
	require.NoError(t, AddDomain(path, "three.example"))
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "# keep me\ntwo.example\nthree.example\n", string(b))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the file's mode is kept")
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), ".tmp", "no temporary file left behind")
	}
}

func TestSpamDomainFileConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spam.db")
	require.NoError(t, os.WriteFile(path, []byte("# header\n"), 0o644))
	const writers = 16
	stop := make(chan struct{})
	var readerErr atomic.Value
	var readers sync.WaitGroup
	// A reader that loads the file over and over never sees half of it.
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err != nil {
				readerErr.Store(err)
				return
			}
			if _, problems := ParseDomains(strings.NewReader(string(b)), path); len(problems) > 0 || !strings.HasPrefix(string(b), "# header\n") {
				readerErr.Store(fmt.Errorf("torn read: %q", b))
				return
			}
		}
	})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() { assert.NoError(t, AddDomain(path, fmt.Sprintf("d%02d.example", i))) })
	}
	wg.Wait()
	got, err := ListDomains(path)
	require.NoError(t, err)
	assert.Len(t, got, writers, "no update lost")
	for i := 0; i < writers; i += 2 {
		wg.Go(func() { assert.NoError(t, DelDomain(path, fmt.Sprintf("d%02d.example", i))) })
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if err, _ := readerErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	got, err = ListDomains(path)
	require.NoError(t, err)
	assert.Len(t, got, writers/2)
	for _, d := range got {
		var n int
		_, err := fmt.Sscanf(d, "d%02d.example", &n)
		require.NoError(t, err)
		assert.Equal(t, 1, n%2, d)
	}
}
