package node

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailarray/node/env"
)

// lockTable holds the mailbox locks this node manages. Each mailbox's lock
// lives on one manager node, the top of a rendezvous hash of the mailbox
// over live members, so two POP3 sessions on different nodes contend on
// the same table. Locks are leases: a session renews its lease while it
// lives, and a lock whose holder died expires by itself; sooner, once
// membership declares the holder's node failed or left (gone).
type lockTable struct {
	mu    sync.Mutex
	locks map[string]lease
	// gone reports whether membership declared a node failed or left, or
	// shows it restarted since boot (another boot id). A lease whose owner
	// is such a node's holds nothing: its session died with the node (or
	// with its previous life, when it restarted faster than failure
	// detection), and waiting out the TTL would lock the mailbox out of
	// every surviving node for up to lockTTL.
	gone func(node, boot string) bool
	// observe, if set, hears every grant and refusal, with mu held: the
	// simulator checks that no lease outlives its holder's failure by
	// more than the detection time.
	observe env.LeaseObserver
}

type lease struct {
	owner   string
	expires time.Time
}

// maxLocks bounds the table (one entry per open POP3 session in the array).
const maxLocks = 100000

func newLockTable(gone func(node, boot string) bool) *lockTable {
	return &lockTable{locks: map[string]lease{}, gone: gone}
}

// lockOwner names a lease holder of this node's current life:
// "<node>/<boot>/<rest>", so that lock managers can tell the leases of a
// node's previous life, which died with it, from its new ones.
func (n *Node) lockOwner(rest string) string {
	return n.conf().Name + "/" + bootString(n.boot) + "/" + rest
}

// ownerBoot is the boot id an owner names ("" for an owner of another
// form, such as one written by an older version).
func ownerBoot(owner string) string {
	parts := strings.SplitN(owner, "/", 3)
	if len(parts) < 3 || len(parts[1]) != 16 {
		return ""
	}
	if _, err := strconv.ParseUint(parts[1], 16, 64); err != nil {
		return ""
	}
	return parts[1]
}

// ownerNode is the node an owner names: owners are "<node>/<rest>" (see
// lockOwner); "" if owner has no node.
func ownerNode(owner string) string {
	node, _, ok := strings.Cut(owner, "/")
	if !ok {
		return ""
	}
	return node
}

// held reports whether l still holds its lock at now: not expired, and its
// owner's node not gone. Checked on every acquire as well as dropped on
// membership events (dropGone), so a manager that has seen the failure
// never refuses because an event is still on its way.
func (t *lockTable) held(l lease, now time.Time) bool {
	if !now.Before(l.expires) {
		return false
	}
	node := ownerNode(l.owner)
	return node == "" || t.gone == nil || !t.gone(node, ownerBoot(l.owner))
}

// acquire takes or renews mailbox's lock for owner.
func (t *lockTable) acquire(mailbox, owner string, ttl time.Duration) bool {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.locks[mailbox]; ok && l.owner != owner && t.held(l, now) {
		if t.observe != nil {
			t.observe.Refused(mailbox, l.owner, owner)
		}
		return false
	}
	if len(t.locks) >= maxLocks {
		for k, l := range t.locks {
			if !now.Before(l.expires) {
				delete(t.locks, k)
			}
		}
		if len(t.locks) >= maxLocks {
			return false
		}
	}
	t.locks[mailbox] = lease{owner: owner, expires: now.Add(ttl)}
	if t.observe != nil {
		t.observe.Granted(mailbox, owner)
	}
	return true
}

// dropGone deletes every lease whose owner's node is gone and returns how
// many it dropped. The node runs it on each membership change.
func (t *lockTable) dropGone() int {
	if t.gone == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	dropped := 0
	for k, l := range t.locks {
		if node := ownerNode(l.owner); node != "" && t.gone(node, ownerBoot(l.owner)) {
			delete(t.locks, k)
			dropped++
		}
	}
	return dropped
}

func (t *lockTable) release(mailbox, owner string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.locks[mailbox]; ok && l.owner == owner {
		delete(t.locks, mailbox)
	}
}

// lockManagers is how many managers hold each mailbox's lock: the top two
// of a rendezvous hash of the mailbox over live members. A node that joins
// displaces at most one of them, so a session's lock survives on the
// other and a second session still sees it; a manager that died but is
// not yet declared failed is skipped as long as the other answers.
const lockManagers = 2

// lockManagersFor returns mailbox's lock managers, best first: live members
// that advertise a peer address (or this node).
func (n *Node) lockManagersFor(mailbox string) []string {
	type scored struct {
		name  string
		score uint64
	}
	var c []scored
	for _, m := range n.members.Live() {
		if m.Name != n.conf().Name && m.Tags[env.TagPeer] == "" {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(m.Name))
		h.Write([]byte{0})
		h.Write([]byte(mailbox))
		c = append(c, scored{m.Name, h.Sum64()})
	}
	slices.SortFunc(c, func(a, b scored) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	out := make([]string, 0, lockManagers)
	for i := 0; i < len(c) && i < lockManagers; i++ {
		out = append(out, c[i].name)
	}
	return out
}

// errLocked: another session holds the mailbox.
var errLocked = errors.New("node: mailbox locked")

// lockMailbox takes (or renews) mailbox's lock for owner on its current
// managers and returns those that granted it. It fails with errLocked if
// any manager says another owner holds it, and with an error if none
// could be reached. Managers that granted a lease before an errLocked are
// released again.
func (n *Node) lockMailbox(ctx context.Context, mailbox, owner string, ttl time.Duration) ([]string, error) {
	var granted []string
	var errs []error
	locked := false
	for _, mgr := range n.lockManagersFor(mailbox) {
		if mgr == n.conf().Name {
			if n.locks.acquire(mailbox, owner, ttl) {
				granted = append(granted, mgr)
			} else {
				locked = true
			}
			continue
		}
		ok, err := n.peer.Lock(ctx, mgr, mailbox, owner, ttl)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("node: lock manager %s: %w", mgr, err))
		case ok:
			granted = append(granted, mgr)
		default:
			locked = true
		}
	}
	if locked {
		n.unlockMailbox(ctx, granted, mailbox, owner)
		return nil, errLocked
	}
	if len(granted) == 0 {
		if len(errs) == 0 {
			return nil, errors.New("node: no lock manager")
		}
		return nil, errors.Join(errs...)
	}
	return granted, nil
}

// unlockMailbox releases owner's lease on every manager given.
func (n *Node) unlockMailbox(ctx context.Context, managers []string, mailbox, owner string) {
	for _, mgr := range managers {
		if mgr == n.conf().Name {
			n.locks.release(mailbox, owner)
			continue
		}
		if err := n.peer.Unlock(ctx, mgr, mailbox, owner); err != nil {
			n.log.Debug("node: unlock failed; the lease will expire", "mailbox", mailbox, "manager", mgr, "err", err)
		}
	}
}
