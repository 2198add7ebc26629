package pop3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// memBackend is an in-memory Backend: users with passwords and messages,
// one exclusive lock per mailbox. Faults are data: set the *Err fields.
type memBackend struct {
	mu    sync.Mutex
	users map[string]*memUser

	loginErr  error // returned by Login after the credentials check passes
	listErr   error
	openErr   error
	readErr   error // returned by the body reader after its first chunk
	commitErr error

	logins  int               // Login calls
	closes  map[string]int    // Maildrop.Close calls per user
	onLogin func(user string) // called at the start of Login, outside the lock
}

type memUser struct {
	pass   string
	msgs   []memMsg
	locked bool
}

type memMsg struct {
	id   string
	data []byte
}

var _ Backend = (*memBackend)(nil)
var _ Maildrop = (*memDrop)(nil)

func newMemBackend() *memBackend {
	return &memBackend{users: make(map[string]*memUser), closes: make(map[string]int)}
}

// addUser creates user with messages whose ids are "<user>-<i>".
func (b *memBackend) addUser(user, pass string, msgs ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u := &memUser{pass: pass}
	for i, m := range msgs {
		u.msgs = append(u.msgs, memMsg{id: fmt.Sprintf("%s-%d", user, i+1), data: []byte(m)})
	}
	b.users[user] = u
}

// ids returns the user's stored message ids.
func (b *memBackend) ids(user string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []string
	for _, m := range b.users[user].msgs {
		ids = append(ids, m.id)
	}
	return ids
}

func (b *memBackend) isLocked(user string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.users[user].locked
}

func (b *memBackend) closeCount(user string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closes[user]
}

func (b *memBackend) loginCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logins
}

func (b *memBackend) setFault(f func(b *memBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

func (b *memBackend) Login(ctx context.Context, user, pass string, remote net.Addr) (Maildrop, error) {
	b.mu.Lock()
	hook := b.onLogin
	b.logins++
	b.mu.Unlock()
	if hook != nil {
		hook(user)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.users[user]
	if u == nil || u.pass != pass {
		return nil, ErrAuth
	}
	if b.loginErr != nil {
		return nil, b.loginErr
	}
	if u.locked {
		return nil, ErrInUse
	}
	u.locked = true
	return &memDrop{b: b, user: user}, nil
}

type memDrop struct {
	b      *memBackend
	user   string
	closed bool
}

func (d *memDrop) List(ctx context.Context) ([]MessageInfo, error) {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	if d.b.listErr != nil {
		return nil, d.b.listErr
	}
	var out []MessageInfo
	for _, m := range d.b.users[d.user].msgs {
		out = append(out, MessageInfo{ID: m.id, Size: int64(len(m.data))})
	}
	return out, nil
}

func (d *memDrop) Open(ctx context.Context, id string) (io.ReadCloser, error) {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	if d.b.openErr != nil {
		return nil, d.b.openErr
	}
	for _, m := range d.b.users[d.user].msgs {
		if m.id == id {
			if d.b.readErr != nil {
				return io.NopCloser(&failingReader{data: m.data[:len(m.data)/2], err: d.b.readErr}), nil
			}
			return io.NopCloser(bytes.NewReader(m.data)), nil
		}
	}
	return nil, fmt.Errorf("memdrop: no message %q", id)
}

func (d *memDrop) Commit(ctx context.Context, deleted []string) error {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	if len(deleted) == 0 {
		return errors.New("memdrop: Commit called with nothing to delete")
	}
	if d.b.commitErr != nil {
		return d.b.commitErr
	}
	del := make(map[string]bool, len(deleted))
	for _, id := range deleted {
		del[id] = true
	}
	u := d.b.users[d.user]
	kept := u.msgs[:0]
	for _, m := range u.msgs {
		if !del[m.id] {
			kept = append(kept, m)
		}
	}
	u.msgs = kept
	return nil
}

func (d *memDrop) Close() error {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	d.b.closes[d.user]++
	if d.closed {
		return errors.New("memdrop: closed twice")
	}
	d.closed = true
	d.b.users[d.user].locked = false
	return nil
}

// failingReader returns data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}
