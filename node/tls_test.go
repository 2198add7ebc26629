package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
	"mailarray/node/pop3"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and returns the
// file names and a pool that trusts it.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{cn},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSStartTLSAndSTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir, "n1.example.com")
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
