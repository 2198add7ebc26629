package catalog

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"mailarray/node/store"
)

// The collection horizon: how the array forgets deletions.
//
// A tombstone must stay until no replica can still hold, or later receive,
// a live version of its entry; forgetting it earlier lets anti-entropy
// hand the live version back (a deleted message returns), and forgetting
// it on one node only makes anti-entropy hand the tombstone straight back
// (nothing is ever collected). So the replicas collect together, below a
// horizon H, a version stamp, with these rules:
//
//  1. H is chosen by the node layer (node/horizon.go) so that every live
//     member has exchanged whole catalogs with every other live member
//     since H + tombstone-ttl: each member advertises the stamp from
//     which it has completed anti-entropy with every member it sees live
//     (its watermark), and H is the lowest of the members' watermarks
//     minus tombstone-ttl. A tombstone below H has therefore reached every
//     live member, so no live member still holds a live version of it.
//  2. H only rises. Replicas exchange their horizons at every anti-entropy
//     round and both take the higher (RaiseHorizon), before comparing
//     digests; each is persisted.
//  3. On raising H a replica removes every tombstone below it (store and
//     memory), so bucket digests never include a tombstone below H, and
//     two replicas at the same horizon with the same entries above it
//     have the same digests, whichever of them saw the tombstone.
//  4. Apply drops an entry below H whose id the replica does not hold:
//     a tombstone (there is nothing left to delete: it was collected
//     here, or the entry never reached this replica and never will), and,
//     once the replica is complete, a live version too. A complete replica
//     holds every entry the array held below H (rule 1 applied to live
//     entries), so an unknown id below H can only be one it collected:
//     the live version comes from a replica that missed the deletion (a
//     node back from a long absence) and must not resurrect it. A replica
//     that starts empty or resynced is incomplete until the node has
//     completed anti-entropy with every live member (MarkComplete): until
//     then it accepts old live entries, which it lacks legitimately. A
//     reset replica becomes complete only by a complete one (WasReset).
//  5. A node absent longer than tombstone-ttl may hold live versions of
//     tombstones collected meanwhile above what rule 4 filters (versions
//     it wrote just before leaving); it refuses to start (node/rejoin.go)
//     unless told to drop its catalog (Reset) and take the array's.
//
// The one exception to rule 3 is a tombstone holding its mailbox's
// highest UID (see holdsMaxUIDLocked), kept until a higher UID exists:
// replicas agree on it once they agree on the mailbox's entries.
//
// Safety rests on clocks agreeing within much less than tombstone-ttl
// (versions are hybrid logical clock stamps, rule 1 compares them with
// the time of the anti-entropy rounds).

// Meta keys of the horizon state (store meta).
const (
	metaHorizon    = "catalog.horizon"
	metaIncomplete = "catalog.incomplete"
)

// collectBatchMax bounds the records removed by one store batch while
// raising the horizon.
const collectBatchMax = 10000

// Values of metaIncomplete: why the replica is incomplete.
const (
	completeYes     = 0
	incompleteReset = 1 // dropped by Reset: the array's catalog is elsewhere
	incompleteFresh = 2 // empty when opened: a new node (or a new array)
)

// loadHorizon restores the persisted horizon state; an empty replica
// without state is incomplete (a new node).
func (c *Catalog) loadHorizon() error {
	if b := c.st.GetMeta(metaHorizon); len(b) == 8 {
		c.horizon = binary.BigEndian.Uint64(b)
	}
	why := byte(completeYes)
	if b := c.st.GetMeta(metaIncomplete); len(b) == 1 {
		why = b[0]
	}
	if why == completeYes && len(c.entries) == 0 {
		if err := c.st.PutMeta(metaIncomplete, []byte{incompleteFresh}); err != nil {
			return fmt.Errorf("catalog: mark incomplete: %w", err)
		}
		why = incompleteFresh
	}
	c.complete, c.reset = why == completeYes, why == incompleteReset
	return nil
}

// Horizon is the replica's collection horizon (a version stamp): no
// tombstone below it is kept (but see the package's horizon rules).
func (c *Catalog) Horizon() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.horizon
}

// Complete reports whether the replica holds every entry the array held
// below its horizon (rule 4).
func (c *Catalog) Complete() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.complete
}

// WasReset reports whether the replica is incomplete because Reset dropped
// it. Such a replica must take the catalog from a complete one: were every
// replica reset at once, the catalog would be gone, and marking them
// complete would let the nodes delete every copy as an orphan.
func (c *Catalog) WasReset() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.reset
}

// MarkComplete records that the replica has completed anti-entropy with
// every live member since it started empty or was reset.
func (c *Catalog) MarkComplete() error {
	c.mu.RLock()
	done := c.complete
	c.mu.RUnlock()
	if done {
		return nil
	}
	if err := c.st.PutMeta(metaIncomplete, []byte{completeYes}); err != nil {
		return fmt.Errorf("catalog: mark complete: %w", err)
	}
	c.mu.Lock()
	c.complete, c.reset = true, false
	c.mu.Unlock()
	return nil
}

// HorizonLimit is the highest horizon a peer may propose to this replica:
// a horizon is a watermark (a version stamp, at most MaxAhead ahead of
// this replica's wall clock, as CheckVersion enforces) minus ttl, the
// tombstone TTL. A horizon above it comes from a broken or hostile peer;
// adopting it would collect every tombstone at once and make Apply drop,
// as below the horizon, every entry stamped before it: new mail included.
func (c *Catalog) HorizonLimit(ttl time.Duration) uint64 {
	limit := c.wallNanos() + uint64(MaxAhead)
	if uint64(ttl) >= limit {
		return 0
	}
	return limit - uint64(ttl)
}

// RaiseHorizon raises the horizon to h if it is higher, persists it, and
// removes every tombstone below the horizon (rule 3). It returns how many
// were removed. Calling it with a lower h collects stragglers (tombstones
// that merged into a live entry below the horizon since the last raise).
func (c *Catalog) RaiseHorizon(h uint64) (int, error) {
	c.mu.Lock()
	raised := h > c.horizon
	if raised {
		c.horizon = h
	}
	h = c.horizon
	c.mu.Unlock()
	if raised {
		if err := c.st.PutMeta(metaHorizon, binary.BigEndian.AppendUint64(nil, h)); err != nil {
			return 0, fmt.Errorf("catalog: persist horizon: %w", err)
		}
	}
	ids := c.collectable(h)
	for done := 0; done < len(ids); done += collectBatchMax {
		if err := c.remove(ids[done:min(len(ids), done+collectBatchMax)]); err != nil {
			return done, err
		}
	}
	return len(ids), nil
}

// belowHorizonLocked reports whether Apply must drop e (rule 4): its id is
// absent and its version is below the horizon. A tombstone that would
// carry its mailbox's highest UID is kept, as Collect keeps it.
func (c *Catalog) belowHorizonLocked(e *Entry) bool {
	if e.Version >= c.horizon {
		return false
	}
	if e.State != Deleted {
		return c.complete
	}
	mi := c.byMailbox[e.Mailbox]
	return e.UID == 0 || (mi != nil && e.UID < mi.maxUID)
}

// Reset drops every entry of the replica, durably, and marks it
// incomplete: the node takes the array's catalog by anti-entropy instead
// of offering its own (a node back after longer than tombstone-ttl). The
// copies in the store stay; those no entry lists are orphans.
func (c *Catalog) Reset() error {
	if err := c.st.PutMeta(metaIncomplete, []byte{incompleteReset}); err != nil {
		return fmt.Errorf("catalog: reset: %w", err)
	}
	c.mu.Lock()
	ids := make([]string, 0, len(c.entries))
	for id := range c.entries {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	slices.Sort(ids)
	for len(ids) > 0 {
		k := min(len(ids), collectBatchMax)
		if err := c.st.Write(&store.Batch{DeleteRecords: ids[:k]}); err != nil {
			return fmt.Errorf("catalog: reset: %w", err)
		}
		ids = ids[k:]
	}
	c.mu.Lock()
	c.entries = map[string]*Entry{}
	c.byMailbox = map[string]*mailboxIndex{}
	c.buckets = [Buckets]uint64{}
	c.bucketIDs = [Buckets][]string{}
	c.pending = map[string]*Entry{}
	c.complete, c.reset = false, true
	c.mu.Unlock()
	return nil
}
