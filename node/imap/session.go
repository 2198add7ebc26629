package imap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"mailarray/node/loginlog"
	"mailarray/node/throttle"
)

// session is one connection. imapserver calls its methods from the
// connection's goroutine, one at a time, except Idle, which runs in a
// goroutine of its own while that one reads the client's DONE. imapserver
// waits for Idle to return only when the client sends DONE: a client that
// ends IDLE with another line, or drops the connection, gets its next
// command (or the Poll after it) run while Idle may still be refreshing the
// view. So Idle holds idleMu for as long as it runs, and every method that
// touches the selected view first waits for it (idleDone); nothing else
// needs a lock.
type session struct {
	svc    *Server
	conn   *imapserver.Conn
	ctx    context.Context // canceled at Close or when the server closes
	cancel context.CancelFunc

	mb      Mailbox // the logged-in user's, nil before login
	mailbox string  // its address
	failed  int     // refused logins
	sel     *view
	closed  bool
	// idleMu is held by Idle for as long as it runs (see above).
	idleMu sync.Mutex

	addrKey string // the client address perAddr counts the session under
	// loginTimer ends the session if it is not logged in in time
	// (Config.LoginTimeout); loggedIn tells its goroutine not to.
	loginTimer *time.Timer
	loggedIn   atomic.Bool
}

var (
	_ imapserver.SessionIMAP4rev2 = (*session)(nil)
	_ imapserver.SessionSASL      = (*session)(nil)
)

// idleDone waits until no Idle runs. Idle only starts from the
// connection's goroutine, which is the caller, so none starts meanwhile;
// one still running has seen its stop channel closed and returns when the
// refresh it may be in is done.
func (s *session) idleDone() {
	s.idleMu.Lock()
	s.idleMu.Unlock() // nothing to do inside: a barrier
}

func (s *session) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.loginTimer != nil {
		s.loginTimer.Stop()
	}
	s.cancel() // ends a running Idle
	s.idleDone()
	s.unselect()
	s.svc.perAddr.Release(s.addrKey)
	s.svc.mu.Lock()
	delete(s.svc.sessions, s)
	s.svc.mu.Unlock()
	s.svc.wg.Done()
	return nil
}

// loginTimeout runs on the login timer's goroutine: a session still not
// logged in gets BYE (RFC 9051 section 7.1.5) and its connection closed,
// which ends it. The writer is one of the server's byes, so Close waits
// for it; none starts once the server is closed.
func (s *session) loginTimeout() {
	if s.loggedIn.Load() {
		return
	}
	svc := s.svc
	svc.mu.Lock()
	if svc.closed {
		svc.mu.Unlock()
		return
	}
	svc.byes.Add(1)
	svc.mu.Unlock()
	defer svc.byes.Done()
	svc.log.Info("imap: no login in time; closing", "remote", s.remote(), "timeout", svc.cfg.LoginTimeout)
	s.conn.Bye("autologout: no login in time")
}

// remote is the client's address for logs.
func (s *session) remote() string { return loginlog.Remote(s.conn.NetConn().RemoteAddr()) }

// recordLogin logs a login attempt and tells Config.Logins.
func (s *session) recordLogin(user, result, reason string) {
	loginlog.Record(s.svc.log, s.svc.cfg.Logins, loginlog.Event{Protocol: "imap", Remote: s.remote(), Mailbox: user, Result: result, Reason: reason})
}

// --- not authenticated ---

func (s *session) Login(username, password string) error {
	if s.failed >= maxFailedLogins {
		// A client guessing passwords must reconnect (RFC 9051 section
		// 11.1 leaves the policy to the server).
		s.recordLogin(username, loginlog.Throttled, "too many failed logins on this connection")
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "too many failed logins on this connection"}
	}
	defer s.svc.observe("login", time.Now())
	key := throttle.AddrKey(s.conn.NetConn().RemoteAddr())
	logins, delay := s.svc.loginLimits()
	if ok, _ := logins.Begin(time.Now(), key); !ok {
		// As POP3 answers [SYS/TEMP]: the address, not the password, is
		// refused, for a while (RFC 5530 UNAVAILABLE: try again later).
		s.recordLogin(username, loginlog.Throttled, "too many failed logins from "+key)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "too many failed logins from your address, try again later"}
	}
	mb, err := s.svc.backend.Login(username, password)
	if err != nil {
		if !errors.Is(err, ErrAuth) {
			logins.Succeeded(key) // not a guess: the password was not checked
			s.recordLogin(username, loginlog.Error, err.Error())
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "authentication unavailable, try again later"}
		}
		s.failed++
		s.recordLogin(username, loginlog.Failure, "invalid credentials")
		// A fixed delay slows guessing; closing the session ends it.
		select {
		case <-time.After(delay):
		case <-s.ctx.Done():
		}
		return imapserver.ErrAuthFailed // RFC 5530 AUTHENTICATIONFAILED
	}
	logins.Succeeded(key)
	s.loggedIn.Store(true)
	if s.loginTimer != nil {
		s.loginTimer.Stop()
	}
	s.mb, s.mailbox = mb, mb.Name()
	s.recordLogin(s.mailbox, loginlog.Success, "")
	return nil
}

func (s *session) AuthenticateMechanisms() []string { return []string{"PLAIN"} }

// Authenticate supports SASL PLAIN (RFC 4616) with an empty or equal
// authorization identity.
func (s *session) Authenticate(mech string) (sasl.Server, error) {
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
func isInbox(name string) bool { return strings.EqualFold(name, inbox) }

func errNoMailbox(name string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: fmt.Sprintf("no mailbox %q: only INBOX exists", name)}
}

func errOnlyInbox(what string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: what + " is not supported: only INBOX exists on this server"}
}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	defer s.svc.observe("select", time.Now())
	if !isInbox(name) {
		return nil, errNoMailbox(name)
	}
	s.idleDone()
	s.unselect()
	v := &view{mailbox: s.mailbox, readOnly: options.ReadOnly}
	v.notify = s.svc.watch(v.mailbox)
	s.sel = v
	v.gen = s.svc.generation(v.mailbox)
	cur := s.snapshot(v, true)
	v.msgs = make([]message, len(cur))
	for i := range cur {
		v.msgs[i] = message{e: cur[i]}
	}
	data := &imap.SelectData{
		Flags:          systemFlags,
		PermanentFlags: append(slices.Clone(systemFlags), imap.FlagWildcard),
		NumMessages:    uint32(len(v.msgs)),
		UIDNext:        imap.UID(s.mb.MaxUID() + 1),
		UIDValidity:    UIDValidity(v.mailbox),
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

func (s *session) Unselect() error {
	s.idleDone()
	s.unselect()
	return nil
}

func (s *session) unselect() {
	if s.sel != nil {
		s.svc.unwatch(s.sel.mailbox, s.sel.notify)
		s.sel = nil
	}
}

func (s *session) Create(mailbox string, options *imap.CreateOptions) error {
	if isInbox(mailbox) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "INBOX exists"}
	}
	return errOnlyInbox("CREATE")
}

func (s *session) Delete(mailbox string) error { return errOnlyInbox("DELETE") }

func (s *session) Rename(mailbox, newName string, options *imap.RenameOptions) error {
	return errOnlyInbox("RENAME")
}

func (s *session) Subscribe(mailbox string) error {
	if isInbox(mailbox) {
		return nil
	}
	return errNoMailbox(mailbox)
}

func (s *session) Unsubscribe(mailbox string) error {
	if isInbox(mailbox) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "INBOX stays subscribed"}
	}
	return errNoMailbox(mailbox)
}

func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter (RFC 9051 section 6.3.9).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	if options.SelectSpecialUse {
		return nil
	}
	for _, p := range patterns {
		if imapserver.MatchList(inbox, delim, ref, p) {
			data := &imap.ListData{Mailbox: inbox, Delim: delim, Attrs: []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}}
			if options.SelectSubscribed || options.ReturnSubscribed {
				data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
			}
			if options.ReturnStatus != nil {
				st, err := s.Status(inbox, options.ReturnStatus)
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

func (s *session) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	if !isInbox(mailbox) {
		return nil, errNoMailbox(mailbox)
	}
	v := &view{mailbox: s.mailbox}
	cur := s.snapshot(v, true)
	data := &imap.StatusData{Mailbox: inbox, UIDValidity: UIDValidity(s.mailbox), UIDNext: imap.UID(s.mb.MaxUID() + 1)}
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

func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if !isInbox(mailbox) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: fmt.Sprintf("no mailbox %q: only INBOX exists", mailbox)}
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "APPEND is not supported: mail arrives by SMTP"}
}

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// --- selected ---

func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	s.idleDone()
	v := s.sel
	if v.readOnly {
		return nil // CLOSE after EXAMINE expunges nothing (RFC 9051 section 6.4.1)
	}
	defer s.svc.observe("expunge", time.Now())
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
	if err := s.mb.Expunge(s.ctx, ids); errors.Is(err, ErrInUse) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeInUse, Text: "a POP3 session holds the mailbox; expunge later"}
	} else if errors.Is(err, ErrIncomplete) {
		// Applied here and on its way to the rest; the client's retry
		// gets OK once every live node has the tombstones.
		s.svc.log.Warn("imap: expunge", "mailbox", v.mailbox, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "expunge not yet confirmed by every node, try again"}
	} else if err != nil {
		s.svc.log.Error("imap: expunge", "mailbox", v.mailbox, "err", err)
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

func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	return nil, s.errOtherMailbox(dest)
}

func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.errOtherMailbox(dest)
}

func (s *session) errOtherMailbox(dest string) error {
	if isInbox(dest) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "source and destination are the same mailbox"}
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: fmt.Sprintf("no mailbox %q: only INBOX exists", dest)}
}
