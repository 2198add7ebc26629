package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/directory"
	"mailarray/node/fault"
	"mailarray/node/pop3"
	"mailarray/node/store"
)

// Mailbox lock leases: short, renewed while the session lives, so a lock
// held by a node that died frees itself quickly.
const (
	lockTTL   = time.Minute
	lockRenew = 20 * time.Second
)

// errNoCopy: no live node could serve a valid copy.
var errNoCopy = errors.New("node: no readable copy")

// pop3Backend is the node seen by its POP3 server.
type pop3Backend Node

var _ pop3.Backend = (*pop3Backend)(nil)

func (b *pop3Backend) Login(ctx context.Context, user, pass string, remote net.Addr) (pop3.Maildrop, error) {
	n := (*Node)(b)
	defer func(t0 time.Time) { n.metrics.pop3Latency.WithLabelValues("login").Observe(time.Since(t0).Seconds()) }(time.Now())
	mb, err := n.dir.Authenticate(user, pass)
	if err != nil {
		if errors.Is(err, directory.ErrAuth) {
			return nil, pop3.ErrAuth
		}
		return nil, err
	}
	owner := n.lockOwner(strconv.FormatUint(n.env.Rand.Uint64(), 36))
	mgrs, err := n.lockMailbox(ctx, mb.Address, owner, lockTTL)
	if errors.Is(err, errLocked) {
		return nil, pop3.ErrInUse
	}
	if err != nil {
		return nil, err
	}
	md := &maildrop{n: n, mailbox: mb.Address, owner: owner, managers: mgrs, stop: make(chan struct{})}
	md.entries = n.cat.List(mb.Address)
	md.byID = make(map[string]int, len(md.entries))
	for i := range md.entries {
		md.byID[md.entries[i].ID] = i
	}
	md.wg.Add(1)
	go md.renew()
	return md, nil
}

type maildrop struct {
	n              *Node
	mailbox, owner string
	mu             sync.Mutex
	managers       []string // every manager that granted a lease, to release them all
	entries        []catalog.Entry
	byID           map[string]int
	// ahead holds copies read ahead from other nodes (readAhead), by id;
	// the session is serial, so only Open uses it.
	ahead map[string][]byte
	// slab holds the local copies of the last read-ahead (readLocal),
	// reused by the next: Open's caller is done with a message before it
	// opens another, and a read-ahead starts only once m.ahead is dropped.
	slab []byte
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func (m *maildrop) renew() {
	defer m.wg.Done()
	for {
		select {
		case <-m.stop:
			return
		case <-time.After(lockRenew):
		}
		ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
		// Renewing on the current managers also moves the lease when
		// membership moved them.
		granted, err := m.n.lockMailbox(ctx, m.mailbox, m.owner, lockTTL)
		if err != nil {
			m.n.log.Warn("node: mailbox lock renewal failed", "mailbox", m.mailbox, "err", err)
		}
		m.mu.Lock()
		for _, g := range granted {
			if !slices.Contains(m.managers, g) {
				m.managers = append(m.managers, g)
			}
		}
		m.mu.Unlock()
		cancel()
	}
}

func (m *maildrop) List(ctx context.Context) ([]pop3.MessageInfo, error) {
	out := make([]pop3.MessageInfo, len(m.entries))
	for i, e := range m.entries {
		out[i] = pop3.MessageInfo{ID: e.ID, Size: e.Size}
	}
	return out, nil
}

func (m *maildrop) Open(ctx context.Context, id string) (io.ReadCloser, error) {
	defer func(t0 time.Time) { m.n.metrics.pop3Latency.WithLabelValues("retr").Observe(time.Since(t0).Seconds()) }(time.Now())
	i, ok := m.byID[id]
	if !ok {
		return nil, fmt.Errorf("node: no message %s", id)
	}
	data, ok := m.ahead[id]
	delete(m.ahead, id)
	if !ok {
		data, ok = m.readAhead(ctx, i)
	}
	if !ok {
		var err error
		if data, err = m.n.readMessage(ctx, &m.entries[i]); err != nil {
			return nil, err
		}
	}
	m.n.env.ChargeCPU(len(data))
	return io.NopCloser(bytes.NewReader(data)), nil
}

// popReadAhead bounds the messages one read-ahead fetches.
const popReadAhead = 32

// readAhead reads message i together with the messages after it (clients
// RETR in order), up to popReadAhead and readAheadBytes: the copies this
// node holds in one store transaction, the others in batches per holder
// (readMessages), keeping all but i's in m.ahead. It returns message i's
// bytes if the batch brought them.
func (m *maildrop) readAhead(ctx context.Context, i int) ([]byte, bool) {
	// What the client skipped is dropped; the map is kept for the next
	// batch (a new one per batch was a share of the session's garbage).
	if m.ahead == nil {
		m.ahead = make(map[string][]byte, popReadAhead)
	}
	clear(m.ahead)
	var batch []catalog.Entry
	size := int64(0)
	for k := i; k < len(m.entries) && len(batch) < popReadAhead; k++ {
		e := &m.entries[k]
		if len(batch) > 0 && size+e.Size > readAheadBytes {
			break
		}
		batch = append(batch, *e)
		size += e.Size
	}
	var first []byte
	ok := false
	var got []fetchResult
	got, m.slab = m.n.readMessagesInto(ctx, batch, m.slab)
	for k, r := range got {
		if r.err != nil {
			continue
		}
		if batch[k].ID == m.entries[i].ID {
			first, ok = r.data, true
		} else {
			m.ahead[batch[k].ID] = r.data
		}
	}
	return first, ok
}

func (m *maildrop) Commit(ctx context.Context, deleted []string) error {
	defer func(t0 time.Time) {
		m.n.metrics.pop3Latency.WithLabelValues("commit").Observe(time.Since(t0).Seconds())
	}(time.Now())
	if err := m.n.env.Inject(fault.POP3Delete, m.n.conf().Name); err != nil {
		return err
	}
	return m.n.deleteMessages(ctx, deleted)
}

func (m *maildrop) Close() error {
	m.once.Do(func() {
		close(m.stop)
		m.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
		defer cancel()
		m.mu.Lock()
		mgrs := slices.Clone(m.managers)
		m.mu.Unlock()
		m.n.unlockMailbox(ctx, mgrs, m.mailbox, m.owner)
	})
	return nil
}

// deleteExclusive deletes ids of mailbox while holding the mailbox's lock
// for that moment, as a POP3 session holds it for its own: a POP3 session
// in progress has the mailbox exclusively (RFC 1939 section 8), so other
// access paths (webmail, IMAP EXPUNGE) get errLocked and retry later
// instead of removing messages from under it. who names the path in the
// lock's owner.
func (n *Node) deleteExclusive(ctx context.Context, who, mailbox string, ids []string) error {
	owner := n.lockOwner(who + "/" + strconv.FormatUint(n.env.Rand.Uint64(), 36))
	mgrs, err := n.lockMailbox(ctx, mailbox, owner, lockTTL)
	if err != nil {
		return err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), peerTimeout)
		defer cancel()
		n.unlockMailbox(uctx, mgrs, mailbox, owner)
	}()
	return n.deleteMessages(ctx, ids)
}

// deleteMessages tombstones ids durably here and pushes the tombstones to
// every live node (pushEverywhere). It returns nil only once every live
// node has them, and at least W nodes do, so no node shows them afterwards
// and losing one node does not undo them; with fewer than W nodes live it
// refuses (errDeleteNoQuorum) before it applies anything; otherwise
// errDeleteIncomplete, the tombstones staying applied here and reaching
// the missing nodes later by anti-entropy. Ids already deleted here are
// pushed again with their tombstone: a client retrying a deletion that
// failed that way gets success only once every live node has it.
func (n *Node) deleteMessages(ctx context.Context, ids []string) error {
	var tomb, fresh []catalog.Entry
	for _, id := range ids {
		e, ok := n.cat.Get(id)
		if !ok {
			continue
		}
		if e.State != catalog.Deleted {
			e.State = catalog.Deleted
			e.Version = n.cat.Now()
			fresh = append(fresh, e)
		}
		tomb = append(tomb, e)
	}
	if len(tomb) == 0 {
		return nil
	}
	w := n.conf().WriteQuorum
	if live := 1 + len(n.lacking(nil)); live < w {
		n.log.Warn("node: deletion refused: fewer live nodes than the write quorum", "messages", len(tomb), "live", live, "write_quorum", w)
		return fmt.Errorf("%w: %d of %d nodes live for %d messages", errDeleteNoQuorum, live, w, len(tomb))
	}
	if _, err := n.cat.Apply(fresh...); err != nil {
		return fmt.Errorf("node: delete: %w", err)
	}
	took, missing := n.pushEverywhere(ctx, tomb, n.conf().Tuning.DeleteSyncTimeout)
	if len(missing) > 0 {
		n.log.Warn("node: deletion applied here but not yet on every live node; anti-entropy will finish it", "messages", len(tomb), "missing", missing)
		return fmt.Errorf("%w: %d messages not confirmed by %s", errDeleteIncomplete, len(tomb), strings.Join(missing, ", "))
	}
	if 1+took < w {
		// Membership shrank under the push: every node still live has the
		// tombstones, but fewer than W hold them.
		n.log.Warn("node: deletion applied here but on fewer nodes than the write quorum; anti-entropy will finish it", "messages", len(tomb), "nodes", 1+took, "write_quorum", w)
		return fmt.Errorf("%w: %d messages on %d of %d nodes", errDeleteIncomplete, len(tomb), 1+took, w)
	}
	return nil
}

// readMessage returns a message's bytes from any live copy: this node's
// first, then the others in placement order. A copy that fails its
// checksum is skipped and repaired from the good one.
func (n *Node) readMessage(ctx context.Context, e *catalog.Entry) ([]byte, error) {
	var bad []string
	var errs []error
	order := make([]string, 0, len(e.Locations))
	if e.HasLocation(n.conf().Name) {
		order = append(order, n.conf().Name)
	}
	for _, l := range e.Locations {
		if l != n.conf().Name && n.members.Alive(l) {
			order = append(order, l)
		}
	}
	for _, loc := range order {
		var data []byte
		var err error
		if loc == n.conf().Name {
			got := n.readLocal([]catalog.Entry{*e}, nil)
			data, err = got[0].data, got[0].err
		} else {
			data, err = n.peer.FetchCopy(ctx, loc, e.ID, e.Sum)
		}
		if err != nil {
			if errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrNotFound) {
				bad = append(bad, loc)
			}
			errs = append(errs, err)
			continue
		}
		if len(bad) > 0 {
			n.log.Warn("node: repairing bad copies", "id", e.ID, "on", bad)
			for _, b := range bad {
				entry := *e
				if err := n.writeCopy(ctx, b, data, &entry); err != nil {
					n.log.Warn("node: read repair failed", "id", e.ID, "on", b, "err", err)
				}
			}
		}
		return data, nil
	}
	return nil, fmt.Errorf("%w: %s: %v", errNoCopy, e.ID, errors.Join(errs...))
}
