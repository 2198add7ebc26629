// Package pop3 is mailarray's POP3 access server (patent "POP servers
// 31-32") and the POP3 client the simulator's load generator and the tests
// use.
//
// # Server
//
// Server speaks POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595) and
// response codes (RFC 2449 §8, RFC 3206) over any net.Conn: the node hands
// Serve listeners from env.Net, the simulator hands it in-memory conns
// (through a listener or ServeConn), and implicit TLS (POP3S) is a
// tls.NewListener around either. The server knows nothing of the cluster:
// the node implements Backend (check credentials against the directory and
// take the mailbox's cluster-wide lock) and Maildrop (list the mailbox from
// the catalog, read each message from any live copy, delete on commit).
//
// A session is one goroutine running the RFC 1939 state machine:
// AUTHORIZATION (USER, PASS, CAPA, STLS, QUIT; authorization.go),
// TRANSACTION (STAT, LIST, UIDL, RETR, TOP, DELE, RSET, NOOP, CAPA, QUIT;
// transaction.go) and UPDATE, entered by QUIT, where Maildrop.Commit removes
// the messages marked deleted (transaction.go). session.go holds the loop,
// the dispatch by state, line reading and the response writers. Deleted
// messages are invisible for the rest of the session and message numbers
// never shift. Maildrop.Close is called exactly once when the session ends,
// however it ends, so the mailbox lock is never leaked; a session that ends
// any other way than QUIT (autologout, error, Server.Close) deletes nothing.
//
// Command lines are split by parseCommand (parse.go), a pure function that
// FuzzParseCommand exercises; FuzzSession drives whole sessions from random
// bytes. Responses are buffered and flushed only when no further complete
// command is waiting (RFC 2449 PIPELINING). Messages are dot-stuffed on the
// way out by dotWriter (dot.go), which also cuts TOP responses.
//
// Every resource has a limit in Config: line length, idle (autologout) and
// write timeouts, backend call timeout, failed logins per session (each
// answered after FailedLoginDelay), failed logins per remote address per
// window (node/throttle: counted from the attempt's start, so parallel
// guesses count too), bad commands per session, concurrent sessions, in
// all and per client address (MaxSessionsPerAddr: an IPv4 address or an
// IPv6 /64, throttle.Conns), the time from connect to login
// (LoginTimeout, which commands do not renew) and messages shown per
// session. RequireTLS takes passwords only over TLS: CAPA omits USER and
// USER/PASS get "-ERR [AUTH]" before STLS. Every login attempt is one
// "login" log line with the fields of node/loginlog, as on IMAP and
// webmail, and goes to Config.Logins. Passwords are never logged.
//
// # Client
//
// Client (client.go) is a small synchronous POP3 client over one net.Conn
// with one buffered reader and writer. "-ERR" responses come back as *Error
// carrying the response code, so callers test ErrorCode(err) == "IN-USE".
// Retr removes dot-stuffing; RetrTo streams into a writer without
// allocating.
package pop3
