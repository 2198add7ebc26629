package node

import (
	"errors"
	"fmt"
	"time"

	"mailarray/node/catalog"
)

// ErrAwayTooLong is returned by New for a node whose catalog was last in
// step with the array longer than tuning.tombstone-ttl ago: the array may
// have forgotten deletions the node never saw, and its catalog would bring
// those messages back. Config.ResyncCatalog (--resync-catalog) starts it
// with the array's catalog instead.
var ErrAwayTooLong = errors.New("node: away from the array longer than tuning.tombstone-ttl")

// checkRejoin refuses a catalog older than the tombstone TTL, or drops it
// when the operator asked for a resync. When the node was last a member
// comes from the store (recorded while a member and at a clean stop; see
// recordMembership); a store written before that record existed falls back
// to the newest version in its catalog, the last change it saw.
func (n *Node) checkRejoin() error {
	now := n.env.Wall() // compared with recorded wall stamps
	if n.conf().ResyncCatalog {
		k := n.cat.Len()
		if err := n.cat.Reset(); err != nil {
			return fmt.Errorf("node: resync catalog: %w", err)
		}
		// From here the catalog holds only what the array hands it.
		if err := n.putLastMember(now); err != nil {
			return fmt.Errorf("node: resync catalog: %w", err)
		}
		n.log.Warn("node: catalog dropped (resync-catalog); anti-entropy brings the array's, copies no entry lists are removed as orphans", "entries_dropped", k)
		return nil
	}
	if n.cat.Len() == 0 {
		return nil
	}
	last, ok := n.lastMember()
	if !ok {
		var v uint64
		n.cat.ForEach(func(e *catalog.Entry) bool { v = max(v, e.Version); return true })
		last = time.Unix(0, int64(v))
	}
	if away := now.Sub(last); away > n.conf().Tuning.TombstoneTTL {
		return fmt.Errorf("%w: %s was last in step with the array %v ago (at %s), tombstone-ttl is %v; "+
			"deletions made meanwhile may be forgotten and its catalog would bring those messages back: "+
			"start it once with --resync-catalog to drop its catalog and take the array's (docs/deploy.md section 7)",
			ErrAwayTooLong, n.conf().Name, away.Truncate(time.Millisecond), last.UTC().Format(time.RFC3339), n.conf().Tuning.TombstoneTTL)
	}
	return nil
}
