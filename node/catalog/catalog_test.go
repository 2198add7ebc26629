package catalog

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/store"
)

func openCatalog(t testing.TB, path string) (*Catalog, *store.Store) {
	st, err := store.Open(store.DefaultOptions(path))
	require.NoError(t, err)
	c, err := Open(st, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return c, st
}

func entry(id string, v uint64, s State, locs ...string) Entry {
	return Entry{ID: id, Mailbox: "a@x.test", Size: 10, Received: 1, Version: v, State: s, Locations: locs}
}

func TestEncodeRoundTrip(t *testing.T) {
	e := Entry{ID: "01a2.0", Mailbox: "alice@example.com", Size: 4321, Received: 1700000000000000000, Sum: [32]byte{1, 2, 3},
		Locations: []string{"n1", "n2"}, Flags: []string{`\Seen`}, State: Committed, Version: 99, UID: 7, Trace: []string{"antivirus: accept: clean"}}
	got, err := Decode(e.Encode(nil))
	require.NoError(t, err)
	assert.Equal(t, e, got)
	for _, bad := range [][]byte{nil, {2}, {1, 9}, append(e.Encode(nil), 0)} {
		_, err := Decode(bad)
		assert.ErrorIs(t, err, ErrBadEncoding, "%x", bad)
	}
}

func TestMergeIsAJoin(t *testing.T) {
	// Every order of applying the same versions ends in the same entry:
	// deletion wins, then the higher version, then committed over pending.
	versions := []Entry{
		entry("m", 1, Pending, "n1", "n2"),
		entry("m", 2, Committed, "n1", "n2"),
		entry("m", 5, Committed, "n2", "n3"),
		entry("m", 3, Deleted, "n1", "n2"),
	}
	want := versions[3]
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 20; trial++ {
		c, _ := openCatalog(t, filepath.Join(t.TempDir(), "c.db"))
		perm := r.Perm(len(versions))
		for _, i := range perm {
			_, err := c.Apply(versions[i])
			require.NoError(t, err)
			_, err = c.Apply(versions[i]) // idempotent
			require.NoError(t, err)
		}
		got, ok := c.Get("m")
		require.True(t, ok)
		assert.Equal(t, want.Version, got.Version, "order %v", perm)
		assert.Equal(t, Deleted, got.State, "order %v", perm)
		assert.Empty(t, c.List("a@x.test"), "a deleted entry is not listed")
	}
}

func TestListShowsOnlyCommitted(t *testing.T) {
	c, _ := openCatalog(t, filepath.Join(t.TempDir(), "c.db"))
	_, err := c.Apply(entry("b", 1, Committed), entry("a", 1, Committed), entry("p", 1, Pending), entry("d", 1, Deleted))
	require.NoError(t, err)
	var ids []string
	for _, e := range c.List("a@x.test") {
		ids = append(ids, e.ID)
	}
	assert.Equal(t, []string{"a", "b"}, ids, "committed only, in id order")
	assert.Equal(t, map[State]int{Committed: 2, Pending: 1, Deleted: 1}, c.Counts())
}

func TestDigestAgreesAcrossReplicasAndRestart(t *testing.T) {
	dir := t.TempDir()
	a, sa := openCatalog(t, filepath.Join(dir, "a.db"))
	b, sb := openCatalog(t, filepath.Join(dir, "b.db"))
	var es []Entry
	for i := 0; i < 300; i++ {
		es = append(es, entry(fmt.Sprintf("%04d", i), uint64(i+1), Committed, "n1"))
	}
	_, err := a.Apply(es...)
	require.NoError(t, err)
	for i := len(es) - 1; i >= 0; i-- { // another order, in pieces
		_, err := b.Apply(es[i])
		require.NoError(t, err)
	}
	assert.Equal(t, a.Digest(), b.Digest())
	assert.Equal(t, a.BucketDigests(), b.BucketDigests())
	_, err = b.Apply(entry("0007", 1000, Deleted, "n1"))
	require.NoError(t, err)
	assert.NotEqual(t, a.Digest(), b.Digest(), "one change shows in the digest")
	d := b.BucketDigests()
	ad := a.BucketDigests()
	diff := 0
	for i := range d {
		if d[i] != ad[i] {
			diff++
			assert.Equal(t, BucketOf("0007"), i)
		}
	}
	assert.Equal(t, 1, diff, "exactly one bucket differs")
	// Reopening restores the same replica.
	want := b.Digest()
	sb.Close()
	b2, _ := openCatalog(t, filepath.Join(dir, "b.db"))
	assert.Equal(t, want, b2.Digest())
	sa.Close()
}

func TestCollectDropsOldTombstones(t *testing.T) {
	c, _ := openCatalog(t, filepath.Join(t.TempDir(), "c.db"))
	_, err := c.Apply(entry("old", 10, Deleted), entry("new", 1000, Deleted), entry("live", 5, Committed))
	require.NoError(t, err)
	n, err := c.Collect(100, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, ok := c.Get("old")
	assert.False(t, ok)
	_, ok = c.Get("new")
	assert.True(t, ok)
	// The anti-entropy bucket index follows: every id in its bucket once,
	// the collected one in none.
	bucketIDs := func(id string) []string {
		var ids []string
		for _, e := range c.Bucket(bucketOf(id)) {
			ids = append(ids, e.ID)
		}
		return ids
	}
	assert.NotContains(t, bucketIDs("old"), "old")
	for _, id := range []string{"new", "live"} {
		assert.Equal(t, 1, countOf(bucketIDs(id), id), "bucket of %s: %v", id, bucketIDs(id))
	}
	_, err = c.Apply(entry("new", 2000, Deleted)) // a newer version: not a second id
	require.NoError(t, err)
	assert.Equal(t, 1, countOf(bucketIDs("new"), "new"), "%v", bucketIDs("new"))
}

func countOf(ids []string, id string) (n int) {
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

func TestClockIsMonotonicAndAboveSeen(t *testing.T) {
	c, _ := openCatalog(t, filepath.Join(t.TempDir(), "c.db"))
	// Ahead of the wall clock, within what a peer may be ahead
	// (MaxAhead; far beyond it is refused: clock_test.go).
	far := uint64(time.Now().Add(MaxAhead / 2).UnixNano())
	_, err := c.Apply(entry("x", far, Committed))
	require.NoError(t, err)
	v1 := c.Now()
	v2 := c.Now()
	assert.Greater(t, v1, far, "a later local change outranks what the replica has seen")
	assert.Greater(t, v2, v1)
}

func FuzzDecode(f *testing.F) {
	seed := entry("a", 1, Committed, "n1")
	f.Add(seed.Encode(nil))
	f.Add([]byte{1, 1, 1, 1, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(e.Encode(nil))
		require.NoError(t, err)
		assert.Equal(t, e.ID, again.ID)
	})
}

func TestMergeKeepsAssignedUID(t *testing.T) {
	// An IMAP node assigns UID 5 (version 3); other writers make newer
	// versions from replicas that had not seen it (UID 0): a flag change,
	// a rebuild that moved a copy. Every order of arrival, repeated, ends
	// in the newest version with UID 5, on disk as in memory, with one
	// digest.
	withUID := func(e Entry, uid uint32, flags ...string) Entry { e.UID, e.Flags = uid, flags; return e }
	versions := []Entry{
		entry("m", 1, Pending, "n1", "n2"),
		entry("m", 2, Committed, "n1", "n2"),
		withUID(entry("m", 3, Committed, "n1", "n2"), 5),
		withUID(entry("m", 4, Committed, "n1", "n2"), 0, `\Seen`),
		entry("m", 6, Committed, "n2", "n3"),
	}
	r := rand.New(rand.NewPCG(3, 4))
	var digest string
	for trial := 0; trial < 30; trial++ {
		path := filepath.Join(t.TempDir(), "c.db")
		c, st := openCatalog(t, path)
		perm := r.Perm(len(versions))
		for _, i := range perm {
			_, err := c.Apply(versions[i])
			require.NoError(t, err)
			_, err = c.Apply(versions[i])
			require.NoError(t, err)
		}
		got, ok := c.Get("m")
		require.True(t, ok)
		assert.Equal(t, uint64(6), got.Version, "order %v: the newest version wins", perm)
		assert.Equal(t, []string{"n2", "n3"}, got.Locations, "order %v", perm)
		assert.Equal(t, uint32(5), got.UID, "order %v: the assigned UID sticks", perm)
		assert.Equal(t, uint32(5), c.MaxUID("a@x.test"), "order %v", perm)
		if digest == "" {
			digest = c.Digest()
		}
		assert.Equal(t, digest, c.Digest(), "order %v: one digest whatever the order", perm)
		st.Close()
		c2, st2 := openCatalog(t, path)
		got2, _ := c2.Get("m")
		assert.Equal(t, got, got2, "order %v: the store merged like memory", perm)
		assert.Equal(t, digest, c2.Digest())
		st2.Close()
	}
}

func TestMergeUIDIsAJoin(t *testing.T) {
	// Merge is commutative, associative and idempotent, including two
	// versions that differ only in their UIDs (equal rank) and a higher
	// UID replacing a lower one (duplicate repair).
	mk := func(v uint64, s State, uid uint32, locs ...string) Entry {
		e := entry("m", v, s, locs...)
		e.UID = uid
		return e
	}
	vs := []Entry{
		mk(2, Committed, 0, "n1"), mk(2, Committed, 7, "n1"), mk(3, Committed, 4, "n2"),
		mk(3, Committed, 0, "n3"), mk(5, Deleted, 0, "n1"), mk(4, Pending, 9, "n1"),
	}
	for _, a := range vs {
		for _, b := range vs {
			ab, ba := Merge(&a, &b), Merge(&b, &a)
			assert.Equal(t, ab, ba, "commutative: %v %v", a, b)
			aa := Merge(&a, &a)
			assert.Equal(t, a, aa, "idempotent")
			for _, c := range vs {
				x, y := Merge(&ab, &c), Merge(&b, &c)
				y = Merge(&a, &y)
				assert.Equal(t, x, y, "associative: %v %v %v", a, b, c)
			}
		}
	}
	a, b := mk(3, Committed, 0, "n1"), mk(3, Committed, 8, "n1")
	assert.True(t, Wins(&b, &a), "a higher UID alone changes the replica")
	assert.False(t, Wins(&a, &b), "a missing UID does not")
	assert.Equal(t, uint32(8), Merge(&a, &b).UID)
}

func TestDigestSeesUIDs(t *testing.T) {
	dir := t.TempDir()
	a, _ := openCatalog(t, filepath.Join(dir, "a.db"))
	b, _ := openCatalog(t, filepath.Join(dir, "b.db"))
	e := entry("m", 2, Committed, "n1")
	_, err := a.Apply(e)
	require.NoError(t, err)
	e.UID = 3
	_, err = b.Apply(e)
	require.NoError(t, err)
	assert.NotEqual(t, a.Digest(), b.Digest(), "one version with and without its UID: anti-entropy must exchange it")
	changed, err := a.Apply(e)
	require.NoError(t, err)
	assert.Len(t, changed, 1, "the UID alone is a change")
	assert.Equal(t, a.Digest(), b.Digest())
}

func TestCollectKeepsHighestUIDTombstone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	c, st := openCatalog(t, path)
	low, high := entry("low", 10, Deleted), entry("high", 11, Deleted)
	low.UID, high.UID = 1, 2
	_, err := c.Apply(low, high, entry("live", 5, Committed))
	require.NoError(t, err)
	n, err := c.Collect(100, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "only the tombstone below the mailbox's highest UID goes")
	_, ok := c.Get("high")
	assert.True(t, ok, "the tombstone holding the highest UID stays")
	st.Close()
	c2, _ := openCatalog(t, path)
	assert.Equal(t, uint32(2), c2.MaxUID("a@x.test"), "the highest UID survives a restart")
}

// TestPendingIndex: ForEachPending visits exactly the pending entries,
// as they change state, and after a restart.
func TestPendingIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	c, st := openCatalog(t, path)
	pending := func(c *Catalog) map[string]uint64 {
		out := map[string]uint64{}
		c.ForEachPending(func(e *Entry) bool { out[e.ID] = e.Version; return true })
		return out
	}
	_, err := c.Apply(entry("a", 1, Pending), entry("b", 1, Pending), entry("c", 1, Committed), entry("d", 1, Pending))
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{"a": 1, "b": 1, "d": 1}, pending(c))
	_, err = c.Apply(entry("a", 2, Committed), entry("b", 3, Pending), entry("d", 2, Deleted))
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{"b": 3}, pending(c), "resolved entries leave, a newer pending version replaces")
	_, err = c.Apply(entry("b", 2, Committed)) // older: loses
	require.NoError(t, err)
	assert.Equal(t, map[string]uint64{"b": 3}, pending(c))
	n := 0
	c.ForEachPending(func(*Entry) bool { n++; return false })
	assert.Equal(t, 1, n, "fn returning false stops the walk")
	require.NoError(t, st.Close())
	c, _ = openCatalog(t, path)
	assert.Equal(t, map[string]uint64{"b": 3}, pending(c), "rebuilt when the replica loads")
	assert.Equal(t, map[State]int{Committed: 2, Pending: 1, Deleted: 1}, c.Counts())
}

// Encode sizes its buffer once: an entry is encoded on every holder and in
// every replication frame, and append's growth from nil allocated several
// times per entry.
func TestEncodeAllocatesOnce(t *testing.T) {
	full := Entry{ID: "01a25149bc526e6cab0678.0", Mailbox: "alice@example.com", Size: 4321, Received: 1700000000000000000,
		Sum: [32]byte{1}, Locations: []string{"n1", "n2"}, Flags: []string{`\Seen`, `\Answered`}, State: Pending, Version: 1 << 62,
		UID: 1 << 31, Trace: []string{"antivirus: accept: clean (1 parts, 8486 bytes scanned)", "spam: accept: not listed"},
		Origin: "n1", Boot: 1 << 63}
	tests := []struct {
		name string
		e    Entry
	}{
		{"final", entry("01a2.0", 99, Committed, "n1", "n2")},
		{"pending with origin, every field", full},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := tt.e.Encode(nil)
			if got, bound := len(enc), tt.e.encodedSize(); got > bound {
				t.Errorf("encoded %d bytes, want at most encodedSize %d", got, bound)
			}
			got, err := Decode(enc)
			require.NoError(t, err)
			assert.Equal(t, tt.e, got)
			if raceEnabled {
				return // the race detector's instrumentation allocates too
			}
			if allocs := testing.AllocsPerRun(100, func() { tt.e.Encode(nil) }); allocs != 1 {
				t.Errorf("Encode(nil) allocated %v times, want 1", allocs)
			}
		})
	}
}
