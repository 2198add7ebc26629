// Package node assembles one mailarray node from a Config and an Env: the
// store and catalog replica, the mailbox directory, the SMTP, POP3, IMAP,
// DNS, peer and HTTP listeners, and the delivery and retrieval paths that tie
// them together. The same Node runs under `mailarray serve` (real sockets,
// serf) and inside the simulator (SimNet, modeled membership); it reaches
// the outside only through its Env.
//
// Env is an alias of env.Env so that the node's parts, which live in
// subpackages, can take it without importing this package.
package node
