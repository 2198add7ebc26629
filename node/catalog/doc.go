// Package catalog is the tracking catalog (the patent's catalog 60): one
// entry per stored message saying which mailbox it belongs to, where its
// copies live, its flags and whether it was deleted. Every node keeps a
// full replica, persisted in its store and indexed in memory, so any node
// can list any mailbox.
//
// Replicas converge because merging is a join: of two versions of an entry
// the one that ranks higher (deleted beats live, then higher version, then
// committed beats pending, then a byte-wise tie break) wins, whatever order
// the versions arrive in and however often. Versions come from a hybrid
// logical clock, so a node's later change outranks what it has seen.
// The IMAP UID is the exception: it merges as the maximum of the two
// versions' UIDs, so an assigned UID survives newer versions written by
// replicas that had not seen it (see Merge).
// Entries start Pending when their copies are written and become Committed
// once W copies are durable; a failed write turns them Deleted. Listing
// shows only committed, live entries, so a transaction that failed never
// shows a message (invariant 4).
//
// Anti-entropy compares 4,096 bucket digests (Buckets) (XOR of per-entry hashes,
// maintained incrementally) and exchanges only differing buckets; Digest
// summarises the whole replica for operators and tests.
//
// Tombstones are forgotten together, below a collection horizon the
// replicas agree on at every anti-entropy round: the rules, and why they
// never bring a deleted message back, are in horizon.go.
package catalog
