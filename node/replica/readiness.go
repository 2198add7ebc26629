package replica

import "context"

// The two entry points the node's readiness (node/ready.go) uses.

// SyncWith runs one anti-entropy round with peer now.
func (r *Replicator) SyncWith(ctx context.Context, peer string) error { return r.syncWith(ctx, peer) }

// SyncedSinceStart reports whether an anti-entropy round with some peer
// completed since the node started.
func (r *Replicator) SyncedSinceStart() bool {
	r.hz.init()
	r.hz.mu.Lock()
	defer r.hz.mu.Unlock()
	return len(r.hz.synced) > 0
}
