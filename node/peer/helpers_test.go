package peer

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/store"
)

// memHandler is a node held in memory: a real Handler for the server's
// tests, without a store or a catalog on disk.
type memHandler struct {
	mu         sync.Mutex
	copies     map[string][]byte
	corrupt    map[string]bool // GetCopy answers store.ErrCorrupt
	entries    map[string]catalog.Entry
	deleted    map[string]bool // StoreCopy refuses: a tombstone
	pushes     int
	locks      map[string]string
	lockTTLs   map[string]time.Duration // the lease last granted per mailbox
	horizon    Horizon                  // answered by ExchangeHorizon
	heard      Horizon                  // the last caller's
	digests    [catalog.Buckets]uint64
	rebalanced int
}

var _ Handler = (*memHandler)(nil)

func newMemHandler() *memHandler {
	return &memHandler{copies: map[string][]byte{}, corrupt: map[string]bool{}, entries: map[string]catalog.Entry{},
		deleted: map[string]bool{}, locks: map[string]string{}, lockTTLs: map[string]time.Duration{}}
}

func (h *memHandler) StoreCopy(e catalog.Entry, data []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.deleted[e.ID] {
		return ErrCopyDeleted
	}
	h.copies[e.ID] = append([]byte(nil), data...) // data is reused after the call
	h.entries[e.ID] = e
	return nil
}

func (h *memHandler) GetCopies(ids []string, fn func(i int, data []byte, err error) bool) error {
	for i, id := range ids {
		data, err := h.GetCopy(id)
		if !fn(i, data, err) {
			break
		}
	}
	return nil
}

func (h *memHandler) GetCopy(id string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.corrupt[id] {
		return nil, store.ErrCorrupt
	}
	b, ok := h.copies[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	return b, nil
}

func (h *memHandler) HasCopy(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.copies[id]
	return ok
}

func (h *memHandler) ApplyEntries(entries []catalog.Entry) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pushes++
	for _, e := range entries {
		h.entries[e.ID] = e
	}
	return nil
}

func (h *memHandler) Entry(id string) (catalog.Entry, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.entries[id]
	return e, ok
}

func (h *memHandler) ExchangeHorizon(caller Horizon) Horizon {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.heard = caller
	return h.horizon
}

func (h *memHandler) BucketDigests() [catalog.Buckets]uint64 { return h.digests }

func (h *memHandler) Bucket(b int) []catalog.Entry {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []catalog.Entry
	for _, e := range h.entries {
		if catalog.BucketOf(e.ID) == b {
			out = append(out, e)
		}
	}
	return out
}

func (h *memHandler) Lock(mailbox, owner string, ttl time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if o, ok := h.locks[mailbox]; ok && o != owner {
		return false
	}
	h.locks[mailbox] = owner
	h.lockTTLs[mailbox] = ttl
	return true
}

func (h *memHandler) Unlock(mailbox, owner string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.locks[mailbox] == owner {
		delete(h.locks, mailbox)
	}
}

func (h *memHandler) UIDsAbove(mailbox string, since uint32) (uint32, []catalog.Entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var top uint32
	var out []catalog.Entry
	for _, e := range h.entries {
		if e.Mailbox != mailbox {
			continue
		}
		top = max(top, e.UID)
		if e.UID > since {
			out = append(out, e)
		}
	}
	return top, out
}

func (h *memHandler) Abort(id string) AbortReply {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.entries[id]; ok {
		return AbortReply{State: AbortCommitted, Boot: "b1"}
	}
	return AbortReply{State: AbortUnknown, Boot: "b1"}
}

func (h *memHandler) Load() any   { return map[string]int{"sessions": 3} }
func (h *memHandler) Mirror() any { return map[string]int{} }
func (h *memHandler) Status() any { return map[string]string{"node": "mem"} }
func (h *memHandler) Drain(start bool) (any, error) {
	if start {
		return nil, ErrDrainRefused
	}
	return map[string]string{"state": ""}, nil
}
func (h *memHandler) Rebalance() {
	h.mu.Lock()
	h.rebalanced++
	h.mu.Unlock()
}

// resolver maps node names to addresses; safe for concurrent use.
type resolver struct {
	mu    sync.Mutex
	addrs map[string]string
}

func (r *resolver) set(node, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.addrs == nil {
		r.addrs = map[string]string{}
	}
	r.addrs[node] = addr
}

func (r *resolver) PeerAddr(node string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrs[node]
}

// serve starts a Server of h over loopback and returns its address.
func serve(t *testing.T, cfg Config, h Handler) string {
	t.Helper()
	l, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := NewServer(cfg, h)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		require.NoError(t, <-done)
	})
	return l.Addr().String()
}

// newClient returns a client of cfg (Name "c") that finds its peers in r.
func newClient(t *testing.T, cfg Config, r *resolver) *Client {
	t.Helper()
	cfg.Name = "c"
	cfg.Resolver = r
	cfg.Dial = (&env.RealNet{}).DialContext
	c, err := NewClient(cfg)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// pair is a client and a server of h named "s".
func pair(t *testing.T, cfg Config, h Handler) (*Client, string) {
	addr := serve(t, cfg, h)
	r := &resolver{}
	r.set("s", addr)
	return newClient(t, cfg, r), addr
}

// pendingEntry is a pending entry of data.
func pendingEntry(id string, data []byte) catalog.Entry {
	return catalog.Entry{ID: id, Mailbox: "alice@example.com", Size: int64(len(data)), Sum: store.Checksum(data), State: catalog.Pending}
}
