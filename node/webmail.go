package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailarray/node/catalog"
	"mailarray/node/directory"
	"mailarray/node/ingest"
	"mailarray/node/smtp"
	"mailarray/node/web"
)

// mountWeb adds webmail (GET /, /v1/mail/...) and the fax and voicemail
// gateway (POST /v1/ingest/...) to the --http mux.
func (n *Node) mountWeb(mux *http.ServeMux) {
	wcfg := web.DefaultConfig()
	wcfg.Logins = n.recordLogin
	ws, err := web.New(wcfg, (*webBackend)(n), n.log)
	if err != nil {
		panic("node: invariant broken: default webmail config invalid: " + err.Error())
	}
	ws.Register(mux)
	icfg := ingest.DefaultConfig()
	icfg.Hostname = n.hostname()
	icfg.MaxMessageBytes = n.conf().MaxMessageBytes
	icfg.Token = n.conf().IngestToken
	g, err := ingest.New(icfg, (*ingestBackend)(n), n.log)
	if err != nil {
		panic("node: invariant broken: ingest config from a validated Config invalid: " + err.Error())
	}
	g.Register(mux)
}

// webBackend is the node seen by webmail: the same directory, catalog and
// copies as POP3.
type webBackend Node

var _ web.Backend = (*webBackend)(nil)

func (b *webBackend) Authenticate(ctx context.Context, address, password string) (string, error) {
	mb, err := (*Node)(b).dir.Authenticate(address, password)
	if errors.Is(err, directory.ErrAuth) {
		return "", web.ErrAuth
	}
	if err != nil {
		return "", err
	}
	return mb.Address, nil
}

func (b *webBackend) List(ctx context.Context, mailbox string) ([]web.Entry, error) {
	es := (*Node)(b).cat.List(mailbox)
	out := make([]web.Entry, len(es))
	for i, e := range es {
		out[i] = web.Entry{ID: e.ID, Size: e.Size, Received: time.Unix(0, e.Received)}
	}
	return out, nil
}

// entry returns id's live entry if it belongs to mailbox.
func (b *webBackend) entry(mailbox, id string) (catalog.Entry, error) {
	e, ok := (*Node)(b).cat.Get(id)
	if !ok || !e.Live() || e.Mailbox != mailbox {
		return catalog.Entry{}, fmt.Errorf("%w: %s", web.ErrNotFound, id)
	}
	return e, nil
}

func (b *webBackend) Read(ctx context.Context, mailbox, id string) ([]byte, error) {
	n := (*Node)(b)
	e, err := b.entry(mailbox, id)
	if err != nil {
		return nil, err
	}
	data, err := n.readMessage(ctx, &e)
	if err != nil {
		return nil, err
	}
	n.env.ChargeCPU(len(data))
	return data, nil
}

// Delete takes the mailbox's lock for the moment of the deletion, as a
// POP3 session does for its own: a POP3 session in progress holds the
// mailbox exclusively (RFC 1939 section 8), so the web waits for it.
func (b *webBackend) Delete(ctx context.Context, mailbox, id string) error {
	n := (*Node)(b)
	if _, err := b.entry(mailbox, id); err != nil {
		return err
	}
	err := n.deleteExclusive(ctx, "web", mailbox, []string{id})
	if errors.Is(err, errLocked) {
		return web.ErrBusy
	}
	return err
}

// ingestBackend is the node seen by the fax and voicemail gateway: a
// document becomes an SMTP message handed to the very Deliver that the
// SMTP listener calls (pipeline, placement, W durable copies, notices).
type ingestBackend Node

var _ ingest.Backend = (*ingestBackend)(nil)

func (b *ingestBackend) NewID() string { return (*smtpBackend)(b).NewID() }

func (b *ingestBackend) CheckRecipient(ctx context.Context, addr string) error {
	return ingestError((*smtpBackend)(b).CheckRecipient(ctx, addr))
}

func (b *ingestBackend) Deliver(ctx context.Context, d *ingest.Delivery) error {
	m := &smtp.Message{ID: d.ID, From: d.From, To: []string{d.To}, Data: d.Data, Helo: "ingest", Remote: d.Remote}
	return ingestError((*smtpBackend)(b).Deliver(withLocalOrigin(ctx), m))
}

// ingestError maps the SMTP backend's errors to the gateway's, keeping
// the text: what SMTP answers 550 5.1.1 / 5.7.1, 451 and 5xx.
func ingestError(err error) error {
	var se *gosmtp.SMTPError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, smtp.ErrUnknownMailbox), errors.Is(err, smtp.ErrNotHosted):
		return fmt.Errorf("%w: %v", ingest.ErrUnknownRecipient, err)
	case errors.Is(err, smtp.ErrQuota):
		return fmt.Errorf("%w: %v", ingest.ErrQuota, err)
	case errors.Is(err, smtp.ErrUnavailable):
		return fmt.Errorf("%w: %v", ingest.ErrUnavailable, err)
	case errors.As(err, &se) && se.Code >= 500:
		return fmt.Errorf("%w: %s", ingest.ErrRejected, se.Message)
	}
	// Anything else is what SMTP answers 451: a filter that could not
	// check the message, a store that failed. Temporary.
	return fmt.Errorf("%w: %v", ingest.ErrUnavailable, err)
}
