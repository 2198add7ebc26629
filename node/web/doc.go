// Package web is the array's webmail: a single page (GET /, embedded from
// static/: HTML, CSS and plain JavaScript, no other origin) over a JSON API
// under /v1/mail/. Like POP3 it is an access server: the node implements
// Backend (check a password against the directory, list a mailbox from the
// catalog, read a message from any live copy, delete it everywhere), so
// any node with --http serves any mailbox.
//
//	POST   /v1/mail/login                        {address, password} -> {mailbox}, sets the session cookie
//	POST   /v1/mail/logout                       ends the session
//	GET    /v1/mail/session                      {mailbox}, or 401
//	GET    /v1/mail/messages?offset=&limit=      a page of summaries, newest first
//	GET    /v1/mail/messages/{id}                the message taken apart (View)
//	GET    /v1/mail/messages/{id}/raw            the message as stored (download)
//	GET    /v1/mail/messages/{id}/attachments/{n} one attachment, decoded (download)
//	DELETE /v1/mail/messages/{id}                removes it from every node
//
// Sessions live in the node's memory (session.go): a random token in an
// HttpOnly, SameSite=Strict cookie (Secure behind TLS), idle and absolute
// expiry, a bound on their number. Failed logins are slowed
// (FailedLoginDelay) and counted per client address and per mailbox in a
// window; past MaxFailedLogins the answer is 429 with Retry-After.
//
// Mail is untrusted. The parser (parse.go) takes a message apart with the
// standard library (net/mail, mime/multipart, RFC 2047 words through
// mime.WordDecoder, charsets through the WHATWG index of x/text), within
// MaxMIMEDepth, MaxMIMEParts and MaxTextBytes, and returns text only: the
// first text/plain part, or an HTML part reduced to text. The page puts
// every value in with textContent, and its Content-Security-Policy admits
// no inline script. Messages and attachments are served as downloads
// (Content-Disposition: attachment, nosniff, a sandbox CSP), never
// rendered on the page's origin. A message of another mailbox is 404,
// like one that does not exist.
package web
