// Package replica keeps a node's catalog and copies in step with the
// array: it pushes catalog changes, commits transactions asynchronously,
// runs anti-entropy, rebuilds lost copies, rebalances, resolves pending
// entries whose listener died, collects tombstones below the horizon the
// array agrees on, deletes orphan copies and verifies the store against
// the catalog.
//
// A Replicator is built by New from a Deps struct: the catalog and store
// (owned by the node; the replicator reads and applies, never closes), a
// Peer (the calls it makes to other nodes, *peer.Client), a Members view,
// WriteCopy (the node's write of one copy), the node's listener answers
// (Boot, AbortLocal), RecordMember, the logger and the Env's hooks (Rand,
// Inject, Wall, Settle). It holds no pointer back to the node; the root
// package's node/replica_backend.go fills Deps.
//
// # Goroutines
//
// Start runs, each until its ctx ends and each counted in the caller's
// WaitGroup, in this order (the simulator replays runs only if the
// streams are split the same way: Start draws the anti-entropy loop's seed
// from Deps.Rand, then the maintain loop's; the verifier's is derived
// from the maintain loop's):
//   - the verifier loop (verify.go): at start, every committed entry that
//     lists this node is checked for presence; then the entries the
//     catalog hook queued, and a slice of the continuous checksum pass
//     every Tuning.VerifyEvery;
//   - the anti-entropy loop (antientropy.go): every AntiEntropyEvery,
//     jittered, one random live peer; the round starts with the exchange
//     of horizons and watermarks (horizon.go), then pulls and pushes the
//     buckets whose digests differ;
//   - the committer (push.go): applies the final entries Commit queued, in
//     batches, retrying until durable, then hands them to the push queues;
//   - the maintain loop (maintain.go, pending.go, horizon.go): every
//     MaintainEvery or when kicked (TriggerMaintenance, TriggerRebalance):
//     the watch for returned nodes (rebalance.go; it may ask every storage
//     node to rebalance), rebuild or rebalance, pending resolution, orphan
//     cleanup (paced by OrphanGrace; it asks the listed holders before
//     trimming a copy of a live entry), tombstone collection (every
//     CollectEvery);
//   - one push loop per peer (push.go), started on the first entry queued
//     for it, pushing in batches of at most pushBatchMax.
//
// # Ownership and concurrency
//
// The maintain loop alone owns cleanTable, lastOrphanScan, pendingSeen,
// returns and the horizon's lastCollect; the verifier loop alone owns its pass.
// Counters are atomics, readable from any goroutine (Stats,
// UnderReplicated, VerifyStatus, PushQueued). The push queues, the commit
// queue, the verifier's queue and the horizon's maps each have their own
// mutex; none is held across a network call or a catalog write. The
// catalog change hooks (the replicator's noteChanged, then the
// verifier's, registered by New in that order) run on whatever goroutine
// applied the change: they only read the store and membership and queue
// work. Commit, BroadcastSync, Adopt, HorizonInfo, Trigger*, Flush and
// RecordMembership may be called from any goroutine. Before a loop drains
// a queue it was woken for it calls Deps.Settle, so that in the simulator
// what it takes does not depend on goroutine scheduling.
//
// Every queue has a limit: commitQueueMax (Commit blocks beyond it),
// pushQueueMax per peer (dropped beyond it, anti-entropy repairs),
// verifyQueueMax (beyond it the next check is a full pass).
package replica
