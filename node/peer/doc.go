// Package peer is the node-to-node protocol of mailarray: HTTP over the
// node's --peer listener (Env.Net), plus a pipelined stream for the
// replication hot path (stream.go). Client is a node's side towards its
// peers; Server answers from a Handler, the node as the protocol sees it
// (handler.go), which the root package implements. Neither holds a node:
// a Config gives them the node's name, a Resolver of peer addresses, a
// dialer, TLS, the peer key, the limits, a logger and the cost and fault
// hooks.
//
//	PUT    /v1/copies/{id}      store a copy; X-Entry carries its (pending) catalog entry
//	GET    /v1/copies/{id}      fetch a copy; X-Sum is its SHA-256, verified by the reader
//	HEAD   /v1/copies/{id}      does the node hold a copy
//	POST   /v1/entries          merge a batch of catalog entries (push)
//	GET    /v1/entries/{id}     one catalog entry
//	POST   /v1/abort/{id}       abort the listener's transaction of a pending entry (JSON AbortReply)
//	GET    /v1/buckets          the anti-entropy bucket digests (catalog.Buckets), trading Horizon headers
//	GET    /v1/buckets/{b}      the entries of one bucket
//	POST   /v1/locks/{mailbox}  take a mailbox lock (owner, ttl_ms); 409 if held
//	DELETE /v1/locks/{mailbox}  release it (owner)
//	GET    /v1/uids/{mailbox}   highest IMAP UID and entries above since=N
//	POST   /v1/copy-batch       many copies in one answer (below)
//	GET    /v1/stream           upgrade to the replication stream (stream.go):
//	                            copies and pushes, pipelined on one connection
//	GET    /v1/load             the node's load report (JSON)
//	GET    /v1/mirror           the node's mirroring table (JSON)
//	GET    /v1/status           the node's status (JSON)
//	POST   /v1/rebalance        start moving copies to their current placement
//	POST   /v1/drain            start draining the node before it leaves (JSON progress; 409 refused)
//	GET    /v1/drain            the drain's progress (JSON)
//
// Answers are HTTP statuses: 204 for a stored copy or merged entries, 400
// for a request that does not decode, 404 for what the node does not
// have, 409 for a copy refused because its id is a tombstone there (and
// for a corrupt copy asked for), 503 for an injected fault, 507 for a
// copy the store could not write. The stream replies with the status the
// same HTTP request would have had.
//
// Entries travel in catalog's encoding; a batch of them (EncodeEntries)
// is each entry led by its length (uvarint). A UID answer is the highest
// UID (4 bytes, little endian) then such a batch. Bucket digests are
// catalog.Buckets little-endian uint64s.
//
// Reading many messages at once, for FETCH 1:* and POP3 read-ahead: the
// copies another node holds come in one request per node and batch
// instead of one request per message.
//
//	POST /v1/copy-batch   body: uvarint count, then each id (uvarint
//	                      length, bytes); answer: per id, a status byte
//	                      (batchOK, batchMissing, batchCorrupt,
//	                      batchSkipped) and for batchOK the copy (uvarint
//	                      length, bytes), with a Content-Length. The
//	                      holder reads the batch in one store read
//	                      transaction and stops reading (skips the rest)
//	                      once CopyBatchBytes are in. The reader verifies
//	                      each copy against its catalog entry (the node's
//	                      holder does not hash them: a copy that fails is
//	                      read again with GET /v1/copies/{id}, which the
//	                      holder verifies, and repaired).
//
// With peer-ca/peer-cert/peer-cert-key (LoadTLS) the API speaks mutual
// TLS: only holders of a certificate from the array's CA get through, and
// nothing crosses the network in clear. When a peer key is configured
// every request must also carry it in X-Mailarray-Key. With neither, the
// API is open to whoever reaches the port: `mailarray serve` refuses that
// beyond loopback unless told --insecure-peer-api (node/peerauth.go).
// The certificate files are read again when they change (TLS.Watch), so
// they rotate without a restart. Routes lists every request, for scans
// that check each one is guarded (cmd/mailarray/peerscan_test.go).
//
// A peer's lock lasts at most Config.MaxLockTTL (the node's own lease),
// whatever ttl_ms it asks for.
//
// Concurrency: a Client is safe for concurrent use; a Server calls its
// Handler concurrently from many connections. Client.Close and
// Server.Close end every goroutine either started.
package peer
