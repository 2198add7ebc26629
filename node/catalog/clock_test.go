package catalog

import (
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/store"
)

// TestWithWall: versions follow the node's wall clock, not time.Now, and
// never go back when that clock is stepped back (the hybrid clock).
func TestWithWall(t *testing.T) {
	st, err := store.Open(store.DefaultOptions(filepath.Join(t.TempDir(), "node.db")))
	require.NoError(t, err)
	defer st.Close()
	wall := time.Now().Add(time.Hour)
	c, err := Open(st, slog.New(slog.DiscardHandler), WithWall(func() time.Time { return wall }))
	require.NoError(t, err)
	v := c.Now()
	assert.GreaterOrEqual(t, v, uint64(wall.UnixNano()), "a version from the skewed wall clock")
	assert.Greater(t, v, uint64(time.Now().Add(59*time.Minute).UnixNano()), "not from time.Now")
	wall = wall.Add(-2 * time.Hour) // stepped back
	assert.Greater(t, c.Now(), v, "versions only grow")
}

// A peer's entry stamped near 2^64 must not reach the catalog nor drag
// the hybrid clock (and so every version this node stamps) to its end; a
// peer a minute ahead, a plausible skew, is still taken.
func TestApplyRefusesVersionsFarInTheFuture(t *testing.T) {
	c, _ := openCatalog(t, filepath.Join(t.TempDir(), "node.db"))
	now := uint64(time.Now().UnixNano())
	tests := []struct {
		id      string
		version uint64
		want    bool // merged
	}{
		{"far", math.MaxUint64 - 10, false},
		{"two-hours", now + uint64(2*time.Hour), false},
		{"a-minute", now + uint64(time.Minute), true},
		{"past", now - uint64(time.Hour), true},
	}
	for _, tc := range tests {
		_, err := c.Apply(entry(tc.id, tc.version, Committed, "n2"))
		require.NoError(t, err)
		_, got := c.Get(tc.id)
		assert.Equal(t, tc.want, got, "entry %s (version %d) merged", tc.id, tc.version)
	}
	v := c.Now()
	assert.Less(t, v, now+uint64(2*time.Hour), "the clock stays near the wall clock")
	assert.Greater(t, c.Now(), v, "and keeps growing")
}

// Refused versions are counted, and CheckVersion (a copy PUT's entry)
// applies the same bound.
func TestFutureRefusedCounted(t *testing.T) {
	c, _ := openCatalog(t, filepath.Join(t.TempDir(), "node.db"))
	far := entry("far", math.MaxUint64, Committed, "n2")
	_, err := c.Apply(far, entry("far2", math.MaxUint64-1, Pending, "n2"), entry("ok", c.Now(), Committed, "n2"))
	require.NoError(t, err)
	assert.Equal(t, int64(2), c.FutureRefused())
	_, ok := c.Get("ok")
	assert.True(t, ok, "the rest of the batch is merged")
	require.ErrorIs(t, c.CheckVersion(&far), ErrFutureVersion)
	assert.Equal(t, int64(3), c.FutureRefused())
	ok2 := entry("ok2", c.Now(), Pending, "n2")
	assert.NoError(t, c.CheckVersion(&ok2))
}
