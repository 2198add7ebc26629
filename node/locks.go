package node

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"
)

// lockTable holds the mailbox locks this node manages. Each mailbox's lock
// lives on one manager node, the top of a rendezvous hash of the mailbox
// over live members, so two POP3 sessions on different nodes contend on
// the same table. Locks are leases: a session renews its lease while it
// lives, and a lock whose holder died expires by itself.
type lockTable struct {
	mu    sync.Mutex
	locks map[string]lease
}

type lease struct {
	owner   string
	expires time.Time
}

// maxLocks bounds the table (one entry per open POP3 session in the array).
const maxLocks = 100000

func newLockTable() *lockTable { return &lockTable{locks: map[string]lease{}} }

// acquire takes or renews mailbox's lock for owner.
func (t *lockTable) acquire(mailbox, owner string, ttl time.Duration) bool {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.locks[mailbox]; ok && l.owner != owner && now.Before(l.expires) {
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
	return true
}

func (t *lockTable) release(mailbox, owner string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.locks[mailbox]; ok && l.owner == owner {
		delete(t.locks, mailbox)
	}
}

// lockManager returns the live member that manages mailbox's lock.
func (n *Node) lockManager(mailbox string) string {
	best, bestScore := "", uint64(0)
	for _, m := range n.members.Live() {
		h := fnv.New64a()
		h.Write([]byte(m.Name))
		h.Write([]byte{0})
		h.Write([]byte(mailbox))
		if s := h.Sum64(); best == "" || s > bestScore {
			best, bestScore = m.Name, s
		}
	}
	return best
}

// errLocked: another session holds the mailbox.
var errLocked = errors.New("node: mailbox locked")

// lockMailbox takes mailbox's cluster-wide lock for owner.
func (n *Node) lockMailbox(ctx context.Context, mailbox, owner string, ttl time.Duration) (manager string, err error) {
	mgr := n.lockManager(mailbox)
	if mgr == "" || mgr == n.cfg.Name {
		if !n.locks.acquire(mailbox, owner, ttl) {
			return n.cfg.Name, errLocked
		}
		return n.cfg.Name, nil
	}
	ok, err := n.peer.lock(ctx, mgr, mailbox, owner, ttl)
	if err != nil {
		return mgr, fmt.Errorf("node: lock manager %s: %w", mgr, err)
	}
	if !ok {
		return mgr, errLocked
	}
	return mgr, nil
}

func (n *Node) unlockMailbox(ctx context.Context, manager, mailbox, owner string) {
	if manager == n.cfg.Name {
		n.locks.release(mailbox, owner)
		return
	}
	if err := n.peer.unlock(ctx, manager, mailbox, owner); err != nil {
		n.log.Debug("node: unlock failed; the lease will expire", "mailbox", mailbox, "err", err)
	}
}
