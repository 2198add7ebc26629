// Package store keeps a node's durable state in one bbolt file: the message
// copies the node holds (each with a SHA-256 checksum verified on every
// read) and the node's replica of the tracking catalog (opaque encoded
// entries, owned by package catalog).
//
// Every write goes through Write and one writer goroutine, which commits
// everything queued while the previous transaction was syncing in one
// transaction and one fsync (group commit): batches grow with the disk's
// latency, up to MaxBatchSize. A write returns only after its transaction
// is on disk, which is what lets the SMTP listener answer 250. GroupStats
// counts the transactions and the writes they carried (the node's
// mailarray_store_commits_total and mailarray_store_writes_total).
//
// Never do network I/O inside a Write: a goroutine waiting on bbolt's
// mutex is not durably blocked, which freezes the simulator's fake clock.
package store
