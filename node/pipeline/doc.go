// Package pipeline is the inbound content pipeline (the patent's
// antivirus 121-124, spam database 130-132 and SMS notice 140-142): what
// runs on every message after DATA and before placement, and the notices
// sent once it is stored.
//
// # Pipeline
//
// A Pipeline is an explicit ordered list of Filters (New(cfg, log, f1,
// f2, ...)); nothing registers itself. Run gives each filter the message
// and gets a Verdict: Accept, Modify (new bytes), Quarantine or Reject
// (with its SMTP reply), a reason, and header fields to add. Every
// decision becomes a "filter: verdict: reason" line of Result.Trace, which
// the node stores in the catalog entry, and a log line. Modify passes its
// bytes to the next filter (so may Quarantine, with data); header fields
// are inserted once, at the end, just after our Received header; Reject
// stops the run; Quarantine does not (a later filter may still reject).
//
// A filter that fails (error, per-filter Timeout, panic, invalid verdict)
// never loses the message: Run returns a *FilterError, which unwraps to a
// 451 4.3.0 reply, so the listener answers 451 and the sender retries. With
// Config.FailOpen the message goes on instead, carrying
// "X-Mailarray-Filter-Failed: <name>" so the recipient can tell.
//
// # Sender authentication
//
// Auth (auth.go, dmarc.go, arc.go) checks SPF (RFC 7208, blitiri
// spf), DKIM (RFC 6376, go-msgauth dkim) and DMARC (RFC 7489: the From
// domain's record from go-msgauth dmarc, alignment and the organizational
// domain here) and adds one Authentication-Results field (RFC 8601, go-msgauth
// authres) naming AuthConfig.AuthservID, after removing any incoming
// field that claims that id. Every DNS question goes through the
// Resolver interface; the node's is a DNSResolver over env.Net. A lookup
// that fails is a temperror result, never a filter error: the message is
// delivered, marked. A DMARC fail is marked, quarantined or refused (550
// 5.7.1) per AuthConfig.DMARCPolicy; a valid ARC chain sealed by a trusted
// forwarder (RFC 8617) keeps it to a mark. The node runs Auth first, on
// the message as received, since defanging would break DKIM body hashes.
// Messages the array makes itself (Message.Local: fax and voicemail) have
// no sending MTA to authenticate and are not checked.
//
// # Antivirus
//
// Antivirus scans the raw message and every leaf MIME part decoded from
// base64 or quoted-printable, walking nested multiparts and message/rfc822
// parts (mime.go) with named limits: MaxMIMEDepth, MaxMIMEParts and
// AVConfig.MaxScanBytes (raw prefix and decoded bytes, each). Signatures
// are the built-in EICAR test file plus a reloadable file of byte patterns
// (matched anywhere) and SHA-256 digests (matched against whole decoded
// parts); see ParseSignatures. Reload swaps them atomically and Watch
// reloads on change. With AVConfig.Clamd set, clamd is asked too
// (INSTREAM over env.Net); when it finds something the built-in scanner
// did not place, the parts are sent one by one to find which.
//
// Policy is per recipient domain. defang replaces each infected part in
// place: its Content-Type and Content-Transfer-Encoding fields become
// text/plain 7bit and its body a notice naming what was found; every
// other byte of the message, the part's other header fields and the
// boundaries included, is kept, and "X-Virus-Status: Infected (...);
// defanged" is added. quarantine holds the whole message. Recipients
// under different policies share one stored copy, so the strictest wins:
// quarantine over defang. A find that lies in no part's body (a header, a
// preamble) cannot be cut out, and quarantines whatever the policy.
//
// # Spam
//
// Spam checks the envelope sender's domain and the header From domains
// against a local database file (one domain a line; a domain lists its
// subdomains) and optional DNS block lists, both domain zones (D.zone)
// and address zones (reversed client IP), asked through ddns.Exchange over
// env.Net (RFC 5782). A listed sender gets "X-Spam-Flag: YES" and
// "X-Spam-Reason: ..." and a log line, or with SpamConfig.Reject a 550
// 5.7.1. A block list that does not answer counts as not listed, noted in
// the trace. AddDomain, DelDomain and ListDomains edit the database file
// for `mailarray spam add|del|list`: under a lock file, written to a
// temporary file and renamed, so Watch never loads half a file.
//
// # Notifier
//
// A Notifier sends a notice for each stored message of a mailbox whose
// directory entry has notify=: a JSON POST of the Event to a webhook, or
// {to, text} to the configured SMS gateway for sms:+E164. It is not a
// filter, because a notice must follow the 250, not precede it: the node
// calls Notify after the message is durable. Notify never blocks: a full
// queue drops the notice (counted, logged). Run is the worker loop (the
// caller owns its goroutines), retrying with exponential backoff and
// jitter from env.Rand; Close stops it. HTTP goes through env.Net.
package pipeline
