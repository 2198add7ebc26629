package node

import (
	"context"

	"mailarray/node/catalog"
)

// settleRefused makes the tombstones of a refused transaction durable in
// this listener's catalog before its 451, within the delivery's deadline
// (a stalled disk must not hold the client: the asynchronous commit still
// applies them later).
//
// Why: the holders' pending resolution does not take a restarted
// listener's "no copy" for an answer (its disk may be older than the
// entry: node/replica pending.go resolve), so without a decision recorded
// anywhere a copy that landed on a peer would be committed. A listener
// that crashes after its 451 (a plain crash or power loss, not a restore)
// comes back with the tombstone, which wins.
func (n *Node) settleRefused(ctx context.Context, final []catalog.Entry) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := n.cat.Apply(final...); err != nil {
			n.log.Warn("node: refused transaction's tombstones not applied before the reply; the commit retries", "err", err)
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
