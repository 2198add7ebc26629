package catalog

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHorizonCollectsBelowAndPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	c, st := openCatalog(t, path)
	_, err := c.Apply(entry("old-tomb", 100, Deleted, "n1"), entry("new-tomb", 300, Deleted, "n1"), entry("old-live", 50, Committed, "n1"))
	require.NoError(t, err)
	k, err := c.RaiseHorizon(200)
	require.NoError(t, err)
	assert.Equal(t, 1, k, "one tombstone below the horizon")
	for id, want := range map[string]bool{"old-tomb": false, "new-tomb": true, "old-live": true} {
		_, ok := c.Get(id)
		assert.Equal(t, want, ok, "%s kept", id)
	}
	k, err = c.RaiseHorizon(150)
	require.NoError(t, err)
	assert.Zero(t, k)
	assert.Equal(t, uint64(200), c.Horizon(), "the horizon never goes down")
	assert.False(t, c.Complete(), "a replica that started empty is incomplete until the node marks it")
	require.NoError(t, c.MarkComplete())
	require.NoError(t, st.Close())

	c, _ = openCatalog(t, path)
	assert.Equal(t, uint64(200), c.Horizon(), "the horizon survives a restart")
	assert.True(t, c.Complete(), "complete survives a restart")
	_, ok := c.Get("old-tomb")
	assert.False(t, ok)
}

func TestHorizonNoReapplyBelow(t *testing.T) {
	const h = 1000
	for _, tc := range []struct {
		name     string
		complete bool
		have     *Entry // held before
		in       Entry
		want     State // state held after; 255: absent
	}{
		{"tombstone below, absent: dropped", true, nil, entry("m", 500, Deleted), 255},
		{"tombstone below, absent, incomplete replica: dropped", false, nil, entry("m", 500, Deleted), 255},
		{"live below, absent, complete: a collected id, not resurrected", true, nil, entry("m", 500, Committed), 255},
		{"live below, absent, incomplete (new or resynced node): applied", false, nil, entry("m", 500, Committed), Committed},
		{"tombstone below, live held: deletion wins", true, ptr(entry("m", 400, Committed)), entry("m", 500, Deleted), Deleted},
		{"live above, absent: applied", true, nil, entry("m", 1500, Committed), Committed},
		{"tombstone above, absent: applied", true, nil, entry("m", 1500, Deleted), Deleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := openCatalog(t, filepath.Join(t.TempDir(), "c.db"))
			if tc.have != nil {
				_, err := c.Apply(*tc.have)
				require.NoError(t, err)
			}
			_, err := c.RaiseHorizon(h)
			require.NoError(t, err)
			if tc.complete {
				require.NoError(t, c.MarkComplete())
			}
			_, err = c.Apply(tc.in)
			require.NoError(t, err)
			got, ok := c.Get("m")
			if tc.want == 255 {
				assert.False(t, ok, "got %v", got)
				return
			}
			require.True(t, ok)
			assert.Equal(t, tc.want, got.State)
		})
	}
}

func TestHorizonKeepsTombstoneWithHighestUID(t *testing.T) {
	c, _ := openCatalog(t, filepath.Join(t.TempDir(), "c.db"))
	require.NoError(t, c.MarkComplete())
	_, err := c.RaiseHorizon(1000)
	require.NoError(t, err)
	top := entry("m", 500, Deleted)
	top.UID = 9
	_, err = c.Apply(top)
	require.NoError(t, err)
	assert.Equal(t, uint32(9), c.MaxUID("a@x.test"), "a tombstone carrying the mailbox's highest UID is kept: UIDs are never reused")
}

// A replica that collected and one that has not yet agree once both are
// at the same horizon, and anti-entropy between them in either state
// never brings the tombstone back.
func TestHorizonDigestsAgree(t *testing.T) {
	a, _ := openCatalog(t, filepath.Join(t.TempDir(), "a.db"))
	b, _ := openCatalog(t, filepath.Join(t.TempDir(), "b.db"))
	all := []Entry{entry("gone", 100, Deleted, "n1"), entry("kept", 50, Committed, "n1", "n2"), entry("new", 2000, Committed, "n2")}
	for _, c := range []*Catalog{a, b} {
		_, err := c.Apply(all...)
		require.NoError(t, err)
	}
	require.Equal(t, a.Digest(), b.Digest())

	_, err := a.RaiseHorizon(1000)
	require.NoError(t, err)
	before := a.Digest()
	// b, not yet at the horizon, offers its buckets to a, as anti-entropy
	// does while the digests differ: a keeps nothing of it.
	for bk := 0; bk < Buckets; bk++ {
		if a.BucketDigest(bk) != b.BucketDigest(bk) {
			_, err := a.Apply(b.Bucket(bk)...)
			require.NoError(t, err)
		}
	}
	assert.Equal(t, before, a.Digest(), "the collected tombstone is not re-applied")
	_, ok := a.Get("gone")
	assert.False(t, ok)

	_, err = b.RaiseHorizon(a.Horizon())
	require.NoError(t, err)
	assert.Equal(t, a.Digest(), b.Digest(), "at one horizon, the digests agree")
	assert.Equal(t, a.BucketDigests(), b.BucketDigests())
}

func TestResetDropsEverythingAndIsIncomplete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	c, st := openCatalog(t, path)
	_, err := c.Apply(entry("x", 10, Committed, "n1"), entry("y", 20, Deleted, "n1"))
	require.NoError(t, err)
	require.NoError(t, c.MarkComplete())
	require.NoError(t, c.Reset())
	assert.Zero(t, c.Len())
	assert.False(t, c.Complete())
	assert.Empty(t, c.List("a@x.test"))
	require.NoError(t, st.Close())
	c, st = openCatalog(t, path)
	assert.Zero(t, c.Len(), "the reset is durable")
	assert.False(t, c.Complete(), "and stays incomplete until the node marks it")
	assert.True(t, c.WasReset(), "a reset replica waits for a complete one (a fresh replica does not)")
	require.NoError(t, c.MarkComplete())
	assert.False(t, c.WasReset())
	require.NoError(t, st.Close())

	fresh, _ := openCatalog(t, filepath.Join(t.TempDir(), "fresh.db"))
	assert.False(t, fresh.Complete())
	assert.False(t, fresh.WasReset())
}

func ptr(e Entry) *Entry { return &e }
