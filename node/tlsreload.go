package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"mailarray/node/pemfile"
)

// certReloader serves the current certificate and re-reads the PEM files
// when they change, so operators replace certificates without a restart.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu    sync.RWMutex
	cfg   *tls.Config
	stamp string
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) fileStamp() string {
	var s string
	for _, f := range []string{r.certFile, r.keyFile} {
		if st, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", st.ModTime().UnixNano(), st.Size())
		}
	}
	return s
}

func (r *certReloader) load() error {
	stamp := r.fileStamp()
	cert, err := pemfile.LoadKeyPair("tls-cert", r.certFile, "tls-key", r.keyFile)
	if err != nil {
		return err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	r.mu.Lock()
	r.cfg, r.stamp = cfg, stamp
	r.mu.Unlock()
	return nil
}

// Config returns the current TLS configuration.
func (r *certReloader) Config() *tls.Config {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cfg
}

// Watch reloads the certificate when its files change, until ctx ends. A
// bad new certificate is logged and the old one kept.
func (r *certReloader) Watch(ctx context.Context, every time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		r.mu.RLock()
		same := r.stamp == r.fileStamp()
		r.mu.RUnlock()
		if same {
			continue
		}
		if err := r.load(); err != nil {
			r.log.Error("node: tls certificate reload failed; keeping the old one", "err", err)
			continue
		}
		r.log.Info("node: tls certificate reloaded", "cert", r.certFile)
	}
}
