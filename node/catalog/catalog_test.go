package catalog

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"testing"

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
}

func TestClockIsMonotonicAndAboveSeen(t *testing.T) {
	c, _ := openCatalog(t, filepath.Join(t.TempDir(), "c.db"))
	far := uint64(1) << 62
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
