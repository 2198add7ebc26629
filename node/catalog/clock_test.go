package catalog

import (
	"log/slog"
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
