package node

// The node as its replicator (node/replica) sees it: the catalog, the
// store, membership, the peer client, the write of one copy (deliver.go
// writeCopy), the listener's abort answers (txn.go abortTx), the
// last-member record (rejoin.go) and the Env's hooks.

import (
	"context"
	"encoding/binary"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/peer"
	"mailarray/node/replica"
)

// metaLastMember is the store meta key of the wall-clock time (unix ns)
// the node was last a member of the array in step with every live member.
const metaLastMember = "node.last-member"

var _ replica.Members = (*memberView)(nil)

// VerifyStatus is the store verifier's progress (node/replica verify.go).
type VerifyStatus = replica.VerifyStatus

// replicaTuning is the replicator's share of t (at start, and at each
// configuration reload).
func replicaTuning(t Tuning) replica.Tuning {
	return replica.Tuning{
		AntiEntropyEvery: t.AntiEntropyEvery,
		MaintainEvery:    t.MaintainEvery,
		PendingTimeout:   t.PendingTimeout,
		OrphanGrace:      t.OrphanGrace,
		RebuildPerScan:   t.RebuildPerScan,
		TombstoneTTL:     t.TombstoneTTL,
		VerifyEvery:      t.VerifyEvery,
		VerifyPerScan:    t.VerifyPerScan,
		CollectEvery:     t.CollectEvery,

		RebalanceAfterReturn: t.RebalanceAfterReturn,
	}
}

// newReplicator makes the node's replicator; it registers its catalog
// hooks (rebuild's, then the verifier's) as New always did.
func newReplicator(n *Node) *replica.Replicator {
	return replica.New(replica.Deps{
		Name:         n.conf().Name,
		Replicas:     n.conf().Replicas,
		WriteQuorum:  n.conf().WriteQuorum,
		Tuning:       replicaTuning(n.conf().Tuning),
		Catalog:      n.cat,
		Store:        n.store,
		Peer:         replicaPeer{n},
		Members:      n.members,
		WriteCopy:    n.writeCopy,
		Boot:         n.boot,
		AbortLocal:   n.abortTx,
		RecordMember: n.putLastMember,
		Log:          n.log,
		Rand:         n.env.Rand,
		Inject:       n.env.Inject,
		Wall:         n.env.Wall,
		Settle:       n.settle,
	})
}

// replicaPeer forwards to the node's peer client, which startPeer makes
// at Start, after the replicator exists.
type replicaPeer struct{ n *Node }

var _ replica.Peer = replicaPeer{}

func (p replicaPeer) PushEntries(ctx context.Context, node string, entries []catalog.Entry) error {
	return p.n.peer.PushEntries(ctx, node, entries)
}

func (p replicaPeer) Bucket(ctx context.Context, node string, b int) ([]catalog.Entry, error) {
	return p.n.peer.Bucket(ctx, node, b)
}

func (p replicaPeer) Buckets(ctx context.Context, node string, mine peer.Horizon) ([catalog.Buckets]uint64, peer.Horizon, error) {
	return p.n.peer.Buckets(ctx, node, mine)
}

func (p replicaPeer) GetEntry(ctx context.Context, node, id string) (catalog.Entry, bool, error) {
	return p.n.peer.GetEntry(ctx, node, id)
}

func (p replicaPeer) HasCopy(ctx context.Context, node, id string) (bool, error) {
	return p.n.peer.HasCopy(ctx, node, id)
}

func (p replicaPeer) Abort(ctx context.Context, node, id string) (peer.AbortReply, error) {
	return p.n.peer.Abort(ctx, node, id)
}

func (p replicaPeer) Rebalance(ctx context.Context, node string) error {
	return p.n.peer.Rebalance(ctx, node)
}

func (n *Node) lastMember() (time.Time, bool) {
	b := n.store.GetMeta(metaLastMember)
	if len(b) != 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))), true
}

func (n *Node) putLastMember(t time.Time) error {
	if old, ok := n.lastMember(); ok && !t.After(old) {
		return nil
	}
	return n.store.PutMeta(metaLastMember, binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())))
}

// Verify returns the store verifier's progress.
func (n *Node) Verify() VerifyStatus { return n.repl.VerifyStatus() }
