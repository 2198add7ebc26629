package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/env"
)

// A deletion (POP3 DELE + QUIT, IMAP EXPUNGE, webmail delete, quarantine
// delete) is answered as done only once every live node has its
// tombstones: a client told +OK must not find the message again on another
// access node. deleteMessages applies the tombstones durably here first,
// so they reach every node eventually (push and anti-entropy) whatever the
// answer; pushEverywhere decides the answer. It must also be durable on
// W nodes (this one included), as a delivery is before its 250: a
// deletion confirmed by a node left alone would be lost with that node,
// and the copies the others hold would come back. With fewer than W
// nodes live a deletion is refused before anything is applied.

// errDeleteIncomplete is returned by deleteMessages when the tombstones
// are durable on this node but some live node did not take them within
// Tuning.DeleteSyncTimeout. The deletion is not undone: anti-entropy
// carries it to that node later, and until then that node may still list
// the messages. Callers answer a temporary failure.
var errDeleteIncomplete = errors.New("node: deletion not yet on every live node")

// errDeleteNoQuorum is returned by deleteMessages, before it applies
// anything, when fewer than W nodes are live. It wraps errDeleteIncomplete:
// callers answer the same temporary failure.
var errDeleteNoQuorum = fmt.Errorf("%w: fewer live nodes than the write quorum", errDeleteIncomplete)

// Retry pace of pushEverywhere: the first retry of a failed node after
// deleteRetryMin, doubling up to deleteRetryMax. Fixed, without jitter:
// a deletion is rare and its session's goroutine is the only one waiting.
const (
	deleteRetryMin = 50 * time.Millisecond
	deleteRetryMax = time.Second
)

// pushEverywhere pushes entries to every other live member that
// advertises a peer address, retrying each one that fails until it takes
// them, membership no longer lists it live (declared failed or left: it no
// longer counts), bound elapses or ctx ends. Members that join meanwhile
// are pushed to as well. It returns how many members took the entries
// and the live members that still lack them, sorted by name (nil: every
// live node has them).
func (n *Node) pushEverywhere(ctx context.Context, entries []catalog.Entry, bound time.Duration) (took int, missing []string) {
	if len(entries) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	done := map[string]bool{}
	wait := deleteRetryMin
	// Deletions woken together (the stream they shared broke, failing
	// their pushes at one instant, so their retry timers coincide to the
	// nanosecond; or one group commit applied their tombstones) would
	// race to write on a shared stream, and a simulated run would not
	// replay: each round settles first, under a key of its own (its first
	// message), so the simulator lets them go in that key's order.
	who := "delete " + entries[0].ID
	for {
		n.settle(who)
		todo := n.lacking(done)
		if len(todo) == 0 {
			return len(done), nil
		}
		ok := make([]bool, len(todo))
		var wg sync.WaitGroup
		for i, name := range todo {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := n.peer.PushEntries(ctx, name, entries)
				if err != nil {
					n.log.Debug("node: tombstone push failed; retrying", "peer", name, "err", err)
				}
				ok[i] = err == nil
			}()
		}
		wg.Wait()
		for i, name := range todo {
			if ok[i] {
				done[name] = true
			}
		}
		if len(n.lacking(done)) == 0 {
			return len(done), nil
		}
		select {
		case <-ctx.Done():
			return len(done), n.lacking(done)
		case <-time.After(wait):
		}
		wait = min(2*wait, deleteRetryMax)
	}
}

// lacking lists the other live members with a peer address not in done,
// in Live's order (by name).
func (n *Node) lacking(done map[string]bool) []string {
	var out []string
	for _, m := range n.members.Live() {
		if m.Name == n.conf().Name || m.Tags[env.TagPeer] == "" || done[m.Name] {
			continue
		}
		out = append(out, m.Name)
	}
	return out
}
