package node

import (
	"crypto/tls"
	"net"
	"testing"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
	"mailarray/node/pop3"
	"mailarray/node/tlstest"
)

func TestTLSStartTLSAndSTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := tlstest.WriteSelfSigned(t, dir, "n1.example.com")
	c := &testCluster{t: t, group: nil, nodes: map[string]*Node{}, dirs: map[string]string{}, r: 1, w: 1, users: testUsers}
	cfg := c.config("n1")
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	cfg.POP3SAddr = "127.0.0.1:0"
	e := &Env{Net: &env.RealNet{}, Rand: env.NewRand(1), Membership: staticSelf("n1"), DataDir: cfg.DataDir, Log: testLogger(t)}
	n, err := New(cfg, e)
	require.NoError(t, err)
	require.NoError(t, n.Start())
	defer n.Close()
	tcfg := &tls.Config{RootCAs: pool, ServerName: "n1.example.com"}

	// SMTP: STARTTLS advertised and working; the Received header says ESMTPS.
	conn, err := net.Dial("tcp", n.Addr("smtp"))
	require.NoError(t, err)
	sc := gosmtp.NewClient(conn)
	require.NoError(t, sc.Hello("client.test"))
	ok, _ := sc.Extension("STARTTLS")
	require.True(t, ok, "STARTTLS advertised with a certificate")
	sc.Close()
	conn, err = net.Dial("tcp", n.Addr("smtp"))
	require.NoError(t, err)
	sc, err = gosmtp.NewClientStartTLS(conn, tcfg)
	require.NoError(t, err)
	_, isTLS := sc.TLSConnectionState()
	require.True(t, isTLS)
	require.NoError(t, sc.Mail("s@remote.test", nil))
	require.NoError(t, sc.Rcpt("alice@example.com", nil))
	wc, err := sc.Data()
	require.NoError(t, err)
	wc.Write(testMessage("over tls", 600))
	require.NoError(t, wc.Close())
	sc.Quit()

	// POP3: STLS in CAPA and working.
	conn, err = net.Dial("tcp", n.Addr("pop3"))
	require.NoError(t, err)
	pc, err := pop3.NewClient(conn)
	require.NoError(t, err)
	capa, err := pc.Capa()
	require.NoError(t, err)
	assert.Contains(t, capa, "STLS")
	require.NoError(t, pc.StartTLS(tcfg))
	require.NoError(t, pc.Login("alice@example.com", "secret"))
	msg, err := pc.Retr(1)
	require.NoError(t, err)
	assert.Contains(t, string(msg), "with ESMTPS id")
	pc.Quit()

	// POP3S: implicit TLS.
	tc, err := tls.Dial("tcp", n.Addr("pop3s"), tcfg)
	require.NoError(t, err)
	pc, err = pop3.NewClient(tc)
	require.NoError(t, err)
	require.NoError(t, pc.Login("alice@example.com", "secret"))
	cnt, _, err := pc.Stat()
	require.NoError(t, err)
	assert.Equal(t, 1, cnt)
	pc.Quit()
}
