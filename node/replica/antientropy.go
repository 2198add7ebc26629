package replica

import (
	"context"
	"time"

	"mailarray/node/env"
	"mailarray/node/fault"
)

// Anti-entropy: every Tuning.AntiEntropyEvery (jittered) the loop picks a
// random live peer and makes both catalogs agree bucket by bucket.

func (r *Replicator) antiEntropyLoop(ctx context.Context, rnd *env.Rand) {
	for {
		d := rnd.Jitter(r.tun().AntiEntropyEvery/2, 1.0)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		peers := r.OtherLive()
		if len(peers) == 0 {
			continue
		}
		peer := peers[rnd.IntN(len(peers))]
		if err := r.syncWith(ctx, peer); err != nil && ctx.Err() == nil {
			r.d.Log.Debug("node: anti-entropy round failed", "peer", peer, "err", err)
		}
	}
}

// OtherLive returns the other live members that serve the peer protocol,
// in Live's order (by name).
func (r *Replicator) OtherLive() []string {
	var out []string
	for _, m := range r.d.Members.Live() {
		if m.Name != r.d.Name && m.Tags[env.TagPeer] != "" {
			out = append(out, m.Name)
		}
	}
	return out
}

// syncWith makes this node and peer agree: buckets whose digests differ
// are pulled and pushed whole (merging is idempotent).
func (r *Replicator) syncWith(ctx context.Context, peer string) error {
	if err := r.d.Inject(fault.CatalogAntiEntropy, r.d.Name); err != nil {
		return err
	}
	r.aeRounds.Add(1)
	start := r.startMark()
	theirs, err := r.bucketsExchange(ctx, peer)
	if err != nil {
		return err
	}
	ours := r.d.Catalog.BucketDigests()
	for b := range ours {
		if ours[b] == theirs[b] {
			continue
		}
		remote, err := r.d.Peer.Bucket(ctx, peer, b)
		if err != nil {
			return err
		}
		changed, err := r.d.Catalog.Apply(remote...)
		if err != nil {
			return err
		}
		r.aeRepaired.Add(int64(len(changed)))
		if local := r.d.Catalog.Bucket(b); len(local) > 0 && r.d.Catalog.BucketDigest(b) != theirs[b] {
			if err := r.d.Peer.PushEntries(ctx, peer, local); err != nil {
				return err
			}
		}
	}
	r.noteSynced(peer, start)
	return nil
}
