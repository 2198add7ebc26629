package node

import (
	"mailarray/node/catalog"
	"mailarray/node/replica"
)

// underReplicatedNow scans the catalog now for committed entries short of
// R live copies; Node.UnderReplicated is the count of the last maintenance
// scan, which lags. Tests wait on this one.
func (n *Node) underReplicatedNow() int {
	t := n.members.Table()
	want := min(n.conf().Replicas, len(t.Ring))
	under := 0
	n.cat.ForEach(func(e *catalog.Entry) bool {
		if e.State == catalog.Committed && len(replica.LiveHolders(t, e)) < want {
			under++
		}
		return true
	})
	return under
}
