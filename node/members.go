package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"mailarray/node/env"
	"mailarray/node/mirror"
)

// memberView caches membership and the mirroring table derived from it.
// Events refresh it at once; a periodic poll makes it truthful even if an
// event was dropped (membership events are hints, Members is the truth).
type memberView struct {
	m     env.Membership
	r     int
	local string

	mu sync.RWMutex
	// leaving takes this node off its own ring at once when it starts to
	// drain, before its own tag comes back through membership.
	leaving bool
	members []env.Member
	byName  map[string]env.Member
	table   mirror.Table
	changes uint32 // counts table changes: the DNS SOA serial
}

// memberPoll is how often the view re-reads membership without an event.
const memberPoll = time.Second

func newMemberView(m env.Membership, r int) *memberView {
	v := &memberView{m: m, r: r, local: m.Local().Name}
	v.refresh()
	return v
}

// start follows membership until ctx ends; onChange runs after each change
// of the live set, from the view's goroutine.
func (v *memberView) start(ctx context.Context, wg *sync.WaitGroup, onChange func(ev *env.Event)) {
	ch, unsub := v.m.Subscribe()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer unsub()
		t := time.NewTicker(memberPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-ch:
				if !ok {
					return
				}
				if v.refresh() || ev.Kind != env.EventUpdate {
					onChange(&ev)
				}
			case <-t.C:
				if v.refresh() {
					onChange(nil)
				}
			}
		}
	}()
}

// refresh re-reads membership and reports whether the mirroring table
// changed.
func (v *memberView) refresh() bool {
	ms := v.m.Members()
	by := make(map[string]env.Member, len(ms))
	for _, m := range ms {
		by[m.Name] = m
	}
	// Another node joins the ring only once it advertises its peer
	// address: before that nothing can be stored on it. A draining node
	// leaves it (drain.go).
	v.mu.Lock()
	defer v.mu.Unlock()
	var ring []env.Member
	for _, m := range ms {
		if m.Tags[env.TagDraining] == "1" || (m.Name == v.local && v.leaving) {
			continue
		}
		if m.Name == v.local || m.Tags[env.TagPeer] != "" {
			ring = append(ring, m)
		}
	}
	t := mirror.Build(ring, v.r)
	changed := t.Version != v.table.Version
	v.members, v.byName, v.table = ms, by, t
	if changed {
		v.changes++
	}
	return changed
}

// setLeaving takes this node off its own ring (it is draining) and
// reports whether the table changed.
func (v *memberView) setLeaving() bool {
	v.mu.Lock()
	v.leaving = true
	v.mu.Unlock()
	return v.refresh()
}

func (v *memberView) Table() mirror.Table {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.table
}

func (v *memberView) Serial() uint32 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.changes
}

func (v *memberView) Members() []env.Member {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.members
}

func (v *memberView) Get(name string) (env.Member, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	m, ok := v.byName[name]
	return m, ok
}

// Alive reports whether name is a live member.
func (v *memberView) Alive(name string) bool {
	m, ok := v.Get(name)
	return ok && m.Status == env.StatusAlive
}

// Gone reports whether membership declared name failed or left. A name it
// does not know is not gone: a node that just joined may ask for a lease
// before this node hears of it.
func (v *memberView) Gone(name string) bool {
	m, ok := v.Get(name)
	return ok && (m.Status == env.StatusFailed || m.Status == env.StatusLeft)
}

// GoneOrRestarted is Gone, or the member advertises a boot id other than
// boot (it restarted since; "" boot: not known, only Gone counts).
func (v *memberView) GoneOrRestarted(name, boot string) bool {
	m, ok := v.Get(name)
	if !ok {
		return false
	}
	if m.Status == env.StatusFailed || m.Status == env.StatusLeft {
		return true
	}
	cur := m.Tags[env.TagBoot]
	return boot != "" && cur != "" && cur != boot
}

// PeerAddr is the peer API address of a live member, or "".
func (v *memberView) PeerAddr(name string) string {
	m, ok := v.Get(name)
	if !ok || m.Status != env.StatusAlive {
		return ""
	}
	return m.Tags[env.TagPeer]
}

// Live returns the live members, sorted by name.
func (v *memberView) Live() []env.Member {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]env.Member, 0, len(v.members))
	for _, m := range v.members {
		if m.Status == env.StatusAlive {
			out = append(out, m)
		}
	}
	return out
}

// onMembership reacts to membership changes: reads already avoid dead
// nodes (the view is current); rebuild starts at once; a joining node gets
// an immediate anti-entropy round.
func (n *Node) onMembership(ev *env.Event) {
	if ev != nil {
		n.log.Info("node: membership", "event", ev.Kind.String(), "member", ev.Member.Name, "status", ev.Member.Status.String())
	}
	t := n.members.Table()
	n.log.Info("node: mirroring table", "version", fmt.Sprintf("%016x", t.Version), "ring", t.Ring)
	if k := n.locks.dropGone(); k > 0 {
		n.log.Info("node: released the mailbox leases of failed or departed nodes", "leases", k)
	}
	n.repl.TriggerMaintenance()
	n.ready.changed()
}
