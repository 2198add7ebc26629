package store

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStoreSyncsByDefault: a store opened with the default options
// fsyncs every commit, before and after writes; only Options.NoSync (the
// simulator) turns that off, and Syncing sees the difference.
func TestStoreSyncsByDefault(t *testing.T) {
	s := open(t)
	assert.True(t, s.Syncing(), "default options: fsync on")
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "a", Data: []byte("hello")}}}))
	assert.True(t, s.Syncing(), "still on after a write")

	opts := DefaultOptions(filepath.Join(t.TempDir(), "sim.db"))
	opts.NoSync = true
	sim, err := Open(opts)
	require.NoError(t, err)
	defer sim.Close()
	assert.False(t, sim.Syncing(), "NoSync (simulator only) turns it off")
}
