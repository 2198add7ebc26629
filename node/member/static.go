package member

import (
	"maps"
	"slices"
	"strings"
	"sync"

	"mailarray/node/env"
)

// Static is a membership whose members change only when told to (Set,
// SetStatus). A lone node uses it with itself as the only member; tests use
// it to drive membership changes by hand.
type Static struct {
	mu      sync.Mutex
	local   string
	members map[string]env.Member
	events  fanout
}

var _ env.Membership = (*Static)(nil)

// subscriberBuffer bounds each subscriber's queue; a subscriber that falls
// further behind misses events and relies on polling Members.
const subscriberBuffer = 256

// NewStatic returns a membership holding only local.
func NewStatic(local env.Member) *Static {
	local.Status = env.StatusAlive
	local.Tags = maps.Clone(local.Tags)
	return &Static{local: local.Name, members: map[string]env.Member{local.Name: local}}
}

func (s *Static) Local() env.Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneMember(s.members[s.local])
}

func (s *Static) Members() []env.Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]env.Member, 0, len(s.members))
	for _, m := range s.members {
		out = append(out, cloneMember(m))
	}
	slices.SortFunc(out, func(a, b env.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (s *Static) Subscribe() (<-chan env.Event, func()) { return s.events.subscribe() }

func (s *Static) SetTags(tags map[string]string) error {
	s.mu.Lock()
	m := s.members[s.local]
	m.Tags = maps.Clone(tags)
	s.members[s.local] = m
	s.mu.Unlock()
	s.emit(env.Event{Kind: env.EventUpdate, Member: cloneMember(m)})
	return nil
}

// Set adds or replaces a member and emits join (new or revived) or update.
func (s *Static) Set(m env.Member) {
	s.mu.Lock()
	old, had := s.members[m.Name]
	m = cloneMember(m)
	s.members[m.Name] = m
	s.mu.Unlock()
	kind := setEvent(old, had, m)
	s.emit(env.Event{Kind: kind, Member: cloneMember(m)})
}

// SetStatus changes a known member's status and emits the matching event.
func (s *Static) SetStatus(name string, st env.Status) {
	s.mu.Lock()
	m, ok := s.members[name]
	s.mu.Unlock()
	if !ok {
		return
	}
	m.Status = st
	s.Set(m)
}

func (s *Static) Leave() error { return nil }

func (s *Static) Close() error {
	s.events.close()
	return nil
}

func (s *Static) emit(ev env.Event) { s.events.emit(ev) }

// setEvent is the event that setting m tells, old being the member it
// replaces (had: there was one): fail or leave by its status, join when it
// is new or comes back alive, update otherwise.
func setEvent(old env.Member, had bool, m env.Member) env.EventKind {
	switch {
	case m.Status == env.StatusFailed:
		return env.EventFail
	case m.Status == env.StatusLeft:
		return env.EventLeave
	case !had || old.Status != env.StatusAlive:
		return env.EventJoin
	}
	return env.EventUpdate
}

func cloneMember(m env.Member) env.Member {
	m.Tags = maps.Clone(m.Tags)
	m.Addr = slices.Clone(m.Addr)
	return m
}
