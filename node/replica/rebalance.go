package replica

import (
	"context"
	"slices"
	"time"

	"mailarray/node/env"
	"mailarray/node/mirror"
)

// Rebalance after a return. While a storage node is away, rebuild copies
// its messages onto the others and lists them there; when it comes back
// its old copies are orphans (trimmed by CleanOrphans) and it holds only
// what arrived since, so the spread the placement gave is lost until the
// array rebalances. A node returns when it enters the ring again after
// leaving it (failed, left, partitioned off), or when its boot id changes
// (it restarted, perhaps faster than failure detection). Once membership
// has been still for Tuning.RebalanceAfterReturn — a node that flaps, or
// several coming back one by one, cause one rebalance, not one each — the
// lowest-named live storage node asks every storage node to rebalance, as
// `mailarray rebalance` does. Every node follows membership alike, so
// exactly one of them drives, and each entry is still moved by its first
// live holder only (rebuild). The moves go at rebuild's pace
// (RebuildPerScan a pass) and a copy left unlisted is trimmed only once
// R listed holders confirmed theirs from their stores (CleanOrphans).

// returnWatch is what the maintain loop remembers of membership for the
// rebalance after a return (maintain loop only).
type returnWatch struct {
	// boot is the boot tag of each storage node as last seen in the ring;
	// a node that left the ring keeps its entry, with away set.
	boot map[string]string
	away map[string]bool
	// ring is the ring version last seen; changed when it or a boot tag
	// last changed.
	ring    uint64
	changed time.Time
	// returned names the nodes that returned since the last rebalance
	// this watch let happen (for the log).
	returned []string
}

// watchReturns notes membership changes and returns, and once a return
// is followed by Tuning.RebalanceAfterReturn without a change, drives
// the array's rebalance if this node is the lowest-named live storage
// node. Called by the maintain loop before each rebuild scan, so the
// rebalance starts within MaintainEvery of the settle period's end.
func (r *Replicator) watchReturns(ctx context.Context) {
	settle := r.tun().RebalanceAfterReturn
	if settle <= 0 {
		return
	}
	t := r.d.Members.Table()
	w := &r.returns
	if w.boot == nil {
		w.boot, w.away = map[string]string{}, map[string]bool{}
	}
	now := time.Now()
	changed := t.Version != w.ring
	// The ring is sorted: the order of returned is fixed.
	for _, name := range t.Ring {
		var boot string
		if m, ok := r.d.Members.Get(name); ok {
			boot = m.Tags[env.TagBoot]
		}
		old, known := w.boot[name]
		switch {
		case !known:
			// A node this one never saw: a new node (growth, which
			// `mailarray rebalance` handles), or one of the array as
			// this node found it at its own start.
		case w.away[name]:
			w.returned = append(w.returned, name)
		case boot != old && boot != "" && old != "":
			w.returned = append(w.returned, name)
			changed = true
		}
		if boot != "" {
			// A restarting node may be seen without its tag for a while
			// (announced before it advertised): remember the last boot.
			w.boot[name] = boot
		} else if !known {
			w.boot[name] = ""
		}
		w.away[name] = false
	}
	for name := range w.boot {
		if !inRing(t, name) {
			w.away[name] = true
		}
	}
	if changed {
		w.ring, w.changed = t.Version, now
	}
	if len(w.returned) == 0 || now.Sub(w.changed) < settle {
		return
	}
	returned := w.returned
	w.returned = nil
	if len(t.Ring) == 0 || t.Ring[0] != r.d.Name {
		return // the lowest-named storage node drives
	}
	r.autoRebalances.Add(1)
	r.d.Log.Info("node: rebalancing after a node returned", "returned", returned, "stable_for", now.Sub(w.changed).Round(time.Millisecond), "ring", t.Ring)
	r.rebalance.Store(true)
	for _, name := range t.Ring {
		if name == r.d.Name {
			continue
		}
		if err := r.d.Peer.Rebalance(ctx, name); err != nil {
			// Its copies stay where they are until the next return or
			// `mailarray rebalance`: nothing is lost, the spread is off.
			r.d.Log.Warn("node: asking a node to rebalance failed", "node", name, "err", err)
		}
	}
}

func inRing(t mirror.Table, name string) bool {
	_, ok := slices.BinarySearch(t.Ring, name)
	return ok
}
