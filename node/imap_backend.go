package node

// The node as its IMAP server (node/imap) sees it: imapBackend checks
// credentials against the directory, and imapMailbox answers for one
// mailbox from the catalog replica, the UID assigner (imap_uid.go), the
// read path (readMessage, readMessages) and the deletion path
// (deleteExclusive, deletesync.go).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/directory"
	imapd "mailarray/node/imap"
)

// imapBackend is the node seen by its IMAP server.
type imapBackend struct{ n *Node }

var (
	_ imapd.Backend = imapBackend{}
	_ imapd.Mailbox = (*imapMailbox)(nil)
)

func (n *Node) startIMAP() error {
	if n.conf().IMAPAddr == "" && n.conf().IMAPSAddr == "" {
		return nil
	}
	icfg := imapd.DefaultConfig()
	icfg.Log = n.log
	icfg.MaxSessions = n.conf().IMAPMaxSessions
	icfg.MaxSessionsPerAddr = n.conf().IMAPMaxSessionsPerIP
	icfg.LoginTimeout = n.conf().IMAPLoginTimeout
	icfg.RequireTLS = !n.conf().CleartextAuthAllowed()
	icfg.Logins = n.recordLogin
	if n.tls != nil {
		icfg.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return n.tls.Config(), nil }}
	}
	icfg.Latency = func(op string, d time.Duration) { n.metrics.imapLatency.WithLabelValues(op).Observe(d.Seconds()) }
	icfg.ChargeCPU = n.env.ChargeCPU
	svc := imapd.New(icfg, imapBackend{n})
	n.imap = svc
	n.cat.OnChange(svc.CatalogChanged)
	if n.conf().IMAPAddr != "" {
		l, err := n.listen("imap", n.conf().IMAPAddr)
		if err != nil {
			return err
		}
		n.serve("imap", func() error { return svc.Serve(l) })
	}
	if n.conf().IMAPSAddr != "" {
		l, err := n.listen("imaps", n.conf().IMAPSAddr)
		if err != nil {
			return err
		}
		tcfg := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return n.tls.Config(), nil }}
		n.serve("imaps", func() error { return svc.ServeTLS(l, tcfg) })
	}
	return nil
}

func (b imapBackend) Login(username, password string) (imapd.Mailbox, error) {
	mb, err := b.n.dir.Authenticate(username, password)
	if err != nil {
		if errors.Is(err, directory.ErrAuth) {
			return nil, imapd.ErrAuth
		}
		return nil, err
	}
	return &imapMailbox{n: b.n, name: mb.Address}, nil
}

// imapMailbox is one mailbox of the node's catalog. It keeps no state of
// its own, so any number of sessions and goroutines may use it.
type imapMailbox struct {
	n    *Node
	name string
}

func (m *imapMailbox) Name() string                        { return m.name }
func (m *imapMailbox) List() []catalog.Entry               { return m.n.cat.List(m.name) }
func (m *imapMailbox) Get(id string) (catalog.Entry, bool) { return m.n.cat.Get(id) }
func (m *imapMailbox) MaxUID() uint32                      { return m.n.cat.MaxUID(m.name) }
func (m *imapMailbox) Local(e *catalog.Entry) bool         { return e.HasLocation(m.n.conf().Name) }

func (m *imapMailbox) AssignUIDs(ctx context.Context) error { return m.n.assignUIDs(ctx, m.name) }

func (m *imapMailbox) Read(ctx context.Context, e *catalog.Entry) ([]byte, error) {
	return m.n.readMessage(ctx, e)
}

func (m *imapMailbox) ReadBatch(ctx context.Context, entries []catalog.Entry, buf []byte) ([]imapd.ReadResult, []byte) {
	got, buf := m.n.readMessagesInto(ctx, entries, buf)
	out := make([]imapd.ReadResult, len(got))
	for i, r := range got {
		out[i] = imapd.ReadResult{Data: r.data, Err: r.err}
	}
	return out, buf
}

// StoreFlags gives each changed entry a new version, applies them here and
// pushes them to every live node before it returns; a push that fails is
// left to anti-entropy.
func (m *imapMailbox) StoreFlags(ctx context.Context, changed []catalog.Entry) error {
	for i := range changed {
		changed[i].Version = m.n.cat.Now()
	}
	if _, err := m.n.cat.Apply(changed...); err != nil {
		return fmt.Errorf("node: store flags: %w", err)
	}
	if err := m.n.repl.BroadcastSync(ctx, changed); err != nil {
		m.n.log.Warn("imap: flags not yet on every node; anti-entropy will finish it", "err", err)
	}
	return nil
}

// Expunge deletes ids under the mailbox's exclusive lock (deleteExclusive),
// so a POP3 session in progress keeps its messages (ErrInUse).
func (m *imapMailbox) Expunge(ctx context.Context, ids []string) error {
	err := m.n.deleteExclusive(ctx, "imap", m.name, ids)
	switch {
	case errors.Is(err, errLocked):
		return markedError{err, imapd.ErrInUse}
	case errors.Is(err, errDeleteIncomplete):
		return markedError{err, imapd.ErrIncomplete}
	}
	return err
}

// markedError is err, also matching mark (errors.Is), with err's text: the
// IMAP server logs it as the node wrote it.
type markedError struct{ err, mark error }

func (e markedError) Error() string   { return e.err.Error() }
func (e markedError) Unwrap() []error { return []error{e.err, e.mark} }

// fetchResult is one message read by readMessages (readbatch.go).
type fetchResult struct {
	data []byte
	err  error
}
