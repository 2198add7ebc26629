package replica

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/fault"
)

// The push side: the asynchronous committer and the per-peer push queues.

// commitQueueMax bounds entries waiting for their asynchronous commit;
// beyond it commit blocks the caller (backpressure on SMTP).
const commitQueueMax = 65536

// Commit queues final entries (committed or deleted) to be applied
// locally and pushed to every node, batched by the committer goroutine.
func (r *Replicator) Commit(entries []catalog.Entry) {
	r.commitMu.Lock()
	for len(r.commits) >= commitQueueMax {
		r.commitIdle.Wait()
	}
	r.commits = append(r.commits, entries...)
	r.commitMu.Unlock()
	select {
	case r.commitWake <- struct{}{}:
	default:
	}
}

func (r *Replicator) commitLoop(ctx context.Context) {
	for {
		// A stopped node's loop ends here, not in the select below, which
		// would pick at random between its ctx and a pending wake (and
		// drain once more on the wake: one more settle, a simulated run
		// that does not replay after a crash).
		if ctx.Err() != nil {
			r.drainCommits()
			return
		}
		select {
		case <-ctx.Done():
			r.drainCommits()
			return
		case <-r.commitWake:
		}
		r.drainCommits()
	}
}

// drainCommits applies every queued commit; on a local store failure the
// entries stay pending here and are resolved like a crashed listener's.
func (r *Replicator) drainCommits() {
	for {
		// Each take, the last (empty) one included, sees every commit of
		// the instant (see Deps.Settle).
		r.d.Settle("commit")
		r.commitMu.Lock()
		batch := r.commits
		r.commits = nil
		r.committing = len(batch) > 0
		r.commitIdle.Broadcast()
		r.commitMu.Unlock()
		if len(batch) == 0 {
			return
		}
		// The decision (committed, or deleted for a refused transaction)
		// must become durable here: a lost abort would let the holders'
		// pending resolution make a refused message visible. Retry with
		// backoff until it lands or the node stops.
		for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
			err := r.d.Inject(fault.CatalogCommit, r.d.Name)
			if err == nil {
				_, err = r.d.Catalog.Apply(batch...)
			}
			if err == nil {
				break
			}
			r.d.Log.Warn("node: commit not applied locally; retrying", "entries", len(batch), "err", err)
			if r.ctx == nil || r.ctx.Err() != nil {
				break
			}
			select {
			case <-r.ctx.Done():
			case <-time.After(wait):
			}
		}
		r.broadcast(batch)
		r.commitMu.Lock()
		r.committing = false
		r.commitIdle.Broadcast()
		r.commitMu.Unlock()
	}
}

// CommitsIdle reports whether no commit is queued or being applied.
func (r *Replicator) CommitsIdle() bool {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	return len(r.commits) == 0 && !r.committing
}

// broadcast queues entries for every other live member.
func (r *Replicator) broadcast(entries []catalog.Entry) {
	r.mu.Lock()
	ctx := r.ctx
	r.mu.Unlock()
	if ctx == nil || ctx.Err() != nil {
		return
	}
	for _, m := range r.d.Members.Live() {
		if m.Name == r.d.Name || m.Tags[env.TagPeer] == "" {
			continue
		}
		q := r.queue(m.Name)
		q.mu.Lock()
		if len(q.entries)+len(entries) > pushQueueMax {
			r.pushDropped.Add(int64(len(entries)))
		} else {
			q.entries = append(q.entries, entries...)
		}
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// BroadcastSync pushes entries to every other live member and waits.
// Failures are returned but the entries still reach those members later by
// anti-entropy.
func (r *Replicator) BroadcastSync(ctx context.Context, entries []catalog.Entry) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, m := range r.d.Members.Live() {
		if m.Name == r.d.Name || m.Tags[env.TagPeer] == "" {
			continue
		}
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			if err := r.d.Peer.PushEntries(ctx, name, entries); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(m.Name)
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *Replicator) queue(peer string) *pushQueue {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queues[peer]
	if q == nil {
		q = &pushQueue{wake: make(chan struct{}, 1)}
		r.queues[peer] = q
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.pushLoop(r.ctx, peer, q)
		}()
	}
	return q
}

func (r *Replicator) pushLoop(ctx context.Context, peer string, q *pushQueue) {
	who := "push " + peer
	for {
		if ctx.Err() != nil { // not in the select: see commitLoop
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		for {
			r.d.Settle(who) // see drainCommits
			q.mu.Lock()
			k := min(len(q.entries), pushBatchMax)
			batch := slices.Clone(q.entries[:k])
			q.entries = q.entries[k:]
			if len(q.entries) == 0 {
				q.entries = nil
			}
			q.mu.Unlock()
			if k == 0 {
				break
			}
			if !r.d.Members.Alive(peer) {
				r.pushDropped.Add(int64(k))
				continue
			}
			if err := r.d.Peer.PushEntries(ctx, peer, batch); err != nil {
				r.pushDropped.Add(int64(k))
				r.d.Log.Debug("node: push failed; anti-entropy will repair", "peer", peer, "entries", k, "err", err)
			}
		}
	}
}

// Flush waits (until ctx) for push queues to drain: a node shutting down
// hands its last changes to its peers.
func (r *Replicator) Flush(ctx context.Context) {
	for {
		pending := 0
		if !r.CommitsIdle() {
			pending++
		}
		r.mu.Lock()
		for _, q := range r.queues {
			q.mu.Lock()
			pending += len(q.entries)
			q.mu.Unlock()
		}
		r.mu.Unlock()
		if pending == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}
