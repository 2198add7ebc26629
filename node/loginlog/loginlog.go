// Package loginlog records login attempts the same way on every access
// path (POP3, IMAP, webmail; SMTP has no AUTH): one log line per attempt
// with the same message and fields, so one log watcher rule (fail2ban and
// the like) covers them all, and one hook the node counts them with
// (mailarray_logins_total{protocol,result}).
//
// The line is `msg=login protocol=... result=... mailbox=... remote=...`
// with reason on refusals; remote is always the client's "ip:port" as a
// string (never an object in JSON). Passwords are never logged.
package loginlog

import (
	"context"
	"log/slog"
	"net"
)

// Results of a login attempt: the values of Event.Result and of the
// metric's result label. A short fixed list, so the metric stays small.
const (
	// Success: the credentials were right.
	Success = "success"
	// Failure: unknown user or wrong password. What a log watcher bans on.
	Failure = "failure"
	// Throttled: refused without checking the password, the client's
	// address (or the mailbox) having failed too often.
	Throttled = "throttled"
	// Refused: refused without checking the password by policy, such as
	// cleartext authentication without TLS.
	Refused = "refused"
	// Error: the password could not be checked, or the session could not
	// be opened after it was (a temporary failure, a held POP3 lock).
	Error = "error"
)

// Event is one login attempt.
type Event struct {
	Protocol string // pop3, imap, web
	Remote   string // the client's ip:port
	Mailbox  string // as the client gave it, or the canonical address on success
	Result   string // one of the constants above
	Reason   string // why, for anything but Success; may be empty
}

// Recorder is told every login attempt, after it is logged. It is called
// concurrently from many sessions and must not block.
type Recorder func(Event)

// Record logs ev (Info for a success, Warn otherwise) and hands it to rec
// when rec is set.
func Record(log *slog.Logger, rec Recorder, ev Event) {
	level := slog.LevelWarn
	if ev.Result == Success {
		level = slog.LevelInfo
	}
	attrs := []slog.Attr{
		slog.String("protocol", ev.Protocol),
		slog.String("result", ev.Result),
		slog.String("mailbox", ev.Mailbox),
		slog.String("remote", ev.Remote),
	}
	if ev.Reason != "" {
		attrs = append(attrs, slog.String("reason", ev.Reason))
	}
	if log != nil {
		log.LogAttrs(context.Background(), level, "login", attrs...)
	}
	if rec != nil {
		rec(ev)
	}
}

// Remote is a's string form, "" for none: the value of the remote field.
func Remote(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
