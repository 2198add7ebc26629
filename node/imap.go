package node

// The node's IMAP server: IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501)
// with emersion/go-imap/v2's imapserver, over the same catalog as POP3.
//
// Each mailbox has one folder, INBOX. A session's view of it is the
// mailbox's committed catalog entries that have a UID (imap_uid.go says how
// UIDs are assigned), in UID order; sequence numbers index that view. The
// view is refreshed from the catalog when the catalog changed for the
// mailbox (a hook on catalog changes bumps a per-mailbox generation and
// wakes idling sessions), after every command, and every imapPollEvery
// while IDLE waits for unassigned entries. New messages are announced with
// EXISTS, messages expunged elsewhere with EXPUNGE (only where RFC 9051
// section 7.5.1 allows it; until then they stay in the view as "gone"),
// flag changes with FETCH FLAGS.
//
// Flags live in the catalog entry (Entry.Flags): STORE writes a new
// version of the entry, applies it and pushes it to every live node, like
// a POP3 deletion, so flags replicate like any catalog change. A flag
// change is last-writer-wins per message: two clients changing flags of one
// message at the same instant on two nodes keep one of the two changes.
// \Deleted then EXPUNGE tombstones through deleteMessages, as POP3 DELE
// does. \Recent is not kept (IMAP4rev2 dropped it).
//
// Message bodies are read from any live copy (readMessage). FETCH reads the
// copies other nodes hold ahead of the response (imapFetchWindow at a
// time), so a mailbox spread over the array streams at the speed of local
// reads.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"

	"mailarray/node/catalog"
	"mailarray/node/directory"
	"mailarray/node/throttle"
)

// Limits and timings of the IMAP server.
const (
	// imapPollEvery is how often an idling session retries a UID
	// assignment that could not complete (catalog changes wake it at once).
	imapPollEvery = time.Second
	// imapAssignBackoffMax bounds the wait between failed assignments.
	imapAssignBackoffMax = 30 * time.Second
	// imapMaxFailedLogins: after that many refused logins a session
	// refuses every further login without checking it.
	imapMaxFailedLogins = 3
	// imapFetchWindow bounds the copies FETCH reads ahead from other nodes.
	imapFetchWindow = 64
	// imapMaxFlags and imapMaxFlagBytes bound one message's flags (the
	// catalog entry carries them to every node).
	imapMaxFlags     = 64
	imapMaxFlagBytes = 128
	// imapInbox is the one folder.
	imapInbox = "INBOX"
	// imapDelim is the hierarchy delimiter LIST reports.
	imapDelim = '/'
)

// imapSystemFlags are the flags SELECT announces; PERMANENTFLAGS adds \*
// (keywords may be created).
var imapSystemFlags = []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft}

// imapService is the node's IMAP server and the state its sessions share.
type imapService struct {
	n   *Node
	srv *imapserver.Server

	mu       sync.Mutex
	sessions map[*imapSession]struct{}
	closed   bool
	wg       sync.WaitGroup // one per session, done at its Close
	byes     sync.WaitGroup // bye's writers, ended by close at the latest

	// logins counts login attempts per remote address across connections,
	// and loginDelay is waited before answering a failure (imap_throttle.go);
	// loginMu guards both (tests tighten them).
	loginMu    sync.Mutex
	logins     *throttle.Throttle
	loginDelay time.Duration

	// Catalog change notification, per mailbox that a session has
	// selected: watching counts them so the hook costs one atomic load
	// when no session is selected.
	watching atomic.Int64
	wmu      sync.Mutex
	watched  map[string]*mailboxWatch
}

type mailboxWatch struct {
	gen  uint64
	subs map[chan struct{}]struct{}
}

func (n *Node) startIMAP() error {
	if n.cfg.IMAPAddr == "" && n.cfg.IMAPSAddr == "" {
		return nil
	}
	svc := &imapService{n: n, sessions: map[*imapSession]struct{}{}, watched: map[string]*mailboxWatch{},
		logins: newIMAPLoginThrottle(imapThrottleMaxFailures), loginDelay: imapFailedLoginDelay}
	opts := &imapserver.Options{
		NewSession: svc.newSession,
		Caps:       imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		Logger:     slog.NewLogLogger(n.log.With("listener", "imap").Handler(), slog.LevelDebug),
		// Like POP3 (USER/PASS before STLS is allowed there too): plaintext
		// logins are accepted, and STARTTLS is offered when TLS is set up.
		InsecureAuth: true,
	}
	if n.tls != nil {
		opts.TLSConfig = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return n.tls.Config(), nil }}
	}
	svc.srv = imapserver.New(opts)
	n.imap = svc
	n.cat.OnChange(svc.onCatalogChange)
	if n.cfg.IMAPAddr != "" {
		l, err := n.listen("imap", n.cfg.IMAPAddr)
		if err != nil {
			return err
		}
		n.serve("imap", func() error { return svc.srv.Serve(l) })
	}
	if n.cfg.IMAPSAddr != "" {
		l, err := n.listen("imaps", n.cfg.IMAPSAddr)
		if err != nil {
			return err
		}
		tl := tls.NewListener(l, &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return n.tls.Config(), nil }})
		n.serve("imaps", func() error { return svc.srv.Serve(tl) })
	}
	return nil
}

// sessionCount is the number of open IMAP sessions.
func (s *imapService) sessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// bye tells every session the server is going away (RFC 9051 section
// 7.1.5), until ctx is done, and refuses new sessions from now on (the
// listeners stay open until close, which closes the connections and waits
// for the writers bye started).
func (s *imapService) bye(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	conns := make([]*imapserver.Conn, 0, len(s.sessions))
	for ss := range s.sessions {
		conns = append(conns, ss.conn)
	}
	s.mu.Unlock()
	// Buffered: a writer that finishes after ctx is done never blocks.
	done := make(chan struct{}, len(conns))
	for _, c := range conns {
		s.byes.Add(1)
		go func() {
			defer s.byes.Done()
			c.Bye("server shutting down")
			done <- struct{}{}
		}()
	}
	for range conns {
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}

// close stops the listeners, closes every connection and waits for the
// sessions, and for bye's writers (a closed connection ends a blocked
// write), to end.
func (s *imapService) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.srv.Close()
	s.wg.Wait()
	s.byes.Wait()
}

func (s *imapService) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "server shutting down"}
	}
	if len(s.sessions) >= s.n.cfg.IMAPMaxSessions {
		// RFC 9051 section 7.1.5: BYE at greeting when refusing service.
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Code: imap.ResponseCodeUnavailable, Text: "too many sessions, try again later"}
	}
	ctx, cancel := context.WithCancel(s.n.ctx)
	ss := &imapSession{svc: s, n: s.n, conn: c, ctx: ctx, cancel: cancel}
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	return ss, nil, nil
}

// onCatalogChange bumps the generation of every watched mailbox that
// changed and wakes its idling sessions. Called after every durable
// catalog change, from the goroutine that applied it: it must not block.
func (s *imapService) onCatalogChange(changed []catalog.Entry) {
	if s.watching.Load() == 0 {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var last *mailboxWatch
	for i := range changed {
		w := s.watched[changed[i].Mailbox]
		if w == nil || w == last {
			continue
		}
		last = w
		w.gen++
		for ch := range w.subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// watch subscribes to mailbox's changes: ch receives (coalesced) wake-ups.
func (s *imapService) watch(mailbox string) (ch chan struct{}) {
	ch = make(chan struct{}, 1)
	s.wmu.Lock()
	w := s.watched[mailbox]
	if w == nil {
		w = &mailboxWatch{subs: map[chan struct{}]struct{}{}}
		s.watched[mailbox] = w
		s.watching.Add(1)
	}
	w.subs[ch] = struct{}{}
	s.wmu.Unlock()
	return ch
}

func (s *imapService) unwatch(mailbox string, ch chan struct{}) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	w := s.watched[mailbox]
	if w == nil {
		return
	}
	delete(w.subs, ch)
	if len(w.subs) == 0 {
		delete(s.watched, mailbox)
		s.watching.Add(-1)
	}
}

// generation is mailbox's change counter (0 when nobody watches it).
func (s *imapService) generation(mailbox string) uint64 {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if w := s.watched[mailbox]; w != nil {
		return w.gen
	}
	return 0
}

// imapSession is one connection. imapserver calls its methods from the
// connection's goroutine, one at a time, except Idle, which runs in a
// goroutine of its own while that one reads the client's DONE. imapserver
// waits for Idle to return only when the client sends DONE: a client that
// ends IDLE with another line, or drops the connection, gets its next
// command (or the Poll after it) run while Idle may still be refreshing the
// view. So Idle holds idleMu for as long as it runs, and every method that
// touches the selected view first waits for it (idleDone); nothing else
// needs a lock.
type imapSession struct {
	svc    *imapService
	n      *Node
	conn   *imapserver.Conn
	ctx    context.Context // canceled at Close or when the node stops
	cancel context.CancelFunc

	mailbox string // the logged-in user's address
	failed  int    // refused logins
	sel     *imapView
	closed  bool
	// idleMu is held by Idle for as long as it runs (see above).
	idleMu sync.Mutex
}

var (
	_ imapserver.SessionIMAP4rev2 = (*imapSession)(nil)
	_ imapserver.SessionSASL      = (*imapSession)(nil)
)

// imapView is the selected mailbox as the client knows it.
type imapView struct {
	mailbox  string
	readOnly bool
	msgs     []imapMsg // by sequence number - 1; UIDs strictly increasing
	gen      uint64    // the mailbox's generation at the last refresh
	pending  bool      // entries without a UID were seen at the last refresh
	notify   chan struct{}
	// nextAssign and backoff pace assignment retries after a failure.
	nextAssign time.Time
	backoff    time.Duration
	searchRes  imap.UIDSet // SEARCHRES ($), RFC 5182
}

type imapMsg struct {
	e    catalog.Entry // as of the last refresh (slices shared: read only)
	gone bool          // deleted elsewhere; its EXPUNGE is not sent yet
}

// idleDone waits until no Idle runs. Idle only starts from the
// connection's goroutine, which is the caller, so none starts meanwhile;
// one still running has seen its stop channel closed and returns when the
// refresh it may be in is done.
func (s *imapSession) idleDone() {
	s.idleMu.Lock()
	s.idleMu.Unlock() // nothing to do inside: a barrier
}

func (s *imapSession) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.cancel() // ends a running Idle
	s.idleDone()
	s.unselect()
	s.svc.mu.Lock()
	delete(s.svc.sessions, s)
	s.svc.mu.Unlock()
	s.svc.wg.Done()
	return nil
}

// --- not authenticated ---

func (s *imapSession) Login(username, password string) error {
	if s.failed >= imapMaxFailedLogins {
		// A client guessing passwords must reconnect (RFC 9051 section
		// 11.1 leaves the policy to the server).
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "too many failed logins on this connection"}
	}
	defer func(t0 time.Time) { s.n.metrics.imapLatency.WithLabelValues("login").Observe(time.Since(t0).Seconds()) }(time.Now())
	key := throttle.AddrKey(s.conn.NetConn().RemoteAddr())
	logins, delay := s.svc.loginLimits()
	if ok, _ := logins.Begin(time.Now(), key); !ok {
		// As POP3 answers [SYS/TEMP]: the address, not the password, is
		// refused, for a while (RFC 5530 UNAVAILABLE: try again later).
		s.n.log.Warn("imap: login refused: too many failed logins from this address", "remote", key)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "too many failed logins from your address, try again later"}
	}
	mb, err := s.n.dir.Authenticate(username, password)
	if err != nil {
		if !errors.Is(err, directory.ErrAuth) {
			logins.Succeeded(key) // not a guess: the password was not checked
			s.n.log.Error("imap: login", "err", err)
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "authentication unavailable, try again later"}
		}
		s.failed++
		// A fixed delay slows guessing; closing the session ends it.
		select {
		case <-time.After(delay):
		case <-s.ctx.Done():
		}
		return imapserver.ErrAuthFailed // RFC 5530 AUTHENTICATIONFAILED
	}
	logins.Succeeded(key)
	s.mailbox = mb.Address
	return nil
}

func (s *imapSession) AuthenticateMechanisms() []string { return []string{"PLAIN"} }

// Authenticate supports SASL PLAIN (RFC 4616) with an empty or equal
// authorization identity.
func (s *imapSession) Authenticate(mech string) (sasl.Server, error) {
	if !strings.EqualFold(mech, "PLAIN") {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed, Text: "SASL authorization identity not supported"}
		}
		return s.Login(username, password)
	}), nil
}

// --- authenticated ---

// isInbox reports whether name is the one folder (INBOX is case-insensitive,
// RFC 9051 section 5.1).
func isInbox(name string) bool { return strings.EqualFold(name, imapInbox) }

func errNoMailbox(name string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: fmt.Sprintf("no mailbox %q: only INBOX exists", name)}
}

func errOnlyInbox(what string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: what + " is not supported: only INBOX exists on this server"}
}

func (s *imapSession) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	defer func(t0 time.Time) {
		s.n.metrics.imapLatency.WithLabelValues("select").Observe(time.Since(t0).Seconds())
	}(time.Now())
	if !isInbox(name) {
		return nil, errNoMailbox(name)
	}
	s.idleDone()
	s.unselect()
	v := &imapView{mailbox: s.mailbox, readOnly: options.ReadOnly}
	v.notify = s.svc.watch(v.mailbox)
	s.sel = v
	v.gen = s.svc.generation(v.mailbox)
	cur := s.snapshot(v, true)
	v.msgs = make([]imapMsg, len(cur))
	for i := range cur {
		v.msgs[i] = imapMsg{e: cur[i]}
	}
	data := &imap.SelectData{
		Flags:          imapSystemFlags,
		PermanentFlags: append(slices.Clone(imapSystemFlags), imap.FlagWildcard),
		NumMessages:    uint32(len(v.msgs)),
		UIDNext:        imap.UID(s.n.cat.MaxUID(v.mailbox) + 1),
		UIDValidity:    uidValidity(v.mailbox),
	}
	if len(v.msgs) > 0 {
		data.UIDNext = max(data.UIDNext, imap.UID(v.msgs[len(v.msgs)-1].e.UID+1))
	}
	for i := range v.msgs {
		if !hasFlag(v.msgs[i].e.Flags, string(imap.FlagSeen)) {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data, nil
}

func (s *imapSession) Unselect() error {
	s.idleDone()
	s.unselect()
	return nil
}

func (s *imapSession) unselect() {
	if s.sel != nil {
		s.svc.unwatch(s.sel.mailbox, s.sel.notify)
		s.sel = nil
	}
}

func (s *imapSession) Create(mailbox string, options *imap.CreateOptions) error {
	if isInbox(mailbox) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "INBOX exists"}
	}
	return errOnlyInbox("CREATE")
}

func (s *imapSession) Delete(mailbox string) error { return errOnlyInbox("DELETE") }

func (s *imapSession) Rename(mailbox, newName string, options *imap.RenameOptions) error {
	return errOnlyInbox("RENAME")
}

func (s *imapSession) Subscribe(mailbox string) error {
	if isInbox(mailbox) {
		return nil
	}
	return errNoMailbox(mailbox)
}

func (s *imapSession) Unsubscribe(mailbox string) error {
	if isInbox(mailbox) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "INBOX stays subscribed"}
	}
	return errNoMailbox(mailbox)
}

func (s *imapSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter (RFC 9051 section 6.3.9).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: imapDelim})
	}
	if options.SelectSpecialUse {
		return nil
	}
	for _, p := range patterns {
		if imapserver.MatchList(imapInbox, imapDelim, ref, p) {
			data := &imap.ListData{Mailbox: imapInbox, Delim: imapDelim, Attrs: []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}}
			if options.SelectSubscribed || options.ReturnSubscribed {
				data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
			}
			if options.ReturnStatus != nil {
				st, err := s.Status(imapInbox, options.ReturnStatus)
				if err != nil {
					return err
				}
				data.Status = st
			}
			return w.WriteList(data)
		}
	}
	return nil
}

func (s *imapSession) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	if !isInbox(mailbox) {
		return nil, errNoMailbox(mailbox)
	}
	v := &imapView{mailbox: s.mailbox}
	cur := s.snapshot(v, true)
	data := &imap.StatusData{Mailbox: imapInbox, UIDValidity: uidValidity(s.mailbox), UIDNext: imap.UID(s.n.cat.MaxUID(s.mailbox) + 1)}
	var unseen, deleted uint32
	var size int64
	for i := range cur {
		if !hasFlag(cur[i].Flags, string(imap.FlagSeen)) {
			unseen++
		}
		if hasFlag(cur[i].Flags, string(imap.FlagDeleted)) {
			deleted++
		}
		size += cur[i].Size
	}
	num, recent := uint32(len(cur)), uint32(0)
	if options.NumMessages {
		data.NumMessages = &num
	}
	if options.NumUnseen {
		data.NumUnseen = &unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &deleted
	}
	if options.Size {
		data.Size = &size
	}
	if options.NumRecent {
		data.NumRecent = &recent
	}
	return data, nil
}

func (s *imapSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if !isInbox(mailbox) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: fmt.Sprintf("no mailbox %q: only INBOX exists", mailbox)}
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "APPEND is not supported: mail arrives by SMTP"}
}

func (s *imapSession) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: imapDelim}}}, nil
}

// --- updates ---

func (s *imapSession) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	s.idleDone()
	if s.sel == nil {
		return nil
	}
	return s.refresh(w, allowExpunge, false)
}

func (s *imapSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	// go-imap runs Idle on a goroutine of its own, which may first run
	// after the connection closed: Close cancels the context before its
	// barrier (idleDone) and only then unselects, so an Idle that gets the
	// lock after the barrier must not look at the selection.
	if s.ctx.Err() != nil {
		return nil
	}
	if s.sel == nil {
		select {
		case <-stop:
		case <-s.ctx.Done():
		}
		return nil
	}
	v := s.sel
	tick := time.NewTicker(imapPollEvery)
	defer tick.Stop()
	if err := s.refresh(w, true, false); err != nil {
		return err
	}
	for {
		select {
		case <-stop:
			return nil
		case <-s.ctx.Done():
			return nil
		case <-v.notify:
		case <-tick.C:
			if !v.pending {
				continue
			}
		}
		if err := s.refresh(w, true, false); err != nil {
			return err
		}
	}
}

// snapshot returns the mailbox's committed entries that have a UID, in UID
// order, first assigning UIDs to those without one when assign is set and
// the retry pacing allows. A UID carried by two entries (see imap_uid.go)
// shows only the first in (Received, ID) order until the duplicate is
// renumbered.
func (s *imapSession) snapshot(v *imapView, assign bool) []catalog.Entry {
	list := s.n.cat.List(v.mailbox)
	pending := needsUIDs(list)
	if pending && assign && !time.Now().Before(v.nextAssign) {
		if err := s.n.assignUIDs(s.ctx, v.mailbox); err != nil {
			v.backoff = min(max(2*v.backoff, imapPollEvery), imapAssignBackoffMax)
			v.nextAssign = time.Now().Add(v.backoff)
			s.n.log.Warn("imap: UID assignment failed; new messages stay hidden until it succeeds", "mailbox", v.mailbox, "retry_in", v.backoff, "err", err)
		} else {
			v.backoff, v.nextAssign = 0, time.Time{}
		}
		list = s.n.cat.List(v.mailbox)
		pending = needsUIDs(list)
	}
	v.pending = pending
	out := list[:0]
	for _, e := range list {
		if e.UID != 0 {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b catalog.Entry) int {
		if a.UID != b.UID {
			return int(int64(a.UID) - int64(b.UID))
		}
		return byArrival(a, b)
	})
	return slices.CompactFunc(out, func(a, b catalog.Entry) bool { return a.UID == b.UID })
}

// refresh brings the view up to date with the catalog and tells the client
// what changed: EXPUNGE (when allowed), EXISTS, FETCH FLAGS.
func (s *imapSession) refresh(w *imapserver.UpdateWriter, allowExpunge, force bool) error {
	v := s.sel
	gen := s.svc.generation(v.mailbox)
	hasGone := false
	for i := range v.msgs {
		if v.msgs[i].gone {
			hasGone = true
			break
		}
	}
	if !force && gen == v.gen && !v.pending && !(hasGone && allowExpunge) {
		return nil
	}
	v.gen = gen
	cur := s.snapshot(v, true)
	// Walk the view and the catalog, both in UID order.
	var flagsChanged []imap.UID
	before := len(v.msgs)
	j := 0
	var top uint32
	for i := range v.msgs {
		m := &v.msgs[i]
		top = m.e.UID
		if m.gone {
			continue
		}
		for j < len(cur) && cur[j].UID < m.e.UID {
			// A UID below the view's highest that the view does not have:
			// an assignment that reached this node late (see imap_uid.go).
			// Sequence numbers cannot make room for it: it shows at the
			// next SELECT.
			j++
		}
		if j < len(cur) && cur[j].UID == m.e.UID && cur[j].ID == m.e.ID {
			if !slices.Equal(cur[j].Flags, m.e.Flags) {
				flagsChanged = append(flagsChanged, imap.UID(m.e.UID))
			}
			m.e = cur[j]
			j++
			continue
		}
		m.gone = true
	}
	for ; j < len(cur); j++ {
		if cur[j].UID > top {
			v.msgs = append(v.msgs, imapMsg{e: cur[j]})
			top = cur[j].UID
		}
	}
	added := len(v.msgs)
	if allowExpunge {
		// Highest sequence number first: each EXPUNGE renumbers only the
		// messages above it (RFC 9051 section 7.5.1).
		for i := len(v.msgs) - 1; i >= 0; i-- {
			if v.msgs[i].gone {
				if err := w.WriteExpunge(uint32(i + 1)); err != nil {
					return err
				}
				v.msgs = slices.Delete(v.msgs, i, i+1)
			}
		}
	}
	if added > before {
		if err := w.WriteNumMessages(uint32(len(v.msgs))); err != nil {
			return err
		}
	}
	for _, uid := range flagsChanged {
		if i, ok := v.indexOf(uid); ok {
			if err := w.WriteMessageFlags(uint32(i+1), uid, imapFlags(v.msgs[i].e.Flags)); err != nil {
				return err
			}
		}
	}
	return nil
}

// indexOf finds uid in the view.
func (v *imapView) indexOf(uid imap.UID) (int, bool) {
	return slices.BinarySearchFunc(v.msgs, uint32(uid), func(m imapMsg, u uint32) int {
		return int(int64(m.e.UID) - int64(u))
	})
}

// resolve returns the view indexes numSet names, in order. "*" is the
// last message (or the highest UID); n:* with n above it still names it
// (RFC 9051 section 6.4.8).
func (v *imapView) resolve(numSet imap.NumSet) []int {
	if imap.IsSearchRes(numSet) {
		numSet = v.searchRes
	}
	var out []int
	switch set := numSet.(type) {
	case imap.SeqSet:
		last := uint32(len(v.msgs))
		for _, r := range set {
			lo, hi := staticRange(r.Start, r.Stop, last)
			for seq := max(lo, 1); seq <= min(hi, last); seq++ {
				out = append(out, int(seq-1))
			}
		}
	case imap.UIDSet:
		var last uint32
		if len(v.msgs) > 0 {
			last = v.msgs[len(v.msgs)-1].e.UID
		}
		for _, r := range set {
			lo, hi := staticRange(uint32(r.Start), uint32(r.Stop), last)
			from, _ := v.indexOf(imap.UID(lo))
			for i := from; i < len(v.msgs) && v.msgs[i].e.UID <= hi; i++ {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// names reports whether numSet names message i of the view, resolving "*"
// against the view as resolve does. imap.NumSet's Contains does not: with
// it "*" alone names nothing and n:* with n above the highest UID misses
// the last message.
func (v *imapView) names(numSet imap.NumSet, i int) bool {
	if imap.IsSearchRes(numSet) {
		numSet = v.searchRes
	}
	switch set := numSet.(type) {
	case imap.SeqSet:
		last, seq := uint32(len(v.msgs)), uint32(i+1)
		for _, r := range set {
			if lo, hi := staticRange(r.Start, r.Stop, last); lo <= seq && seq <= hi {
				return true
			}
		}
	case imap.UIDSet:
		last, uid := v.msgs[len(v.msgs)-1].e.UID, v.msgs[i].e.UID
		for _, r := range set {
			if lo, hi := staticRange(uint32(r.Start), uint32(r.Stop), last); lo <= uid && uid <= hi {
				return true
			}
		}
	}
	return false
}

func staticRange(start, stop, last uint32) (uint32, uint32) {
	if start == 0 {
		start = last
	}
	if stop == 0 {
		stop = last
	}
	if start > stop {
		start, stop = stop, start
	}
	return start, stop
}

// --- selected ---

func (s *imapSession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	s.idleDone()
	v := s.sel
	if v.readOnly {
		return nil // CLOSE after EXAMINE expunges nothing (RFC 9051 section 6.4.1)
	}
	defer func(t0 time.Time) {
		s.n.metrics.imapLatency.WithLabelValues("expunge").Observe(time.Since(t0).Seconds())
	}(time.Now())
	var ids []string
	var idx []int
	for i := range v.msgs {
		m := &v.msgs[i]
		if m.gone || !hasFlag(m.e.Flags, string(imap.FlagDeleted)) || (uids != nil && !v.names(*uids, i)) {
			continue
		}
		ids = append(ids, m.e.ID)
		idx = append(idx, i)
	}
	if len(ids) == 0 {
		return nil
	}
	if err := s.n.deleteExclusive(s.ctx, "imap", v.mailbox, ids); errors.Is(err, errLocked) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeInUse, Text: "a POP3 session holds the mailbox; expunge later"}
	} else if errors.Is(err, errDeleteIncomplete) {
		// Applied here and on its way to the rest; the client's retry
		// gets OK once every live node has the tombstones.
		s.n.log.Warn("imap: expunge", "mailbox", v.mailbox, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "expunge not yet confirmed by every node, try again"}
	} else if err != nil {
		s.n.log.Error("imap: expunge", "mailbox", v.mailbox, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "expunge failed, try again"}
	}
	for k := len(idx) - 1; k >= 0; k-- {
		if err := w.WriteExpunge(uint32(idx[k] + 1)); err != nil {
			return err
		}
		v.msgs = slices.Delete(v.msgs, idx[k], idx[k]+1)
	}
	return nil
}

func (s *imapSession) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	s.idleDone()
	v := s.sel
	data := &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for i := range v.msgs {
		m := &v.msgs[i]
		if m.gone {
			continue
		}
		ok, err := s.matches(v, i, criteria)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		uids.AddNum(imap.UID(m.e.UID))
		num := uint32(i + 1)
		if kind == imapserver.NumKindUID {
			num = m.e.UID
		} else {
			seqs.AddNum(num)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	if options.ReturnSave {
		v.searchRes = uids
	}
	return data, nil
}

// matches evaluates a SEARCH key on message i (RFC 9051 section 6.4.4).
// HEADER, BODY and TEXT are case-insensitive substring matches on the raw
// header and body (no MIME decoding).
func (s *imapSession) matches(v *imapView, i int, c *imap.SearchCriteria) (bool, error) {
	m := &v.msgs[i]
	for _, set := range c.SeqNum {
		if !v.names(set, i) {
			return false, nil
		}
	}
	for _, set := range c.UID {
		if !v.names(set, i) {
			return false, nil
		}
	}
	if !matchDay(time.Unix(0, m.e.Received), c.Since, c.Before) {
		return false, nil
	}
	for _, f := range c.Flag {
		if !hasFlag(m.e.Flags, string(f)) {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if hasFlag(m.e.Flags, string(f)) {
			return false, nil
		}
	}
	if (c.Larger != 0 && m.e.Size <= c.Larger) || (c.Smaller != 0 && m.e.Size >= c.Smaller) {
		return false, nil
	}
	if len(c.Header) > 0 || len(c.Body) > 0 || len(c.Text) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		data, err := s.read(m.e.ID)
		if err != nil {
			return false, err
		}
		head, body := data, []byte(nil)
		if k := bytes.Index(data, []byte("\r\n\r\n")); k >= 0 {
			head, body = data[:k+2], data[k+4:]
		}
		hdr, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(slices.Clip(head), '\r', '\n'))))
		for _, h := range c.Header {
			vals := hdr.Values(h.Key)
			found := len(vals) > 0 && h.Value == ""
			for _, val := range vals {
				found = found || containsFold(val, h.Value)
			}
			if !found {
				return false, nil
			}
		}
		for _, t := range c.Body {
			if !containsFold(string(body), t) {
				return false, nil
			}
		}
		for _, t := range c.Text {
			if !containsFold(string(data), t) {
				return false, nil
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			sent, err := parseMailDate(hdr.Get("Date"))
			if err != nil || !matchDay(sent, c.SentSince, c.SentBefore) {
				return false, nil
			}
		}
	}
	for k := range c.Not {
		if ok, err := s.matches(v, i, &c.Not[k]); err != nil || ok {
			return false, err
		}
	}
	for _, or := range c.Or {
		a, err := s.matches(v, i, &or[0])
		if err != nil {
			return false, err
		}
		b, err := s.matches(v, i, &or[1])
		if err != nil {
			return false, err
		}
		if !a && !b {
			return false, nil
		}
	}
	return true, nil
}

// parseMailDate parses a Date header (RFC 5322 section 3.3).
func parseMailDate(v string) (time.Time, error) { return mail.ParseDate(v) }

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// matchDay compares dates without time or zone (RFC 9051 section 6.4.4).
func matchDay(t, since, before time.Time) bool {
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	return before.IsZero() || t.Before(before)
}

// read returns a message's bytes from any live copy, as the catalog has it
// now.
func (s *imapSession) read(id string) ([]byte, error) {
	e, ok := s.n.cat.Get(id)
	if !ok || !e.Live() {
		return nil, errExpunged
	}
	return s.n.readMessage(s.ctx, &e)
}

var errExpunged = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "some of the messages were expunged"}

func (s *imapSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	defer func(t0 time.Time) { s.n.metrics.imapLatency.WithLabelValues("fetch").Observe(time.Since(t0).Seconds()) }(time.Now())
	s.idleDone()
	v := s.sel
	idx := v.resolve(numSet)
	needBody := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	markSeen := false
	if !v.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	var pf *prefetcher
	if needBody {
		ids := make([]string, 0, len(idx))
		for _, i := range idx {
			if !v.msgs[i].gone {
				ids = append(ids, v.msgs[i].e.ID)
			}
		}
		pf = s.n.prefetch(s.ctx, ids, imapFetchWindow)
		defer pf.stop()
	}
	var missing bool
	var seen []string
	for _, i := range idx {
		m := &v.msgs[i]
		if m.gone {
			if needBody {
				missing = true // RFC 2180 section 4.1.3: NO for expunged messages
				continue
			}
		}
		var data []byte
		if needBody {
			var err error
			if data, err = pf.next(); err != nil {
				s.n.log.Warn("imap: fetch", "id", m.e.ID, "err", err)
				missing = true
				continue
			}
			s.n.env.ChargeCPU(len(data))
		}
		flags := m.e.Flags
		newlySeen := markSeen && !m.gone && !hasFlag(flags, string(imap.FlagSeen))
		if newlySeen {
			flags = addFlags(flags, string(imap.FlagSeen))
			seen = append(seen, m.e.ID)
		}
		rw := w.CreateMessage(uint32(i + 1))
		rw.WriteUID(imap.UID(m.e.UID))
		if options.Flags || newlySeen {
			rw.WriteFlags(imapFlags(flags))
		}
		if options.InternalDate {
			rw.WriteInternalDate(time.Unix(0, m.e.Received))
		}
		if options.RFC822Size {
			rw.WriteRFC822Size(m.e.Size)
		}
		if options.Envelope {
			hdr, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
			rw.WriteEnvelope(imapserver.ExtractEnvelope(hdr))
		}
		if options.BodyStructure != nil {
			rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(data)))
		}
		for _, bs := range options.BodySection {
			part := data
			if bs.Specifier != imap.PartSpecifierNone || len(bs.Part) > 0 || bs.Partial != nil {
				part = imapserver.ExtractBodySection(bytes.NewReader(data), bs)
			}
			if err := writeLiteral(rw.WriteBodySection(bs, int64(len(part))), part); err != nil {
				return err
			}
		}
		for _, bs := range options.BinarySection {
			part := imapserver.ExtractBinarySection(bytes.NewReader(data), bs)
			if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(part))), part); err != nil {
				return err
			}
		}
		for _, bs := range options.BinarySectionSize {
			rw.WriteBinarySectionSize(bs, imapserver.ExtractBinarySectionSize(bytes.NewReader(data), bs))
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	if len(seen) > 0 {
		// One catalog write and one push for the whole FETCH.
		updated, err := s.setFlags(seen, func(f []string) []string { return addFlags(f, string(imap.FlagSeen)) })
		if err != nil {
			s.n.log.Warn("imap: setting \\Seen", "err", err)
		}
		for _, i := range idx {
			if f, ok := updated[v.msgs[i].e.ID]; ok {
				v.msgs[i].e.Flags = f
			}
		}
	}
	if missing {
		return errExpunged
	}
	return nil
}

func writeLiteral(wc interface {
	Write([]byte) (int, error)
	Close() error
}, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *imapSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	defer func(t0 time.Time) { s.n.metrics.imapLatency.WithLabelValues("store").Observe(time.Since(t0).Seconds()) }(time.Now())
	s.idleDone()
	v := s.sel
	if v.readOnly {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "READ-ONLY", Text: "mailbox is read-only (EXAMINE)"}
	}
	var given []string
	for _, f := range flags.Flags {
		f := canonicalFlag(string(f))
		if f == `\Recent` || f == string(imap.FlagWildcard) || len(f) > imapMaxFlagBytes {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: fmt.Sprintf("flag %q cannot be stored", f)}
		}
		given = append(given, f)
	}
	var op func([]string) []string
	switch flags.Op {
	case imap.StoreFlagsSet:
		op = func([]string) []string { return addFlags(nil, given...) }
	case imap.StoreFlagsAdd:
		op = func(f []string) []string { return addFlags(f, given...) }
	case imap.StoreFlagsDel:
		op = func(f []string) []string { return removeFlags(f, given...) }
	}
	idx := v.resolve(numSet)
	ids := make([]string, 0, len(idx))
	for _, i := range idx {
		if !v.msgs[i].gone {
			ids = append(ids, v.msgs[i].e.ID)
		}
	}
	updated, err := s.setFlags(ids, op)
	if err != nil {
		if e := (*imap.Error)(nil); errors.As(err, &e) {
			return err
		}
		s.n.log.Error("imap: store", "mailbox", v.mailbox, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "flags not stored, try again"}
	}
	for _, i := range idx {
		m := &v.msgs[i]
		if f, ok := updated[m.e.ID]; ok {
			m.e.Flags = f
		}
		if flags.Silent || m.gone {
			continue
		}
		rw := w.CreateMessage(uint32(i + 1))
		rw.WriteUID(imap.UID(m.e.UID))
		rw.WriteFlags(imapFlags(m.e.Flags))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// setFlags rewrites the flags of the messages ids with op: a new version
// of each entry whose flags change, applied here and pushed to every live
// node before it returns (like deleteMessages). It returns the new flags
// by id.
func (s *imapSession) setFlags(ids []string, op func([]string) []string) (map[string][]string, error) {
	var changed []catalog.Entry
	out := make(map[string][]string, len(ids))
	for _, id := range ids {
		e, ok := s.n.cat.Get(id)
		if !ok || !e.Live() {
			continue
		}
		f := op(slices.Clone(e.Flags))
		if len(f) > imapMaxFlags {
			return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: fmt.Sprintf("at most %d flags per message", imapMaxFlags)}
		}
		out[id] = f
		if slices.Equal(f, e.Flags) {
			continue
		}
		e.Flags = f
		e.Version = s.n.cat.Now()
		changed = append(changed, e)
	}
	if len(changed) == 0 {
		return out, nil
	}
	if _, err := s.n.cat.Apply(changed...); err != nil {
		return nil, fmt.Errorf("node: store flags: %w", err)
	}
	if err := s.n.repl.broadcastSync(s.ctx, changed); err != nil {
		s.n.log.Warn("imap: flags not yet on every node; anti-entropy will finish it", "err", err)
	}
	return out, nil
}

func (s *imapSession) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	return nil, s.errOtherMailbox(dest)
}

func (s *imapSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.errOtherMailbox(dest)
}

func (s *imapSession) errOtherMailbox(dest string) error {
	if isInbox(dest) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "source and destination are the same mailbox"}
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: fmt.Sprintf("no mailbox %q: only INBOX exists", dest)}
}

// --- flags ---

// canonicalFlag spells system flags the standard way (flags are
// case-insensitive, RFC 9051 section 2.3.2); keywords are kept as given.
func canonicalFlag(f string) string {
	for _, sf := range imapSystemFlags {
		if strings.EqualFold(f, string(sf)) {
			return string(sf)
		}
	}
	if strings.EqualFold(f, `\Recent`) {
		return `\Recent`
	}
	return f
}

func hasFlag(flags []string, f string) bool {
	return slices.ContainsFunc(flags, func(x string) bool { return strings.EqualFold(x, f) })
}

// addFlags returns flags with more added, sorted, without duplicates.
func addFlags(flags []string, more ...string) []string {
	out := slices.Clone(flags)
	for _, f := range more {
		if !hasFlag(out, f) {
			out = append(out, canonicalFlag(f))
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

func removeFlags(flags []string, less ...string) []string {
	out := slices.DeleteFunc(slices.Clone(flags), func(x string) bool {
		return slices.ContainsFunc(less, func(f string) bool { return strings.EqualFold(x, f) })
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}

// --- reading ahead ---

// prefetcher reads the messages a FETCH will send, in order: copies this
// node holds when they are needed, copies only other nodes hold ahead of
// need, in batches (readMessages) of up to imapFetchBatch, at most window
// messages ahead of the writer, so the response is paced neither by one
// peer round trip per message nor by the peers' request overhead.
type prefetcher struct {
	n      *Node
	ctx    context.Context
	cancel context.CancelFunc
	ids    []string
	slots  []chan fetchResult // nil for local copies
	window chan struct{}      // one token per remote read not yet consumed
	pos    int
	wg     sync.WaitGroup
}

type fetchResult struct {
	data []byte
	err  error
}

// imapFetchBatch bounds the remote messages of one read-ahead batch.
const imapFetchBatch = 32

func (n *Node) prefetch(ctx context.Context, ids []string, window int) *prefetcher {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetcher{n: n, ctx: ctx, cancel: cancel, ids: ids, slots: make([]chan fetchResult, len(ids)), window: make(chan struct{}, window)}
	var remote []int
	var entries []catalog.Entry
	for i, id := range ids {
		if e, ok := n.cat.Get(id); ok && e.Live() && !e.HasLocation(n.cfg.Name) {
			p.slots[i] = make(chan fetchResult, 1)
			remote = append(remote, i)
			entries = append(entries, e)
		}
	}
	if len(remote) == 0 {
		return p
	}
	batch := min(imapFetchBatch, window)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for start := 0; start < len(remote); start += batch {
			end := min(start+batch, len(remote))
			for range end - start {
				select {
				case p.window <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				for k, r := range n.readMessages(ctx, entries[start:end]) {
					p.slots[remote[start+k]] <- r
				}
			}()
		}
	}()
	return p
}

// next returns the next message's bytes.
func (p *prefetcher) next() ([]byte, error) {
	i := p.pos
	p.pos++
	if p.slots[i] == nil {
		e, ok := p.n.cat.Get(p.ids[i])
		if !ok || !e.Live() {
			return nil, errExpunged
		}
		return p.n.readMessage(p.ctx, &e)
	}
	select {
	case r := <-p.slots[i]:
		<-p.window
		return r.data, r.err
	case <-p.ctx.Done():
		return nil, p.ctx.Err()
	}
}

// stop abandons what was not read and waits for the readers.
func (p *prefetcher) stop() {
	p.cancel()
	// The producer sees ctx done; readers send into buffered slots.
	p.wg.Wait()
}
