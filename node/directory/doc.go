// Package directory is the node's database of local mailboxes (element 14
// of the patent): which mailboxes exist, how their passwords are checked,
// and their options (where to notify of new mail, quota, aliases). The SMTP
// listener asks it whether a recipient exists (Lookup), the POP3 and IMAP
// servers whether a login is right (Authenticate), and the node which
// domains it hosts (Domains).
//
// The source is a flat file, one mailbox per line:
//
//	# comment
//	alice@example.com:{BCRYPT}$2a$10$...:notify=https://hook.example/x,quota_bytes=104857600
//	bob@example.com:{PLAIN}secret:notify=sms:+15551234567,alias=robert@example.com
//
// Parse reads it (pure: entries and problems, no logging). A bad line never
// stops the node: it is logged with file, line and reason (never the
// password) and skipped, and so is a line repeating an address. Addresses
// are kept and compared in package mailaddr's normal form: local part in
// NFC with ASCII letters lowered (UTF-8 local parts, RFC 6531, are
// allowed), domain as A-labels, so an IDN domain may be written in either
// form. LookupFresh serves the SMTP listener's unknown recipients: it loads
// a file changed since the last load at once, so a mailbox just added is
// not refused for good while Watch catches up. The
// format's details are at Parse; `mailarray user hash` prints a {BCRYPT}
// secret made by HashPassword.
//
// A Directory holds one parsed version of the file as an immutable snapshot
// behind an atomic pointer: lookups take no lock, and Reload (called by
// Watch, which polls the file's identity, size and modification time) swaps
// in a new snapshot, or keeps the old one when the file cannot be read. The
// simulator, which has no files, builds one with NewFromEntries.
//
// Passwords: bcrypt costs tens of milliseconds per comparison, which would
// dominate a POP3 benchmark, so successful comparisons are cached for a
// bounded time and number of users, as a MAC of the password under a key
// private to the Directory; each snapshot has its own cache, so a reload
// forgets them. The security trade-off is described at authCache. An unknown
// address still costs a bcrypt comparison, so timing does not reveal which
// addresses exist. {PLAIN} passwords exist for tests and the simulator; a
// file using them is loaded with a warning naming the lines.
package directory
