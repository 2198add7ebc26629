package replica

import "context"

// Hooks for the root package's cluster tests (node/verify_test.go,
// node/horizon_test.go), which drive one replica's steps by hand inside a
// running array. Production code does not call them.

// AntiEntropyRounds counts the anti-entropy rounds started.
func (r *Replicator) AntiEntropyRounds() int64 { return r.aeRounds.Load() }

// VerifyQueued runs the verifier's check of the entries its catalog hook
// queued, as its loop does when woken.
func (r *Replicator) VerifyQueued(ctx context.Context) { r.verify.checkQueued(ctx) }

// VerifySlice runs one slice of the verifier's continuous pass.
func (r *Replicator) VerifySlice(ctx context.Context) { r.verify.checkSome(ctx) }

// VerifyAll checks every copy the catalog lists on this node.
func (r *Replicator) VerifyAll(ctx context.Context) { r.verify.checkAll(ctx) }

// Recheck queues ids for the verifier as orphan cleanup does.
func (r *Replicator) Recheck(ids []string) { r.verify.recheck(ids) }

// TakeVerifyQueue empties the verifier's queue and returns what it held.
func (r *Replicator) TakeVerifyQueue() map[string]struct{} {
	v := r.verify
	v.mu.Lock()
	defer v.mu.Unlock()
	q := v.queue
	v.queue = map[string]struct{}{}
	return q
}
