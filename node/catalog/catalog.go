package catalog

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailarray/node/fault"
	"mailarray/node/store"
)

// Buckets is the number of anti-entropy buckets. A round transfers every
// bucket whose digests differ, whole; under load the entries in flight
// make some differ every round, so buckets are kept small: with 256, a
// round at 100,000 entries moved ~400 entries per differing bucket (the
// digests themselves are 8 bytes per bucket per round).
const Buckets = 4096

// Catalog is one node's replica of the tracking catalog. Safe for
// concurrent use. Writes are durable before they are visible.
type Catalog struct {
	st  *store.Store
	log *slog.Logger

	mu        sync.RWMutex
	entries   map[string]*Entry
	byMailbox map[string]*mailboxIndex
	buckets   [Buckets]uint64 // XOR of entry hashes per bucket
	// bucketIDs indexes the ids of each bucket, so that anti-entropy's
	// Bucket reads one bucket instead of scanning the whole catalog (a
	// full scan per bucket made rounds quadratic in the catalog's size).
	// Unordered (Bucket sorts): an id is appended when its entry first
	// arrives, cheaper than a map insert on every new entry; Collect,
	// rare, removes by a scan of the bucket.
	bucketIDs [Buckets][]string
	// pending indexes the pending entries, which pending resolution
	// visits every maintenance round: a scan of the whole catalog per
	// round cost more than the resolution itself.
	pending map[string]*Entry
	clock   uint64 // hybrid logical clock, ns
	subs    []func([]Entry)
	// horizon and complete: see the horizon rules (horizon.go).
	horizon  uint64
	complete bool
	reset    bool

	wall func() time.Time // the node's wall clock (WithWall); nil: time.Now
	// futureRefused counts entries refused for a version too far ahead
	// (clock.go).
	futureRefused atomic.Int64
}

type mailboxIndex struct {
	ids    map[string]struct{} // live (committed) entries
	sorted []string            // cache of ids in order; nil when stale
	maxUID uint32
}

// Open loads the catalog replica held in st.
func Open(st *store.Store, log *slog.Logger, opts ...Option) (*Catalog, error) {
	c := &Catalog{st: st, log: log, entries: map[string]*Entry{}, byMailbox: map[string]*mailboxIndex{}, pending: map[string]*Entry{}}
	for _, o := range opts {
		o(c)
	}
	var bad int
	err := st.Records(func(id string, v []byte) error {
		e, err := Decode(v)
		if err != nil || e.ID != id {
			bad++
			return nil
		}
		c.installLocked(&e)
		c.observeLocked(e.Version)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: load: %w", err)
	}
	if bad > 0 {
		log.Warn("catalog: skipped undecodable records; anti-entropy will restore them", "count", bad)
	}
	if err := c.loadHorizon(); err != nil {
		return nil, err
	}
	return c, nil
}

// Now returns a fresh version from the hybrid logical clock: above every
// version this replica has seen and, clocks permitting, the wall time.
func (c *Catalog) Now() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tickLocked()
}

func (c *Catalog) tickLocked() uint64 {
	c.clock = max(c.clock+1, c.wallNanos())
	return c.clock
}

// Records returns the store writes that merge entries into the replica.
// Callers that write copies add these to the same store.Batch so a copy and
// its entry land together; after the batch is durable they call Installed.
func (c *Catalog) Records(entries ...Entry) []store.Record {
	recs := make([]store.Record, len(entries))
	for i := range entries {
		e := entries[i]
		enc := e.Encode(nil)
		recs[i] = store.Record{ID: e.ID, Value: enc, Merge: func(old []byte) []byte {
			if old == nil {
				return enc
			}
			cur, err := Decode(old)
			switch {
			case err != nil:
				return enc
			case !Wins(&e, &cur):
				return nil
			case rank(&e, &cur) > 0 && e.UID >= cur.UID:
				return enc
			}
			m := Merge(&cur, &e) // keeps the stored UID (see Merge)
			return m.Encode(nil)
		}}
	}
	return recs
}

// Apply merges entries durably and returns those that changed the replica.
func (c *Catalog) Apply(entries ...Entry) ([]Entry, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	// A version far ahead of our clock would drag the hybrid clock with
	// it, to 2^64 at worst (clock.go).
	entries = c.dropFuture(entries)
	// Skip entries the replica already has at this version or better: the
	// common case for pushed and anti-entropy entries.
	fresh := entries[:0:0]
	c.mu.RLock()
	for i := range entries {
		cur, ok := c.entries[entries[i].ID]
		if (!ok && !c.belowHorizonLocked(&entries[i])) || (ok && Wins(&entries[i], cur)) {
			fresh = append(fresh, entries[i])
		}
	}
	c.mu.RUnlock()
	if len(fresh) == 0 {
		return nil, nil
	}
	// The merge is not applied. The catalog has no fault hook: only the
	// failpoint, whose where is the store's path (it names the node's
	// data directory).
	if err := fault.Inject(nil, fault.CatalogApply, c.st.Path()); err != nil {
		return nil, fmt.Errorf("catalog: apply: %w", err)
	}
	if err := c.st.Write(&store.Batch{PutRecords: c.Records(fresh...)}); err != nil {
		return nil, fmt.Errorf("catalog: apply: %w", err)
	}
	return c.Installed(fresh...), nil
}

// Installed merges entries that are already durable into memory and
// returns those that changed it, as merged (see Merge).
func (c *Catalog) Installed(entries ...Entry) []Entry {
	var changed []Entry
	c.mu.Lock()
	for i := range entries {
		e := entries[i]
		if cur, ok := c.entries[e.ID]; ok {
			if !Wins(&e, cur) {
				continue
			}
			e = Merge(cur, &e)
		}
		e.Locations = slices.Clone(e.Locations)
		e.Flags = slices.Clone(e.Flags)
		e.Trace = slices.Clone(e.Trace)
		c.installLocked(&e)
		c.observeLocked(e.Version)
		changed = append(changed, e)
	}
	subs := c.subs
	c.mu.Unlock()
	if len(changed) > 0 {
		for _, fn := range subs {
			fn(changed)
		}
	}
	return changed
}

// OnChange registers fn to be called with every batch of changed entries,
// after they are durable, from the goroutine that applied them. fn must not
// block for long and must not call back into a write of the catalog.
func (c *Catalog) OnChange(fn func([]Entry)) {
	c.mu.Lock()
	c.subs = append(c.subs, fn)
	c.mu.Unlock()
}

func (c *Catalog) installLocked(e *Entry) {
	b := bucketOf(e.ID)
	old, ok := c.entries[e.ID]
	if ok {
		c.buckets[b] ^= entryHash(old)
		if old.Live() {
			if mi := c.byMailbox[old.Mailbox]; mi != nil {
				delete(mi.ids, old.ID)
				mi.sorted = nil
			}
		}
		if old.State == Pending && e.State != Pending {
			delete(c.pending, e.ID)
		}
	} else {
		c.bucketIDs[b] = append(c.bucketIDs[b], e.ID)
	}
	if e.State == Pending {
		c.pending[e.ID] = e
	}
	c.entries[e.ID] = e
	c.buckets[b] ^= entryHash(e)
	mi := c.byMailbox[e.Mailbox]
	if mi == nil {
		mi = &mailboxIndex{ids: map[string]struct{}{}}
		c.byMailbox[e.Mailbox] = mi
	}
	mi.maxUID = max(mi.maxUID, e.UID)
	if e.Live() {
		mi.ids[e.ID] = struct{}{}
		mi.sorted = nil
	}
}

// Get returns the replica's entry for id.
func (c *Catalog) Get(id string) (Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.entries[id]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// List returns the mailbox's live entries, oldest first (ids are ordered by
// acceptance time). The slices inside entries are shared: do not modify.
func (c *Catalog) List(mailbox string) []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	mi := c.byMailbox[mailbox]
	if mi == nil {
		return nil
	}
	if mi.sorted == nil {
		mi.sorted = make([]string, 0, len(mi.ids))
		for id := range mi.ids {
			mi.sorted = append(mi.sorted, id)
		}
		slices.Sort(mi.sorted)
	}
	out := make([]Entry, len(mi.sorted))
	for i, id := range mi.sorted {
		out[i] = *c.entries[id]
	}
	return out
}

// MaxUID is the highest UID the replica has seen in mailbox.
func (c *Catalog) MaxUID(mailbox string) uint32 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if mi := c.byMailbox[mailbox]; mi != nil {
		return mi.maxUID
	}
	return 0
}

// ForEach calls fn with every entry in unspecified order, under a read
// lock: fn must be quick and must not call the catalog.
func (c *Catalog) ForEach(fn func(e *Entry) bool) { c.each(c.entries, fn) }

// ForEachPending is ForEach over the pending entries only.
func (c *Catalog) ForEachPending(fn func(e *Entry) bool) { c.each(c.pending, fn) }

func (c *Catalog) each(m map[string]*Entry, fn func(e *Entry) bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range m {
		if !fn(e) {
			return
		}
	}
}

// Len counts entries (tombstones included).
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Counts summarises the replica by state.
func (c *Catalog) Counts() map[State]int {
	out := map[State]int{}
	c.ForEach(func(e *Entry) bool { out[e.State]++; return true })
	return out
}

// BucketDigests returns the per-bucket digests anti-entropy compares.
func (c *Catalog) BucketDigests() [Buckets]uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.buckets
}

// BucketDigest returns the digest of bucket b.
func (c *Catalog) BucketDigest(b int) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.buckets[b]
}

// Bucket returns every entry of bucket b.
func (c *Catalog) Bucket(b int) []Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []Entry
	if b < 0 || b >= Buckets {
		return nil
	}
	for _, id := range c.bucketIDs[b] {
		out = append(out, *c.entries[id])
	}
	slices.SortFunc(out, func(x, y Entry) int { return strings.Compare(x.ID, y.ID) })
	return out
}

// Digest summarises the whole replica: equal digests mean equal catalogs.
func (c *Catalog) Digest() string {
	d := c.BucketDigests()
	h := sha256.New()
	var b [8]byte
	for _, v := range d {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Collect removes tombstones whose version is older than cutoff (unix ns)
// from the store and memory, and returns how many (the lowest ids first, at
// most limit). It acts on this replica alone, with no horizon: anti-entropy
// hands what it removed back. Nodes collect through RaiseHorizon, whose
// rules (horizon.go) make the replicas forget together.
func (c *Catalog) Collect(cutoff uint64, limit int) (int, error) {
	ids := c.collectable(cutoff)
	ids = ids[:min(len(ids), limit)]
	if err := c.remove(ids); err != nil {
		return 0, err
	}
	return len(ids), nil
}

// collectable returns the ids of the tombstones Collect removes below
// cutoff, sorted: map order is random, and a limited pass must remove the
// same ones on every replica (and the simulator must replay).
func (c *Catalog) collectable(cutoff uint64) []string {
	var ids []string
	c.mu.RLock()
	for id, e := range c.entries {
		if e.State == Deleted && e.Version < cutoff && !c.holdsMaxUIDLocked(e) {
			ids = append(ids, id)
		}
	}
	c.mu.RUnlock()
	slices.Sort(ids)
	return ids
}

// remove deletes tombstones (and any copies) durably, then from memory.
func (c *Catalog) remove(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := c.st.Write(&store.Batch{DeleteRecords: ids, DeleteCopies: ids}); err != nil {
		return fmt.Errorf("catalog: collect: %w", err)
	}
	c.mu.Lock()
	for _, id := range ids {
		if e, ok := c.entries[id]; ok && e.State == Deleted {
			b := bucketOf(id)
			c.buckets[b] ^= entryHash(e)
			delete(c.entries, id)
			c.bucketIDs[b] = slices.DeleteFunc(c.bucketIDs[b], func(x string) bool { return x == id })
		}
	}
	c.mu.Unlock()
	return nil
}

// holdsMaxUIDLocked reports whether e carries its mailbox's highest UID.
// Collect keeps such a tombstone: it is what remembers the mailbox's
// highest UID across a restart (MaxUID is rebuilt from the entries), and
// forgetting it would let a later assignment hand the same UID to another
// message (IMAP forbids reuse within a UIDVALIDITY, RFC 9051 section 2.3.1.1).
func (c *Catalog) holdsMaxUIDLocked(e *Entry) bool {
	mi := c.byMailbox[e.Mailbox]
	return e.UID != 0 && mi != nil && e.UID >= mi.maxUID
}

func bucketOf(id string) int {
	// FNV-1a: cheap and stable; ids are not adversarial to the cluster.
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h % Buckets)
}

// BucketOf exposes the bucket of an id for anti-entropy peers.
func BucketOf(id string) int { return bucketOf(id) }

func entryHash(e *Entry) uint64 {
	h := sha256.New()
	h.Write([]byte(e.ID))
	var b [10]byte
	binary.LittleEndian.PutUint64(b[:], e.Version)
	b[8] = byte(e.State)
	b[9] = byte(len(e.Locations))
	h.Write(b[:])
	for _, l := range e.Locations {
		h.Write([]byte(l))
		h.Write([]byte{0})
	}
	// The UID merges apart from the version (see Merge), so two replicas
	// may hold one version with different UIDs until they exchange it:
	// the digest must tell them apart. Entries without a UID hash as
	// before.
	if e.UID != 0 {
		var u [5]byte
		u[0] = 0xff
		binary.LittleEndian.PutUint32(u[1:], e.UID)
		h.Write(u[:])
	}
	var sum [32]byte
	return binary.LittleEndian.Uint64(h.Sum(sum[:0]))
}
