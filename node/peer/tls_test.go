package peer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/tlstest"
)

// Over mutual TLS the client replicates over a stream inside TLS; a host
// without a certificate from the array's CA gets nothing.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir)
	cfgOf := func(name string) Config {
		cert, key := ca.Issue(t, dir, name)
		tl, err := LoadTLS(ca.File, cert, key)
		require.NoError(t, err)
		return Config{TLS: tl}
	}
	h := newMemHandler()
	addr := serve(t, cfgOf("s"), h)
	r := &resolver{}
	r.set("s", addr)
	c := newClient(t, cfgOf("c"), r)
	for i := range 10 {
		data := []byte("over TLS " + strconv.Itoa(i))
		e := pendingEntry("t"+strconv.Itoa(i), data)
		require.NoError(t, c.PutCopy(context.Background(), "s", data, &e))
		require.NoError(t, c.PushEntries(context.Background(), "s", []catalog.Entry{e}))
	}
	got, err := c.FetchCopy(context.Background(), "s", "t3", pendingEntry("t3", []byte("over TLS 3")).Sum)
	require.NoError(t, err)
	assert.Equal(t, "over TLS 3", string(got), "HTTP requests inside TLS too")
	streams, refused := c.StreamCounts()
	assert.Equal(t, 1, streams, "the client replicates over a stream inside TLS")
	assert.Zero(t, refused, "no upgrade refused")

	peer := addr
	// Plain HTTP is not spoken on the peer port.
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + peer + "/v1/buckets")
	if err == nil {
		resp.Body.Close()
		assert.NotEqual(t, http.StatusOK, resp.StatusCode, "plain HTTP refused")
	}
	// TLS without a client certificate, or with one from another CA, is refused.
	other := tlstest.NewCA(t, t.TempDir())
	oc, ok := other.Issue(t, t.TempDir(), "intruder")
	for _, certs := range [][]string{nil, {oc, ok}} {
		cfg := &tls.Config{InsecureSkipVerify: true}
		if certs != nil {
			pair, err := tls.LoadX509KeyPair(certs[0], certs[1])
			require.NoError(t, err)
			cfg.Certificates = []tls.Certificate{pair}
		}
		cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := cl.Get("https://" + peer + "/v1/buckets")
		if err == nil {
			resp.Body.Close()
		}
		assert.Error(t, err, "a host without the array's certificate cannot use the peer API (client certs %v)", certs != nil)
	}
}

// A peer certificate replaced on disk by a new pair from the same CA is
// taken without a restart: once Watch has seen the files change, new
// connections present it, both as server and as client; a pair the CA
// does not sign is refused and the old one kept.
func TestTLSReloadsRotatedCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir)
	cert, key := ca.Issue(t, dir, "s")
	tl, err := LoadTLS(ca.File, cert, key)
	require.NoError(t, err)
	addr := serve(t, Config{TLS: tl}, newMemHandler())
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		tl.Watch(ctx, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() {
		cancel()
		<-watched
	})

	// The certificate the server presents, and the one its client half
	// would present (seen by a server of our own that records it).
	served := func() *big.Int {
		cc, cf := ca.Issue(t, t.TempDir(), "probe")
		pair, err := tls.LoadX509KeyPair(cc, cf)
		require.NoError(t, err)
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}})
		require.NoError(t, err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber
	}
	presented := func() *big.Int {
		srvCert, srvKey := ca.Issue(t, t.TempDir(), "other")
		pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
		require.NoError(t, err)
		got := make(chan *big.Int, 1)
		l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAnyClientCert,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				c, err := x509.ParseCertificate(raw[0])
				if err == nil {
					got <- c.SerialNumber
				}
				return err
			}})
		require.NoError(t, err)
		defer l.Close()
		go func() {
			if c, err := l.Accept(); err == nil {
				c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		conn, err := tls.Dial("tcp", l.Addr().String(), tl.client)
		require.NoError(t, err)
		conn.Close()
		return <-got
	}
	serialOf := func(file string) *big.Int {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		p, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(p.Bytes)
		require.NoError(t, err)
		return c.SerialNumber
	}
	old := serialOf(cert)
	require.Equal(t, old, served())
	require.Equal(t, old, presented())

	// Rotate: a new pair from the same CA over the same files.
	newCert, newKey := ca.Issue(t, t.TempDir(), "s2")
	for from, to := range map[string]string{newCert: cert, newKey: key} {
		b, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(to+".tmp", b, 0o600))
		require.NoError(t, os.Rename(to+".tmp", to))
	}
	rotated := serialOf(cert)
	require.NotEqual(t, old, rotated)
	require.Eventually(t, func() bool { return served().Cmp(rotated) == 0 }, 10*time.Second, 20*time.Millisecond,
		"new connections to the server get the rotated certificate")
	assert.Equal(t, rotated, presented(), "and the client half presents it")

	// A pair from another CA is refused; the rotated one stays.
	other := tlstest.NewCA(t, t.TempDir())
	oc, ok := other.Issue(t, t.TempDir(), "intruder")
	require.NoError(t, os.Rename(oc, cert))
	require.NoError(t, os.Rename(ok, key))
	changed, err := tl.Reload()
	assert.False(t, changed)
	assert.Error(t, err, "a certificate the CA does not sign is not loaded")
	assert.Equal(t, rotated, served())
}
