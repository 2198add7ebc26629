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
	log *slog.Logger

	// load serializes loads (Watch's and SetFiles'): the files a load read
	// and the stamp it took stay together.
	load sync.Mutex

	mu                sync.RWMutex
	certFile, keyFile string // SetFiles changes them (a configuration reload)
	cfg               *tls.Config
	stamp             string
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{log: log}
	if err := r.loadFiles(certFile, keyFile); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) files() (cert, key string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.certFile, r.keyFile
}

func fileStamp(certFile, keyFile string) string {
	var s string
	for _, f := range []string{certFile, keyFile} {
		if st, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", st.ModTime().UnixNano(), st.Size())
		}
	}
	return s
}

// loadFiles loads a certificate and key and, when they are good, makes
// them the served pair; otherwise the old pair stays.
func (r *certReloader) loadFiles(certFile, keyFile string) error {
	r.load.Lock()
	defer r.load.Unlock()
	return r.loadLocked(certFile, keyFile)
}

func (r *certReloader) loadLocked(certFile, keyFile string) error {
	stamp := fileStamp(certFile, keyFile)
	cert, err := pemfile.LoadKeyPair("tls-cert", certFile, "tls-key", keyFile)
	if err != nil {
		return err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	r.mu.Lock()
	r.certFile, r.keyFile, r.cfg, r.stamp = certFile, keyFile, cfg, stamp
	r.mu.Unlock()
	return nil
}

// SetFiles serves the certificate of other files (tls-cert and tls-key
// changed by a configuration reload); an error keeps the old ones.
func (r *certReloader) SetFiles(certFile, keyFile string) error {
	return r.loadFiles(certFile, keyFile)
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
		r.refresh()
	}
}

// refresh reloads the current files when they changed.
func (r *certReloader) refresh() {
	r.load.Lock()
	defer r.load.Unlock()
	cert, key := r.files()
	r.mu.RLock()
	same := r.stamp == fileStamp(cert, key)
	r.mu.RUnlock()
	if same {
		return
	}
	if err := r.loadLocked(cert, key); err != nil {
		r.log.Error("node: tls certificate reload failed; keeping the old one", "err", err)
		return
	}
	r.log.Info("node: tls certificate reloaded", "cert", cert)
}
