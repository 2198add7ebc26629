package node

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
	"mailarray/node/pop3"
	"mailarray/node/tlstest"
)

// logBuffer collects a node's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines whose msg is msg, decoded.
func (b *logBuffer) lines(t testing.TB, msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "log line %s", sc.Text())
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// startAccessNode starts one node with SMTP, POP3, IMAP and HTTP on
// loopback, logging JSON into the returned buffer; mutate adjusts its
// configuration first.
func startAccessNode(t *testing.T, mutate func(*Config)) (*Node, *logBuffer) {
	t.Helper()
	c := &testCluster{t: t, nodes: map[string]*Node{}, dirs: map[string]string{}, r: 1, w: 1, users: testUsers}
	cfg := c.config("n1")
	cfg.IMAPAddr = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &logBuffer{}
	e := &Env{Net: &env.RealNet{}, Rand: env.NewRand(1), Membership: staticSelf("n1"), DataDir: cfg.DataDir,
		Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	n, err := New(cfg, e)
	require.NoError(t, err)
	require.NoError(t, n.Start())
	t.Cleanup(func() { n.Close() })
	return n, logs
}

// loginCount reads mailarray_logins_total{protocol,result} from the
// node's registry (0 when absent).
func loginCount(t testing.TB, n *Node, protocol, result string) float64 {
	t.Helper()
	mfs, err := n.metrics.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "mailarray_logins_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["protocol"] == protocol && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestCleartextAuthRefusedWhereTLSIsConfigured: with a certificate and
// allow-cleartext-auth unset, POP3 and IMAP take passwords only after
// STLS/STARTTLS, and say so in CAPA (no USER) and CAPABILITY
// (LOGINDISABLED, no AUTH=PLAIN).
func TestCleartextAuthRefusedWhereTLSIsConfigured(t *testing.T) {
	certFile, keyFile, pool := tlstest.WriteSelfSigned(t, t.TempDir(), "n1.example.com")
	n, _ := startAccessNode(t, func(cfg *Config) { cfg.TLSCert, cfg.TLSKey = certFile, keyFile })
	tcfg := &tls.Config{RootCAs: pool, ServerName: "n1.example.com"}

	conn, err := net.Dial("tcp", n.Addr("pop3"))
	require.NoError(t, err)
	pc, err := pop3.NewClient(conn)
	require.NoError(t, err)
	defer pc.Close()
	capa, err := pc.Capa()
	require.NoError(t, err)
	assert.NotContains(t, capa, "USER", "RFC 2449: USER not offered before STLS")
	assert.Contains(t, capa, "STLS")
	err = pc.Login("alice@example.com", "secret")
	assert.Equal(t, "AUTH", pop3.ErrorCode(err), "cleartext USER refused: %v", err)
	require.NoError(t, pc.StartTLS(tcfg))
	capa, err = pc.Capa()
	require.NoError(t, err)
	assert.Contains(t, capa, "USER")
	require.NoError(t, pc.Login("alice@example.com", "secret"), "after STLS")
	require.NoError(t, pc.Quit())

	cl := imapDial(t, n.Addr("imap"), nil)
	caps, err := cl.Capability().Wait()
	require.NoError(t, err)
	assert.True(t, caps.Has(imap.CapLoginDisabled), "LOGINDISABLED before STARTTLS: %v", caps)
	assert.False(t, caps.Has("AUTH=PLAIN"), "no AUTH=PLAIN before STARTTLS: %v", caps)
	assert.True(t, caps.Has(imap.CapStartTLS))
	err = cl.Login("alice@example.com", "secret").Wait()
	require.Error(t, err, "cleartext LOGIN refused")
	assert.Contains(t, err.Error(), "PRIVACYREQUIRED")
	conn, err = net.Dial("tcp", n.Addr("imap"))
	require.NoError(t, err)
	tc, err := imapclient.NewStartTLS(conn, &imapclient.Options{TLSConfig: tcfg})
	require.NoError(t, err)
	defer tc.Close()
	require.NoError(t, tc.Login("alice@example.com", "secret").Wait(), "after STARTTLS")
}

// TestCleartextAuthExplicitlyAllowed: allow-cleartext-auth true keeps
// plaintext logins working where TLS is configured.
func TestCleartextAuthExplicitlyAllowed(t *testing.T) {
	certFile, keyFile, _ := tlstest.WriteSelfSigned(t, t.TempDir(), "n1.example.com")
	yes := true
	n, _ := startAccessNode(t, func(cfg *Config) {
		cfg.TLSCert, cfg.TLSKey = certFile, keyFile
		cfg.AllowCleartextAuth = &yes
	})
	conn, err := net.Dial("tcp", n.Addr("pop3"))
	require.NoError(t, err)
	pc, err := pop3.NewClient(conn)
	require.NoError(t, err)
	defer pc.Close()
	require.NoError(t, pc.Login("alice@example.com", "secret"))
	cl := imapDial(t, n.Addr("imap"), nil)
	require.NoError(t, cl.Login("alice@example.com", "secret").Wait())
}

// TestLoginsLoggedAndCounted: every login, success or failure, on POP3,
// IMAP and webmail is one "login" log line with the same fields (remote
// a string "ip:port") and a count in mailarray_logins_total.
func TestLoginsLoggedAndCounted(t *testing.T) {
	n, logs := startAccessNode(t, nil)
	const wrong = "Wr0ng-guess"

	conn, err := net.Dial("tcp", n.Addr("pop3"))
	require.NoError(t, err)
	pc, err := pop3.NewClient(conn)
	require.NoError(t, err)
	defer pc.Close()
	assert.Error(t, pc.Login("alice@example.com", wrong))
	require.NoError(t, pc.Login("alice@example.com", "secret"))
	require.NoError(t, pc.Quit())

	cl := imapDial(t, n.Addr("imap"), nil)
	assert.Error(t, cl.Login("alice@example.com", wrong).Wait())
	require.NoError(t, cl.Login("alice@example.com", "secret").Wait())

	for password, want := range map[string]int{wrong: http.StatusUnauthorized, "secret": http.StatusOK} {
		resp, err := httpClient.Post("http://"+n.Addr("http")+"/v1/mail/login", "application/json",
			strings.NewReader(`{"address":"alice@example.com","password":"`+password+`"}`))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode)
	}

	for _, protocol := range []string{"pop3", "imap", "web"} {
		for _, result := range []string{"success", "failure"} {
			assert.Equal(t, 1.0, loginCount(t, n, protocol, result), "mailarray_logins_total{protocol=%q,result=%q}", protocol, result)
			var found []map[string]any
			for _, l := range logs.lines(t, "login") {
				if l["protocol"] == protocol && l["result"] == result {
					found = append(found, l)
				}
			}
			if assert.Len(t, found, 1, "%s %s login lines", protocol, result) {
				l := found[0]
				assert.Equal(t, "alice@example.com", l["mailbox"])
				remote, ok := l["remote"].(string)
				assert.True(t, ok && strings.HasPrefix(remote, "127.0.0.1:"), "%s: remote is the string ip:port, got %#v", protocol, l["remote"])
			}
		}
	}
	for _, l := range logs.lines(t, "pop3: session start") {
		_, ok := l["remote"].(string)
		assert.True(t, ok, "POP3 session lines carry remote as a string too, got %#v", l["remote"])
	}
	logs.mu.Lock()
	assert.NotContains(t, logs.buf.String(), wrong, "passwords are never logged")
	logs.mu.Unlock()
	var warned bool
	for _, l := range logs.lines(t, "node: INSECURE: POP3/IMAP accept passwords in cleartext: no tls-cert is configured; set tls-cert and tls-key so clients can STLS/STARTTLS (and cleartext logins are then refused)") {
		warned = l["level"] == "WARN"
	}
	assert.True(t, warned, "a node without TLS says at start that passwords cross in clear")
}

// TestAllowCleartextAuthResolved: unset, allow-cleartext-auth follows
// tls-cert; set, it wins; false without TLS is refused (nobody could log
// in).
func TestAllowCleartextAuthResolved(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name    string
		tlsCert string
		allow   *bool
		want    bool
		wantErr string
	}{
		{"no TLS, unset", "", nil, true, ""},
		{"TLS, unset", "cert.pem", nil, false, ""},
		{"TLS, allowed", "cert.pem", &yes, true, ""},
		{"no TLS, allowed", "", &yes, true, ""},
		{"no TLS, forbidden", "", &no, false, "allow-cleartext-auth"},
	} {
		c := &testCluster{t: t, nodes: map[string]*Node{}, dirs: map[string]string{}, r: 1, w: 1, users: testUsers}
		cfg := c.config("n1")
		if tc.tlsCert != "" {
			cfg.TLSCert, cfg.TLSKey = tc.tlsCert, "key.pem"
		}
		cfg.AllowCleartextAuth = tc.allow
		err := cfg.Validate()
		if tc.wantErr != "" {
			assert.ErrorContains(t, err, tc.wantErr, tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.want, cfg.CleartextAuthAllowed(), "%s: got CleartextAuthAllowed", tc.name)
	}
}
