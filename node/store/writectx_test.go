package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A write to a stalled disk returns when its context ends (the delivery
// deadline bounds the local copy), and the write may still land once the
// disk recovers: callers must treat it as failed, not as absent.
func TestWriteContextReturnsWhileTheDiskStalls(t *testing.T) {
	stall := make(chan struct{})
	entered := make(chan struct{}, 16)
	opts := DefaultOptions(filepath.Join(t.TempDir(), "node.db"))
	opts.Disk = func(int) {
		entered <- struct{}{}
		<-stall
	}
	s, err := Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.WriteContext(ctx, &Batch{PutCopies: []Copy{{ID: "a", Data: []byte("hello")}}})
	}()
	<-entered // the writer is inside the stalled sync
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled, "the write gives up with its context")
	case <-time.After(time.Minute):
		t.Fatal("WriteContext did not return after its context ended")
	}
	require.False(t, s.Has("a"), "nothing landed yet: the disk is stalled")
	close(stall)
	// The abandoned write lands once the disk recovers; a new write after
	// it is served by the same writer (group commit still runs).
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "b", Data: []byte("world")}}}))
	require.True(t, s.Has("a"), "the abandoned write landed later")
	require.True(t, s.Has("b"))
}
