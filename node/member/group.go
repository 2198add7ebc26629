package member

import (
	"maps"
	"slices"
	"strings"
	"sync"

	"mailarray/node/env"
)

// Group is a membership shared by several in-process nodes: each node gets
// its own View, and a change made through the Group (Fail, Revive, Set) is
// seen by every view at once. In-process multi-node tests use it where
// serf's failure detection would only add seconds of waiting; the
// simulator models detection delays itself.
type Group struct {
	mu      sync.Mutex
	members map[string]env.Member
	views   map[string]*groupView
}

// NewGroup returns an empty group.
func NewGroup() *Group {
	return &Group{members: map[string]env.Member{}, views: map[string]*groupView{}}
}

// View adds local to the group (alive) and returns its view.
func (g *Group) View(local env.Member) env.Membership {
	local = cloneMember(local)
	local.Status = env.StatusAlive
	g.mu.Lock()
	v := &groupView{g: g, name: local.Name}
	g.views[local.Name] = v
	g.mu.Unlock()
	g.Set(local)
	return v
}

// Set adds or replaces a member and tells every view.
func (g *Group) Set(m env.Member) {
	g.mu.Lock()
	old, had := g.members[m.Name]
	m = cloneMember(m)
	g.members[m.Name] = m
	views := slices.Collect(maps.Values(g.views))
	g.mu.Unlock()
	kind := setEvent(old, had, m)
	for _, v := range views {
		v.emit(env.Event{Kind: kind, Member: cloneMember(m)})
	}
}

// Fail marks name failed, as failure detection would.
func (g *Group) Fail(name string) { g.setStatus(name, env.StatusFailed) }

// Revive marks name alive again.
func (g *Group) Revive(name string) { g.setStatus(name, env.StatusAlive) }

func (g *Group) setStatus(name string, st env.Status) {
	g.mu.Lock()
	m, ok := g.members[name]
	g.mu.Unlock()
	if ok {
		m.Status = st
		g.Set(m)
	}
}

func (g *Group) list() []env.Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]env.Member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, cloneMember(m))
	}
	slices.SortFunc(out, func(a, b env.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

type groupView struct {
	g      *Group
	name   string
	events fanout
}

var _ env.Membership = (*groupView)(nil)

func (v *groupView) Local() env.Member {
	v.g.mu.Lock()
	defer v.g.mu.Unlock()
	return cloneMember(v.g.members[v.name])
}

func (v *groupView) Members() []env.Member { return v.g.list() }

func (v *groupView) Subscribe() (<-chan env.Event, func()) { return v.events.subscribe() }

func (v *groupView) emit(ev env.Event) { v.events.emit(ev) }

func (v *groupView) SetTags(tags map[string]string) error {
	m := v.Local()
	m.Tags = maps.Clone(tags)
	v.g.Set(m)
	return nil
}

func (v *groupView) Leave() error { v.g.setStatus(v.name, env.StatusLeft); return nil }

func (v *groupView) Close() error {
	v.events.close()
	return nil
}
