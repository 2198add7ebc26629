package replica

import (
	"context"
	"fmt"
	"slices"

	"mailarray/node/catalog"
)

// Draining: a node leaving the array (node/drain.go) takes itself off its
// ring; rebuild then gives its messages R copies on the others (the first
// live holder of each repairs it, and this node hands on the copies no
// live ring node holds). These two calls tell the node when it may leave.

// DrainLeft lists the messages that still need this node: entries that
// are not deleted and still list it (pending ones wait for resolution,
// committed ones for rebuild), and committed messages of which it holds a
// copy while fewer than R live ring nodes are listed. R, not min(R, ring):
// a node leaves only when the rest of the array holds every message in
// full. Sorted, for a stable report.
func (r *Replicator) DrainLeft() []string {
	t := r.d.Members.Table()
	var left []string
	r.d.Catalog.ForEach(func(e *catalog.Entry) bool {
		if e.State != catalog.Deleted && e.HasLocation(r.d.Name) {
			left = append(left, e.ID)
		}
		return true
	})
	// Ids first, entries after: no catalog lock inside the store's
	// transaction.
	var held []string
	r.d.Store.CopyIDs(func(id string) bool {
		held = append(held, id)
		return true
	})
	for _, id := range held {
		e, ok := r.d.Catalog.Get(id)
		if ok && e.State == catalog.Committed && !e.HasLocation(r.d.Name) && countLive(t, &e) < r.d.Replicas {
			left = append(left, id)
		}
	}
	slices.Sort(left)
	return slices.Compact(left)
}

// DrainVerify checks the other nodes' stores, not only the catalog,
// before this node leaves: every committed message of which it holds a
// copy must be held by R live ring nodes that answer that they have it.
// It returns the number of messages checked, or the first shortfall.
func (r *Replicator) DrainVerify(ctx context.Context) (int, error) {
	t := r.d.Members.Table()
	var held []string
	r.d.Store.CopyIDs(func(id string) bool {
		held = append(held, id)
		return true
	})
	checked := 0
	for _, id := range held {
		e, ok := r.d.Catalog.Get(id)
		if !ok || e.State != catalog.Committed {
			continue // deleted, or unknown (pending resolution owns it)
		}
		have := 0
		for _, l := range LiveHolders(t, &e) {
			if l == r.d.Name {
				continue
			}
			has, err := r.d.Peer.HasCopy(ctx, l, id)
			if err != nil {
				return checked, fmt.Errorf("checking %s on %s: %w", id, l, err)
			}
			if has {
				have++
			}
		}
		if have < r.d.Replicas {
			return checked, fmt.Errorf("message %s: %d of %d copies found on the other nodes", id, have, r.d.Replicas)
		}
		checked++
	}
	return checked, nil
}
