package peer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"mailarray/node/pemfile"
)

// TLS is the peer API's mutual TLS: every node has a certificate
// signed by the array's CA and accepts only peers whose certificate chains
// to that CA. Peers are addressed by IP, so trust is the CA signature, not
// a host name: a host without a certificate from the array's CA can
// neither read nor write mail through the peer API, and nothing crosses
// the network in clear. `mailarray tls ca` and `mailarray tls cert` make
// the files. LoadTLS reads them; Reload (Watch) reads them again when they
// change, so certificates rotate without a restart: new connections, both
// ways, use the new certificate and CA; open ones keep theirs.
type TLS struct {
	caFile, certFile, keyFile string
	server, client            *tls.Config

	mu    sync.RWMutex
	cert  *tls.Certificate
	pool  *x509.CertPool
	stamp string // the files' sizes and times when last read
}

// LoadTLS reads the array CA, and this node's certificate and key, for
// both halves of the protocol.
func LoadTLS(caFile, certFile, keyFile string) (*TLS, error) {
	t := &TLS{caFile: caFile, certFile: certFile, keyFile: keyFile}
	if err := t.load(); err != nil {
		return nil, err
	}
	t.server = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return t.current() },
		// Chain checked by verify (against the array CA, any name).
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: t.verify,
	}
	t.client = &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return t.current() },
		// Host names are not checked (peers are IPs); the chain is, by
		// verify.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: t.verify,
	}
	return t, nil
}

// load reads the three files and makes them current.
func (t *TLS) load() error {
	stamp := t.fileStamp()
	caPEM, err := pemfile.Read("peer-ca", t.caFile)
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("peer: peer-ca: %s holds no PEM certificate", t.caFile)
	}
	cert, err := pemfile.LoadKeyPair("peer-cert", t.certFile, "peer-cert-key", t.keyFile)
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	// Refuse a pair the CA does not sign (a half-finished rotation, a
	// certificate of another array): the peers would refuse it anyway,
	// and the old one keeps working meanwhile.
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("peer: peer-cert: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("peer: peer-cert %s is not signed by peer-ca %s: %w", t.certFile, t.caFile, err)
	}
	t.mu.Lock()
	t.cert, t.pool, t.stamp = &cert, pool, stamp
	t.mu.Unlock()
	return nil
}

func (t *TLS) current() (*tls.Certificate, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.cert, nil
}

// verify checks a peer's chain against the current CA.
func (t *TLS) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("peer: presented no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("peer: certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	t.mu.RLock()
	pool := t.pool
	t.mu.RUnlock()
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("peer: certificate not signed by the array's CA: %w", err)
	}
	return nil
}

func (t *TLS) fileStamp() string {
	var s string
	for _, f := range []string{t.caFile, t.certFile, t.keyFile} {
		if st, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", st.ModTime().UnixNano(), st.Size())
		}
	}
	return s
}

// Reload reads the files again if any changed since they were last read
// and reports whether it did. On an error the old certificate and CA stay
// in use.
func (t *TLS) Reload() (bool, error) {
	t.mu.RLock()
	same := t.stamp == t.fileStamp()
	t.mu.RUnlock()
	if same {
		return false, nil
	}
	if err := t.load(); err != nil {
		return false, err
	}
	return true, nil
}

// Watch calls Reload every period until ctx ends, logging what it did.
func (t *TLS) Watch(ctx context.Context, every time.Duration, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		switch ok, err := t.Reload(); {
		case err != nil:
			log.Error("peer: peer certificate reload failed; keeping the old one", "err", err)
		case ok:
			log.Info("peer: peer certificate reloaded", "cert", t.certFile, "ca", t.caFile)
		}
	}
}
