// Package imap is mailarray's IMAP server: IMAP4rev2 (RFC 9051) and
// IMAP4rev1 (RFC 3501) with emersion/go-imap/v2's imapserver, over the
// same catalog as POP3.
//
// The server knows nothing of the cluster. The node implements Backend
// (check credentials against the directory) and Mailbox (list the mailbox
// from its catalog replica, assign UIDs across the array, read each
// message from any live copy, store flags and expunge through the node's
// deletion path): node/imap_backend.go. Sessions share a mailbox: IMAP
// takes no lock at login, and an EXPUNGE waits (NO [INUSE]) while a POP3
// session holds the mailbox exclusively.
//
// Each mailbox has one folder, INBOX. A session's view of it (view.go) is
// the mailbox's committed catalog entries that have a UID, in UID order;
// sequence numbers index that view. The view is refreshed when the
// catalog changed for the mailbox (the node hands every change to
// Server.CatalogChanged, which bumps a per-mailbox generation and wakes
// idling sessions), after every command, and every pollEvery while IDLE
// waits for entries without a UID. New messages are announced with EXISTS,
// messages expunged elsewhere with EXPUNGE (only where RFC 9051 section
// 7.5.1 allows it; until then they stay in the view as "gone"), flag
// changes with FETCH FLAGS. UIDs are assigned lazily by the node
// (Mailbox.AssignUIDs, node/imap_uid.go) when a session sees entries
// without one; uid.go holds the rules both sides share.
//
// Flags (flags.go) live in the catalog entry (Entry.Flags): STORE writes a
// new version of the entry through Mailbox.StoreFlags, which applies it
// and pushes it to every live node, like a POP3 deletion, so flags
// replicate like any catalog change. A flag change is last-writer-wins per
// message: two clients changing flags of one message at the same instant
// on two nodes keep one of the two changes. \Deleted then EXPUNGE
// tombstones through Mailbox.Expunge, as POP3 DELE does. \Recent is not
// kept (IMAP4rev2 dropped it).
//
// FETCH (fetch.go) reads the copies other nodes hold ahead of the response
// (fetchWindow at a time, Mailbox.ReadBatch), so a mailbox spread over the
// array streams at the speed of local reads, and the local ones a run at a
// time into a buffer it reuses. Its responses go out gathered, a write per
// 64 KiB instead of two per message (cork.go: every connection the server
// accepts is a corkConn, under TLS for IMAPS and STARTTLS). SEARCH (search.go) matches
// headers and bodies as raw bytes, without MIME decoding.
//
// Sessions (session.go) are driven by imapserver: one goroutine per
// connection, plus one for IDLE (see session for how the two never touch
// the view at once). Logins are limited per connection and per remote
// address across connections (throttle.go), as POP3's are; sessions are
// capped per client address (MaxSessionsPerAddr, an IPv4 address or an
// IPv6 /64), and a session not logged in LoginTimeout after it connected
// gets BYE. RequireTLS takes passwords only over TLS (LOGINDISABLED before
// STARTTLS). Every login attempt is logged and reported with
// node/loginlog's fields, as on POP3 and webmail. Bye tells every
// session the server is going away; Close ends them all and waits for
// their goroutines.
package imap
