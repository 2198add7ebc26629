package node

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
	"mailarray/node/ingest/ingesttest"
)

// startTXTServer serves TXT records over UDP on loopback (unknown names:
// NXDOMAIN) and returns its address.
func startTXTServer(t *testing.T, txt map[string]string) string {
	t.Helper()
	pc, err := (&env.RealNet{}).ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		s, ok := txt[strings.TrimSuffix(strings.ToLower(q.Name), ".")]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeTXT:
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{s}})
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() {
		require.NoError(t, srv.Shutdown())
		<-served
	})
	return pc.LocalAddr().String()
}

// TestAuthResultsStored sends a DKIM-signed message from remote.test (the
// test client's MAIL FROM domain, whose SPF record lists loopback) and
// reads it back by POP3 with the array's Authentication-Results field;
// with dmarc-policy reject, a message whose From domain fails DMARC is
// refused with 550 5.7.1 and nothing is stored.
func TestAuthResultsStored(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	resolver := startTXTServer(t, map[string]string{
		"remote.test":                "v=spf1 ip4:127.0.0.1 -all",
		"sel._domainkey.remote.test": "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub),
		"_dmarc.remote.test":         "v=DMARC1; p=reject",
		"_dmarc.bank.test":           "v=DMARC1; p=reject",
	})
	n := startNode(t, func(c *Config) {
		c.Pipeline.Auth.Resolver = resolver
		c.Pipeline.Auth.DMARCPolicy = "reject"
	})

	raw := []byte("From: Sender <sender@remote.test>\r\nTo: alice@example.com\r\nSubject: signed\r\n\r\nHello.\r\n")
	var signed bytes.Buffer
	require.NoError(t, dkim.Sign(&signed, bytes.NewReader(raw), &dkim.SignOptions{Domain: "remote.test", Selector: "sel", Signer: priv}))
	// A forged field claiming the array's checks is removed.
	msg := append([]byte("Authentication-Results: example.com; dmarc=pass header.from=bank.test\r\n"), signed.Bytes()...)
	_, err = send(t, n.Addr("smtp"), []string{"alice@example.com"}, msg)
	require.NoError(t, err)

	got := readAll(t, n.Addr("pop3"), "alice@example.com", "secret")
	require.Len(t, got, 1)
	for _, b := range got {
		s := string(b)
		require.Equal(t, 1, strings.Count(s, "Authentication-Results:"), s)
		i := strings.Index(s, "Authentication-Results: ")
		end := strings.Index(s[i:], "\r\n") + i
		for strings.HasPrefix(s[end:], "\r\n\t") {
			end += strings.Index(s[end+2:], "\r\n") + 2
		}
		field := s[i:end]
		assert.Equal(t, "Authentication-Results: example.com;\r\n\tspf=pass smtp.mailfrom=sender@remote.test;\r\n\tdkim=pass header.d=remote.test header.i=@remote.test;\r\n\tdmarc=pass header.from=remote.test policy.dmarc=reject", field)
		id, results, err := authres.Parse(strings.TrimPrefix(field, "Authentication-Results:"))
		require.NoError(t, err)
		assert.Equal(t, "example.com", id)
		require.Len(t, results, 3)
		assert.Equal(t, &authres.DMARCResult{Value: authres.ResultPass, From: "remote.test"}, results[2])
		assert.True(t, strings.HasSuffix(s, signed.String()), "the signed message is stored intact below our fields")
	}

	// bank.test publishes p=reject; the message comes from remote.test's
	// server unsigned: DMARC fails and the configured policy refuses it.
	forged := []byte("From: CEO <ceo@bank.test>\r\nTo: alice@example.com\r\nSubject: wire\r\n\r\nPay now.\r\n")
	_, err = send(t, n.Addr("smtp"), []string{"alice@example.com"}, forged)
	var se *gosmtp.SMTPError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 550, se.Code)
	assert.Equal(t, gosmtp.EnhancedCode{5, 7, 1}, se.EnhancedCode)
	assert.Len(t, readAll(t, n.Addr("pop3"), "alice@example.com", "secret"), 1, "nothing more stored")
}

// TestAuthSkipsIngest: a fax the array's own gateway wraps into mail comes
// from fax@<hosted domain> over HTTP, which no SPF record or DKIM key
// covers; sender authentication must not judge it, or a hosted domain
// publishing p=reject would lose its faxes under dmarc-policy honour.
func TestAuthSkipsIngest(t *testing.T) {
	resolver := startTXTServer(t, map[string]string{"_dmarc.example.com": "v=DMARC1; p=reject"})
	n := startNode(t, func(c *Config) {
		c.Pipeline.Auth.Resolver = resolver
		c.Pipeline.Auth.DMARCPolicy = "honour"
	})
	code, res := ingestDoc(t, n, "fax", "to=alice@example.com", ingesttest.TIFF(1, false, nil), "")
	require.Equal(t, http.StatusCreated, code, "%v", res)
	got := readAll(t, n.Addr("pop3"), "alice@example.com", "secret")
	require.Len(t, got, 1)
	for id, msg := range got {
		assert.NotContains(t, string(msg), "Authentication-Results:")
		e, _ := n.Catalog().Get(id)
		assert.Contains(t, strings.Join(e.Trace, "\n"), "auth: accept: made by the array")
	}
}
