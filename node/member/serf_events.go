package member

import (
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/serf/serf"

	"mailarray/node/env"
)

// Events of Serf, and why they are delivered the way they are.
//
// Serf writes member events into one channel while holding its member
// lock: a reader that blocks stalls gossip and failure detection. So one
// goroutine (fanOut) owns that channel and never blocks: it appends each
// event to every subscriber's queue and wakes the subscriber's pump, which
// feeds the subscriber's buffered channel at the subscriber's pace.
//
// A queue is bounded (SerfConfig.SubscriberQueueMax). When a subscriber
// falls that far behind, its queue is replaced by the current state of
// every member (one event each: join for alive, fail for failed, leave for
// left) followed by the event that overflowed, and the overflow is logged.
// The subscriber then loses intermediate history but not the outcome: the
// last event it sees about each member states that member's present
// status. A member reaped meanwhile may vanish without its own event.
// Events are hints; Members is the truth, and consumers poll it as well.

// subscriber is one Subscribe: a bounded queue drained into out by pump.
type subscriber struct {
	out    chan env.Event
	wake   chan struct{} // capacity 1: "pending is not empty"
	stop   chan struct{} // closed by end
	exited chan struct{} // closed when pump returned (and closed out)
	once   sync.Once

	mu      sync.Mutex
	pending []env.Event
}

// Subscribe returns member events from now on, in serf's order, and a
// function that ends the subscription and closes the channel (also done by
// Close). See the comment at the top of this file for what a slow
// subscriber gets.
func (s *Serf) Subscribe() (<-chan env.Event, func()) {
	sub := &subscriber{
		out:    make(chan env.Event, subscriberBuffer),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(sub.out)
		return sub.out, func() {}
	}
	id := s.nextSub
	s.nextSub++
	s.subs[id] = sub
	go sub.pump()
	return sub.out, func() {
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
		sub.end()
	}
}

// fanOut is the only reader of serf's event channel.
func (s *Serf) fanOut(eventCh <-chan serf.Event) {
	defer close(s.fanDone)
	for {
		select {
		case e := <-eventCh:
			s.dispatch(e)
		case <-s.stop:
			return
		}
	}
}

// dispatch converts one serf event and queues it for every subscriber.
func (s *Serf) dispatch(e serf.Event) {
	me, ok := e.(serf.MemberEvent)
	if !ok {
		return // user events and queries: the array sends none
	}
	kind, ok := eventKind(me.Type)
	if !ok {
		return
	}
	for _, m := range me.Members {
		ev := env.Event{Kind: kind, Member: toEnvMember(m)}
		if me.Type == serf.EventMemberReap {
			delete(s.view, m.Name)
		} else {
			s.view[m.Name] = cloneMember(ev.Member)
		}
		s.log.Info("member: "+me.Type.String(), "member", m.Name, "addr", m.Addr.String(), "status", ev.Member.Status.String())
		s.mu.Lock()
		for _, sub := range s.subs {
			if !sub.push(cloneEvent(ev), s.cfg.SubscriberQueueMax, s.snapshotEvents) {
				s.resyncs.Add(1)
				s.log.Warn("member: subscriber fell behind, events replaced by current state", "queue_max", s.cfg.SubscriberQueueMax)
			}
		}
		s.mu.Unlock()
	}
}

// eventKind maps serf's member event types. A reap (serf forgets a failed
// or left member after ReconnectTimeout/TombstoneTimeout) is a leave: the
// member is gone for good; its Status says whether it had failed or left.
func eventKind(t serf.EventType) (env.EventKind, bool) {
	switch t {
	case serf.EventMemberJoin:
		return env.EventJoin, true
	case serf.EventMemberLeave, serf.EventMemberReap:
		return env.EventLeave, true
	case serf.EventMemberFailed:
		return env.EventFail, true
	case serf.EventMemberUpdate:
		return env.EventUpdate, true
	}
	return 0, false
}

// snapshotEvents states every member's status as of the events fanOut has
// handled, one event each, sorted by name. It reads fanOut's own view, not
// serf's (serf may hold its member lock while waiting for fanOut to read).
func (s *Serf) snapshotEvents() []env.Event {
	names := slices.Sorted(maps.Keys(s.view))
	evs := make([]env.Event, 0, len(names))
	for _, name := range names {
		m := s.view[name]
		kind := env.EventJoin
		switch m.Status {
		case env.StatusFailed:
			kind = env.EventFail
		case env.StatusLeft:
			kind = env.EventLeave
		}
		evs = append(evs, env.Event{Kind: kind, Member: cloneMember(m)})
	}
	return evs
}

// push queues ev; if the queue already holds max events it is replaced by
// snapshot() followed by ev, and push reports false. It never blocks on the
// subscriber.
func (sub *subscriber) push(ev env.Event, max int, snapshot func() []env.Event) bool {
	sub.mu.Lock()
	ok := len(sub.pending) < max
	if ok {
		sub.pending = append(sub.pending, ev)
	} else {
		sub.pending = append(snapshot(), ev)
	}
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default: // already signalled
	}
	return ok
}

// pump moves queued events into out until end; it is out's only sender
// and closes it.
func (sub *subscriber) pump() {
	defer close(sub.exited)
	defer close(sub.out)
	for {
		sub.mu.Lock()
		if len(sub.pending) == 0 {
			sub.pending = nil // let a large backlog's array go
			sub.mu.Unlock()
			select {
			case <-sub.wake:
				continue
			case <-sub.stop:
				return
			}
		}
		ev := sub.pending[0]
		sub.pending[0] = env.Event{}
		sub.pending = sub.pending[1:]
		sub.mu.Unlock()
		select {
		case sub.out <- ev:
		case <-sub.stop:
			return
		}
	}
}

// end stops pump and waits until out is closed. Idempotent.
func (sub *subscriber) end() {
	sub.once.Do(func() { close(sub.stop) })
	<-sub.exited
}

// cloneEvent gives each subscriber its own Tags and Addr.
func cloneEvent(ev env.Event) env.Event {
	ev.Member = cloneMember(ev.Member)
	return ev
}
