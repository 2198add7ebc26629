package imap

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/store"
)

// memBackend is a Backend over a real catalog (in a temporary store) and
// message bodies in memory: one node holding every copy, as a
// one-node array would. Faults are data: set inUse.
type memBackend struct {
	cat *catalog.Catalog

	mu     sync.Mutex
	users  map[string]string // address -> password
	bodies map[string][]byte // by entry id
	next   int               // for ids
	inUse  bool              // Expunge answers ErrInUse (a POP3 session holds the mailbox)
	// hold, when set, keeps AssignUIDs waiting until it is closed (another
	// node holds the UID lease); assigning is told each time one waits.
	hold      chan struct{}
	assigning chan struct{}
	assign    sync.Mutex // one UID assignment at a time, as the node's lease
}

var (
	_ Backend = (*memBackend)(nil)
	_ Mailbox = (*memMailbox)(nil)
)

func newMemBackend(t testing.TB) *memBackend {
	t.Helper()
	st, err := store.Open(store.Options{Path: filepath.Join(t.TempDir(), "store.db"), NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	cat, err := catalog.Open(st, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return &memBackend{cat: cat, users: map[string]string{}, bodies: map[string][]byte{}, assigning: make(chan struct{}, 1)}
}

func (b *memBackend) addUser(address, pass string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.users[address] = pass
}

// deliver commits a message to mailbox, without a UID, as SMTP delivery
// does, and returns its id.
func (b *memBackend) deliver(t testing.TB, mailbox string, data []byte) string {
	t.Helper()
	b.mu.Lock()
	b.next++
	id := fmt.Sprintf("m%04d", b.next)
	b.bodies[id] = data
	b.mu.Unlock()
	e := catalog.Entry{ID: id, Mailbox: mailbox, Size: int64(len(data)), Received: time.Now().UnixNano(), Sum: sha256.Sum256(data),
		Locations: []string{"mem"}, State: catalog.Committed, Version: b.cat.Now()}
	_, err := b.cat.Apply(e)
	require.NoError(t, err)
	return id
}

func (b *memBackend) Login(username, password string) (Mailbox, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if pass, ok := b.users[username]; !ok || pass != password {
		return nil, ErrAuth
	}
	return &memMailbox{b: b, name: username}, nil
}

type memMailbox struct {
	b    *memBackend
	name string
}

func (m *memMailbox) Name() string                        { return m.name }
func (m *memMailbox) List() []catalog.Entry               { return m.b.cat.List(m.name) }
func (m *memMailbox) Get(id string) (catalog.Entry, bool) { return m.b.cat.Get(id) }
func (m *memMailbox) MaxUID() uint32                      { return m.b.cat.MaxUID(m.name) }
func (m *memMailbox) Local(*catalog.Entry) bool           { return true }

// AssignUIDs numbers as the node does (node/imap_uid.go), without peers.
func (m *memMailbox) AssignUIDs(ctx context.Context) error {
	m.b.mu.Lock()
	hold := m.b.hold
	m.b.mu.Unlock()
	if hold != nil {
		select {
		case m.b.assigning <- struct{}{}:
		default:
		}
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.b.assign.Lock()
	defer m.b.assign.Unlock()
	list := m.b.cat.List(m.name)
	slices.SortFunc(list, ByArrival)
	top := m.b.cat.MaxUID(m.name)
	var todo []catalog.Entry
	kept := map[uint32]bool{}
	for _, e := range list {
		if e.UID != 0 && !kept[e.UID] {
			kept[e.UID] = true
			continue
		}
		todo = append(todo, e)
	}
	if uint64(top)+uint64(len(todo)) > math.MaxUint32 {
		return errors.New("mem: every UID used")
	}
	for i := range todo {
		top++
		todo[i].UID = top
	}
	_, err := m.b.cat.Apply(todo...)
	return err
}

func (m *memMailbox) Read(ctx context.Context, e *catalog.Entry) ([]byte, error) {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	data, ok := m.b.bodies[e.ID]
	if !ok {
		return nil, errors.New("mem: no copy of " + e.ID)
	}
	return data, nil
}

func (m *memMailbox) ReadBatch(ctx context.Context, entries []catalog.Entry, buf []byte) ([]ReadResult, []byte) {
	out := make([]ReadResult, len(entries))
	for i := range entries {
		out[i].Data, out[i].Err = m.Read(ctx, &entries[i])
	}
	return out, buf
}

func (m *memMailbox) StoreFlags(ctx context.Context, changed []catalog.Entry) error {
	for i := range changed {
		changed[i].Version = m.b.cat.Now()
	}
	_, err := m.b.cat.Apply(changed...)
	return err
}

func (m *memMailbox) Expunge(ctx context.Context, ids []string) error {
	m.b.mu.Lock()
	inUse := m.b.inUse
	m.b.mu.Unlock()
	if inUse {
		return fmt.Errorf("mem: %w", ErrInUse)
	}
	var tomb []catalog.Entry
	for _, id := range ids {
		if e, ok := m.b.cat.Get(id); ok && e.Live() {
			e.State, e.Version = catalog.Deleted, m.b.cat.Now()
			tomb = append(tomb, e)
		}
	}
	_, err := m.b.cat.Apply(tomb...)
	return err
}

// testMessage is a small message with subject.
func testMessage(subject string) []byte {
	return []byte("From: sender@remote.test\r\nTo: alice@example.com\r\nSubject: " + subject +
		"\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@remote.test>\r\n\r\nbody of " + subject + "\r\n")
}
