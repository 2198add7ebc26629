// Package smtp is the array's SMTP listener (the patent's listeners 15-17):
// a go-smtp server that accepts mail only for known mailboxes of hosted
// domains and hands each message, with its Received header, to the node's
// delivery path, answering 250 only once delivery says the message is
// durable on W nodes.
//
// Replies follow RFC 5321 with RFC 3463 enhanced codes: unknown mailbox
// 550 5.1.1, domain not hosted 550 5.7.1 (never an open relay), too large
// 552 5.3.4, cluster unable to make the message durable 451 4.3.0. On
// shutdown, idle sessions get 421 4.4.2 at once; a transaction in flight
// finishes first, then its session gets 421. A mailbox the directory may
// be about to load gets 450 4.1.1, so that the sender retries.
//
// Internationalised mail (RFC 6531): SMTPUTF8 is offered; with it the
// envelope may hold UTF-8 addresses and the header UTF-8 (RFC 6532), and
// recipients are put in package mailaddr's normal form (IDN domains as
// A-labels, local parts in NFC) before the backend sees them. A non-ASCII
// address without it gets 553 5.6.7.
//
// Lines: the message size limit is the only bound on a line of a message
// (RFC 5321's 1000 octets is not enforced, as Postfix and Exim do not),
// and a message over the limit is read to its end before 552 5.3.4, so
// the client sees the reply rather than a reset. See Config.MaxMessageBytes.
//
// Limits against abuse: concurrent sessions in all and per client address
// (an IPv4 address or an IPv6 /64, throttle.Conns), optionally new
// connections per address per minute, and a tarpit for recipient probing
// (tarpit.go): unknown recipients past a threshold are answered late, and
// too many in a session, or from one address in a window, end the session
// with 421 4.7.0.
package smtp
