package store

import (
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/fault"
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

// syncHook is a fault hook that counts the store.sync questions and fails
// them while fail is set.
type syncHook struct {
	asked atomic.Int64
	fail  atomic.Bool
}

func (h *syncHook) ask(p fault.Point) error {
	if p != fault.StoreSync {
		return nil
	}
	h.asked.Add(1)
	if h.fail.Load() {
		return errors.New("test: sync refused")
	}
	return nil
}

// TestStoreAsksFaultHookAtSync: Options.Fault is asked at every group
// commit's sync point, so a node's fault hook reaches the store (the truth
// run's emulated slow disk is a hook that waits there); an error fails
// the write and nothing of it is stored.
func TestStoreAsksFaultHookAtSync(t *testing.T) {
	h := &syncHook{}
	opts := DefaultOptions(filepath.Join(t.TempDir(), "node.db"))
	opts.Fault = h.ask
	s, err := Open(opts)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "a", Data: []byte("hello")}}}))
	assert.Positive(t, h.asked.Load(), "the hook was asked at the sync point")
	h.fail.Store(true)
	assert.Error(t, s.Write(&Batch{PutCopies: []Copy{{ID: "b", Data: []byte("lost")}}}), "a refused sync fails the write")
	assert.True(t, s.Has("a"))
	assert.False(t, s.Has("b"), "nothing of a refused group is stored")
}
