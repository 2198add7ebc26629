package node

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/pop3"
)

func smtpCode(err error) int {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func smtpEnhanced(err error) string {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return ""
}

func TestSingleNodeSMTPReplies(t *testing.T) {
	c := newTestCluster(t, 1, 1, 1)
	n := c.nodes["n1"]
	addr := n.Addr("smtp")

	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	cl := gosmtp.NewClient(conn)
	defer cl.Close()
	require.NoError(t, cl.Hello("client.test"))
	for _, ext := range []string{"SIZE", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES"} {
		ok, _ := cl.Extension(ext)
		assert.True(t, ok, "EHLO advertises %s", ext)
	}
	ok, _ := cl.Extension("STARTTLS")
	assert.False(t, ok, "no STARTTLS without a certificate")
	_, size := cl.Extension("SIZE")
	assert.Equal(t, "65536", size)
	require.NoError(t, cl.Mail("s@remote.test", nil))

	tests := []struct {
		rcpt     string
		code     int
		enhanced string
	}{
		{"nobody@example.com", 550, "5.1.1"},
		{"alice@elsewhere.test", 550, "5.7.1"},
		{"ALICE@Example.COM", 0, ""},
	}
	for _, tc := range tests {
		err := cl.Rcpt(tc.rcpt, nil)
		assert.Equal(t, tc.code, smtpCode(err), "RCPT %s: %v", tc.rcpt, err)
		assert.Equal(t, tc.enhanced, smtpEnhanced(err), "RCPT %s", tc.rcpt)
	}
	wc, err := cl.Data()
	require.NoError(t, err)
	_, err = wc.Write(testMessage("too big", 80<<10))
	require.NoError(t, err)
	err = wc.Close()
	assert.Equal(t, 552, smtpCode(err), "oversized DATA: %v", err)
	assert.Equal(t, "5.3.4", smtpEnhanced(err))
	assert.Empty(t, n.Catalog().List("alice@example.com"), "a refused message leaves nothing")
}

func TestSingleNodeDeliverAndRead(t *testing.T) {
	c := newTestCluster(t, 1, 1, 1)
	n := c.nodes["n1"]
	msg := testMessage("hello one", 4096)
	reply, err := send(t, n.Addr("smtp"), []string{"alice@example.com", "bob@example.com"}, msg)
	require.NoError(t, err)
	require.Contains(t, reply, "queued as ")
	txid := strings.TrimSpace(reply[strings.Index(reply, "queued as ")+len("queued as "):])

	got := readAll(t, n.Addr("pop3"), "alice@example.com", "secret")
	require.Len(t, got, 1)
	for id, b := range got {
		assert.True(t, strings.HasPrefix(id, txid), "UIDL %s names the transaction %s", id, txid)
		assert.Equal(t, string(msg), string(body(t, b)), "message intact, dot-stuffing undone both ways")
		assert.Contains(t, string(b), "id "+txid)
		assert.NotContains(t, string(b), "for <", "a copy for several recipients names none (Bcc privacy)")
	}
	// UIDL is stable across sessions; DELE + QUIT removes.
	cl, err := popLogin(t, n.Addr("pop3"), "bob@example.com", "hunter2")
	require.NoError(t, err)
	u1, err := cl.Uidl()
	require.NoError(t, err)
	require.Len(t, u1, 1)
	require.NoError(t, cl.Quit())
	cl, err = popLogin(t, n.Addr("pop3"), "bob@example.com", "hunter2")
	require.NoError(t, err)
	u2, err := cl.Uidl()
	require.NoError(t, err)
	assert.Equal(t, u1, u2, "UIDL stable across sessions")
	require.NoError(t, cl.Dele(1))
	require.NoError(t, cl.Quit())
	assert.Empty(t, readAll(t, n.Addr("pop3"), "bob@example.com", "hunter2"))
	assert.Len(t, readAll(t, n.Addr("pop3"), "alice@example.com", "secret"), 1, "alice's copy is hers alone")

	// Bad password: [AUTH].
	_, err = popLogin(t, n.Addr("pop3"), "alice@example.com", "wrong")
	var pe *pop3.Error
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "AUTH", pe.Code)

	// Durable across a restart.
	n.Close()
	delete(c.nodes, "n1")
	n = c.start("n1")
	got2 := readAll(t, n.Addr("pop3"), "alice@example.com", "secret")
	assert.Equal(t, got, got2, "the mailbox survives a restart")
}

func TestSingleNodeDNS(t *testing.T) {
	c := newTestCluster(t, 1, 1, 1)
	n := c.nodes["n1"]
	cl := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	ask := func(name string, qtype uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		r, _, err := cl.Exchange(m, n.Addr("dns"))
		require.NoError(t, err)
		return r
	}
	r := ask("example.com", dns.TypeMX)
	require.Equal(t, dns.RcodeSuccess, r.Rcode)
	require.Len(t, r.Answer, 1)
	assert.Equal(t, "n1.example.com.", r.Answer[0].(*dns.MX).Mx)
	r = ask("pop.example.org", dns.TypeA)
	require.Len(t, r.Answer, 1)
	assert.Equal(t, "127.0.0.1", r.Answer[0].(*dns.A).A.String())
	assert.Equal(t, dns.RcodeNameError, ask("nope.example.com", dns.TypeA).Rcode)
	assert.Equal(t, dns.RcodeRefused, ask("example.net", dns.TypeMX).Rcode)
}
