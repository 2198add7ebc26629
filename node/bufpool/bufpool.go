// Package bufpool recycles the byte buffers of the per-message hot paths:
// the SMTP DATA buffer, the store's framed copies and the peer API's
// request bodies and stream frames. Each was a fresh buffer per message,
// garbage as soon as the message moved on, and together they were a large
// share of what the simulator allocated (its time follows its garbage
// collection).
//
// One pool serves them all: every buffer it makes holds at least MinSize
// bytes, so a buffer put back by one path fits the next taker on another,
// whatever the message.
package bufpool

import "sync"

const (
	// MinSize is the smallest capacity of a pooled buffer: a 4 KiB message
	// with its headers and framing fits, as the common mail does.
	MinSize = 16 << 10
	// MaxSize is the largest buffer kept for reuse; one grown past it by a
	// large message goes back to the garbage collector.
	MaxSize = 1 << 20
)

var pool sync.Pool

// Get returns an empty buffer with room for at least n bytes.
func Get(n int) []byte {
	if bp, _ := pool.Get().(*[]byte); bp != nil {
		if cap(*bp) >= n {
			return (*bp)[:0]
		}
		pool.Put(bp) // fits the next small taker
	}
	return make([]byte, 0, max(n, MinSize))
}

// Put returns b for reuse; nothing may use it afterwards. Buffers not made
// by Get are kept too when their size suits.
func Put(b []byte) {
	if cap(b) < MinSize || cap(b) > MaxSize {
		return
	}
	b = b[:0]
	pool.Put(&b)
}
