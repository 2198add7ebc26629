package member

import (
	"sync"

	"mailarray/node/env"
)

// fanout hands membership events to subscribers. Sending never blocks: a
// subscriber whose buffer is full misses the event and, like every
// subscriber, relies on polling Members (events are hints, Members is the
// truth). Safe for concurrent use.
type fanout struct {
	mu     sync.Mutex
	subs   map[int]chan env.Event
	next   int
	closed bool
}

func (f *fanout) subscribe() (<-chan env.Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan env.Event, subscriberBuffer)
	if f.closed {
		close(ch)
		return ch, func() {}
	}
	if f.subs == nil {
		f.subs = map[int]chan env.Event{}
	}
	id := f.next
	f.next++
	f.subs[id] = ch
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if c, ok := f.subs[id]; ok {
				delete(f.subs, id)
				close(c)
			}
		})
	}
}

func (f *fanout) emit(ev env.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.subs {
		select {
		case c <- ev:
		default:
		}
	}
}

// close ends every subscription; later ones get a closed channel.
func (f *fanout) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	for id, c := range f.subs {
		delete(f.subs, id)
		close(c)
	}
}
