// Package intern keeps one shared copy of strings that repeat across many
// long-lived values: a node holds every catalog entry of the array, and the
// mailbox, node names, flags and pipeline trace lines of most entries are
// the same few values. It is bounded (MaxStrings values of at most
// MaxBytes bytes each): past that, strings are returned as they are.
//
// unique.Make was tried first; its canonical copies are held weakly, so
// after each garbage collection the next value made a new copy and sharing
// only lasted one cycle.
package intern

import "sync"

// Bounds of the table.
const (
	MaxStrings = 1 << 16
	MaxBytes   = 256
)

var (
	mu    sync.RWMutex
	table = map[string]string{}
)

// Bytes returns b as a string, shared with earlier equal values when it is
// in (or fits in) the table. A hit allocates nothing.
func Bytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > MaxBytes {
		return string(b)
	}
	mu.RLock()
	s, ok := table[string(b)] // no allocation for the lookup
	mu.RUnlock()
	if ok {
		return s
	}
	return add(string(b))
}

// String returns s, or the shared copy of an equal value.
func String(s string) string {
	if s == "" || len(s) > MaxBytes {
		return s
	}
	mu.RLock()
	t, ok := table[s]
	mu.RUnlock()
	if ok {
		return t
	}
	return add(s)
}

func add(s string) string {
	mu.Lock()
	defer mu.Unlock()
	if t, ok := table[s]; ok {
		return t
	}
	if len(table) < MaxStrings {
		table[s] = s
	}
	return s
}
