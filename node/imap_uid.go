package node

// IMAP UIDs over the replicated catalog (RFC 9051 section 2.3.1.1).
//
// A mailbox's messages live on many nodes and any node may serve it, so
// UIDs cannot come from one node's counter. They are assigned lazily, for
// the IMAP view only: SMTP delivery writes entries with UID 0 and stays as
// fast as it was. When an IMAP session (SELECT/EXAMINE, NOOP, CHECK, IDLE,
// the poll after each command, or the 1 s poll while idling) sees committed
// entries of its mailbox without a UID, its node runs assignUIDs:
//
//  1. take the lease lock "uid:"+mailbox on the mailbox's lock managers
//     (locks.go; distinct from POP3's exclusive mailbox lock, so a POP3
//     session does not block IMAP);
//  2. ask every other live node for its highest UID of the mailbox and for
//     the entries it knows with a UID above ours (GET /v1/uids/{mailbox}),
//     merge those, and take the maximum of all;
//  3. give max+1, max+2, ... to the committed entries without a UID in
//     (Received, ID) order, apply them locally and push them to every live
//     node (broadcastSync), then release the lease.
//
// An assignment keeps the entry's version: the catalog merges the UID apart
// from the rest (catalog.Merge takes the higher UID), so the UID reaches
// every replica whatever version it holds. A new version would instead
// carry this node's copy of the other fields to every replica, undoing a
// newer change this node had not yet received (a rebuild that moved a
// copy: the entry would list the old holder again, and orphan cleanup
// would then drop the new copy).
//
// Sessions show only entries that have a UID. An assignment is on every
// live node before the lease is released and before any session shows it,
// and the next assigner, holding the lease, reads the maximum across all
// live nodes: UIDs never repeat and never go backwards, so UIDVALIDITY is a
// constant per mailbox (node/imap UIDValidity) that never has to change.
// The catalog merge keeps an assigned UID against newer versions written
// without it (catalog.Merge), and Collect keeps the tombstone holding a
// mailbox's highest UID, so a restart cannot lower the maximum either.
//
// The corner case: the lease is only as good as the lock managers' view of
// membership. If the array splits so that each side declares the other
// failed, each side has its own managers and both may assign the same UIDs
// to different messages. When the sides meet again the catalogs merge
// (each entry keeps its UID) and the next assignment sees two live entries
// sharing a UID: it keeps the UID on the first in (Received, ID) order and
// gives the others fresh UIDs. A client that saw the duplicate on the
// losing side may then have cached a UID for a message that now has
// another (the message looks expunged and re-added); nothing repairs a
// client cache that saw UID u name another message, short of changing
// UIDVALIDITY, which we do not do. The same holds if the node that
// assigned UIDs dies after a session showed them but before any other node
// got the push (broadcastSync failed to every peer) and the array then
// assigns again: deterministic order makes the same numbers likely, but not
// certain. A lease outlived by a stalled assigner (> uidLockTTL) is a third,
// theoretical, way.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"mailarray/node/catalog"
	imapd "mailarray/node/imap"
)

// Timings and limits of UID assignment.
const (
	// uidLockPrefix names the assignment lease of a mailbox in the lock
	// table, apart from the POP3 lock of the same mailbox.
	uidLockPrefix = "uid:"
	// uidLockTTL bounds how long a dead assigner blocks the others. An
	// assignment takes a few peer round trips.
	uidLockTTL = 30 * time.Second
	// uidLockBackoff and uidLockBackoffMax pace an assigner waiting for
	// another node's assignment of the same mailbox (until
	// uidAssignTimeout).
	uidLockBackoff    = 10 * time.Millisecond
	uidLockBackoffMax = 200 * time.Millisecond
	// uidAssignTimeout bounds one assignment (lock, peer queries, push).
	uidAssignTimeout = 5 * time.Second
	// uidAssignMax bounds the entries one assignment numbers; the rest get
	// theirs in the next round.
	uidAssignMax = 100000
)

// uidAssigner runs at most one assignment per mailbox on this node at a
// time; sessions that ask meanwhile wait for it.
type uidAssigner struct {
	mu       sync.Mutex
	inFlight map[string]chan struct{}
}

// assignUIDs gives UIDs to mailbox's committed entries that have none (see
// the file comment). It returns nil when there was nothing to do or
// another assignment of this node finished meanwhile.
func (n *Node) assignUIDs(ctx context.Context, mailbox string) error {
	a := &n.uids
	a.mu.Lock()
	if ch, ok := a.inFlight[mailbox]; ok {
		a.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if a.inFlight == nil {
		a.inFlight = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	a.inFlight[mailbox] = ch
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.inFlight, mailbox)
		a.mu.Unlock()
		close(ch)
	}()
	if !imapd.NeedsUIDs(n.cat.List(mailbox)) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, uidAssignTimeout)
	defer cancel()
	defer func(t0 time.Time) { n.metrics.imapLatency.WithLabelValues("assign").Observe(time.Since(t0).Seconds()) }(time.Now())
	key := uidLockPrefix + mailbox
	owner := n.conf().Name + "/uid/" + strconv.FormatUint(n.env.Rand.Uint64(), 36)
	var mgrs []string
	for attempt := 1; ; attempt++ {
		var err error
		mgrs, err = n.lockMailbox(ctx, key, owner, uidLockTTL)
		if err == nil {
			break
		}
		if !errors.Is(err, errLocked) || ctx.Err() != nil {
			return fmt.Errorf("node: uid lease of %s: %w", mailbox, err)
		}
		// Another node is assigning: its push may bring the UIDs.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(n.env.Rand.Jitter(min(time.Duration(attempt)*uidLockBackoff, uidLockBackoffMax), 0.5)):
		}
		if !imapd.NeedsUIDs(n.cat.List(mailbox)) {
			return nil
		}
	}
	defer func() {
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), peerTimeout)
		n.unlockMailbox(uctx, mgrs, key, owner)
		ucancel()
	}()
	top, err := n.clusterMaxUID(ctx, mailbox)
	if err != nil {
		return err
	}
	list := n.cat.List(mailbox)
	slices.SortFunc(list, imapd.ByArrival)
	var todo []catalog.Entry
	kept := make(map[uint32]struct{}, len(list))
	for _, e := range list {
		if _, dup := kept[e.UID]; e.UID != 0 && !dup {
			kept[e.UID] = struct{}{}
			continue
		}
		if e.UID != 0 {
			n.log.Warn("node: duplicate IMAP UID (assigned on both sides of a partition); renumbering the later message", "mailbox", mailbox, "uid", e.UID, "id", e.ID)
		}
		todo = append(todo, e)
	}
	if len(todo) > uidAssignMax {
		todo = todo[:uidAssignMax]
	}
	if len(todo) == 0 {
		return nil
	}
	if uint64(top)+uint64(len(todo)) > math.MaxUint32 {
		return fmt.Errorf("node: mailbox %s has used every IMAP UID", mailbox)
	}
	for i := range todo {
		top++
		todo[i].UID = top // same version: see the file comment
	}
	if _, err := n.cat.Apply(todo...); err != nil {
		return fmt.Errorf("node: uid assignment: %w", err)
	}
	if err := n.repl.BroadcastSync(ctx, todo); err != nil {
		// The next assigner asks this node too (clusterMaxUID) and the
		// peers get the entries from anti-entropy.
		n.log.Warn("node: UID assignment not yet on every node", "mailbox", mailbox, "err", err)
	}
	n.log.Debug("node: assigned IMAP UIDs", "mailbox", mailbox, "count", len(todo), "max", top)
	return nil
}

// clusterMaxUID returns the highest UID of mailbox on this node and every
// other live node, after merging the entries they have with UIDs this node
// has not seen (an earlier assignment whose push to this node failed). It
// fails if a live node does not answer: assigning without its maximum
// could repeat a UID.
func (n *Node) clusterMaxUID(ctx context.Context, mailbox string) (uint32, error) {
	local := n.cat.MaxUID(mailbox)
	peers := n.repl.OtherLive()
	type answer struct {
		max     uint32
		entries []catalog.Entry
		err     error
	}
	answers := make([]answer, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := &answers[i]
			a.max, a.entries, a.err = n.peer.UIDs(ctx, p, mailbox, local)
		}()
	}
	wg.Wait()
	top := local
	var missed []catalog.Entry
	for i, a := range answers {
		if a.err != nil {
			return 0, fmt.Errorf("node: highest UID of %s on %s: %w", mailbox, peers[i], a.err)
		}
		top = max(top, a.max)
		missed = append(missed, a.entries...)
	}
	if len(missed) > 0 {
		if _, err := n.cat.Apply(missed...); err != nil {
			return 0, fmt.Errorf("node: merge UIDs of %s: %w", mailbox, err)
		}
	}
	return max(top, n.cat.MaxUID(mailbox)), nil
}

// uidsAbove returns the mailbox's highest UID and its live entries with a
// UID above since.
func (n *Node) uidsAbove(mailbox string, since uint32) (uint32, []catalog.Entry) {
	top := n.cat.MaxUID(mailbox)
	if top <= since {
		return top, nil
	}
	var out []catalog.Entry
	for _, e := range n.cat.List(mailbox) {
		if e.UID > since {
			out = append(out, e)
		}
	}
	return top, out
}
