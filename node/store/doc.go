// Package store keeps a node's durable state in one bbolt file: the message
// copies the node holds (each with a SHA-256 checksum verified on every
// read) and the node's replica of the tracking catalog (opaque encoded
// entries, owned by package catalog).
//
// Every write goes through Write, which commits with bbolt's Batch: writers
// arriving within MaxBatchDelay share one transaction and one fsync (group
// commit). DESIGN.md measured bbolt's default 10 ms delay as 3.5-9x slower
// than ~1 ms at 20-60 writers, hence the defaults here. A write returns
// only after its transaction is on disk, which is what lets the SMTP
// listener answer 250.
//
// Never do network I/O inside a Write: a goroutine waiting on bbolt's
// mutex is not durably blocked, which freezes the simulator's fake clock.
package store
