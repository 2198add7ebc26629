package peer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLS is the peer API's mutual TLS: every node has a certificate
// signed by the array's CA and accepts only peers whose certificate chains
// to that CA. Peers are addressed by IP, so trust is the CA signature, not
// a host name: a host without a certificate from the array's CA can
// neither read nor write mail through the peer API, and nothing crosses
// the network in clear. `mailarray tls ca` and `mailarray tls cert` make
// the files. LoadTLS reads them.
type TLS struct {
	server, client *tls.Config
}

// LoadTLS reads the array CA, and this node's certificate and key, for
// both halves of the protocol.
func LoadTLS(caFile, certFile, keyFile string) (*TLS, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("peer: peer-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("peer: peer-ca: %s holds no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("peer: peer-cert: %w", err)
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
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
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return fmt.Errorf("peer: certificate not signed by the array's CA: %w", err)
		}
		return nil
	}
	return &TLS{
		server: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			// Chain checked by verify (against the array CA, any name).
			ClientAuth:            tls.RequireAnyClientCert,
			VerifyPeerCertificate: verify,
		},
		client: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			// Host names are not checked (peers are IPs); the chain is,
			// by verify.
			InsecureSkipVerify:    true,
			VerifyPeerCertificate: verify,
		},
	}, nil
}
