// Package mailaddr puts mail addresses and domain names into the one normal
// form the node compares them in, so that an address typed in the users
// file, given on the command line, sent in an SMTP envelope (RFC 5321 or,
// with SMTPUTF8, RFC 6531) or typed at a POP3 or IMAP login names the same
// mailbox however it was written.
//
// The normal form of a domain is its A-label form (RFC 5890 section 2.3.2.1:
// "xn--" labels, ASCII lower case) without a trailing dot: the form DNS
// queries arrive in, and the one an ASCII-only peer sees. A U-label domain
// ("bücher.example") and its A-label ("xn--bcher-kva.example") are one
// domain. The mapping is UTS #46 (golang.org/x/net/idna's Lookup profile),
// which also lowers the case of non-ASCII letters in a domain: that is safe
// there, since DNS and IDNA define domain names case-insensitively.
//
// The normal form of a local part is its UTF-8 text in Unicode Normalization
// Form C (RFC 6531 section 3.3 leaves local parts to the receiving domain;
// RFC 6532 section 3.1 recommends NFC), with ASCII letters lowered. Other
// letters keep their case: RFC 5321 section 2.4 lets a server treat local
// parts case-insensitively, but Unicode case folding maps distinct
// characters together (U+212A KELVIN SIGN folds to 'k', U+0130 depends on
// the language), so folding them could let one address match another's
// mailbox.
//
// Everything here is pure and allocation-light for the all-ASCII case, which
// is nearly all mail.
package mailaddr
