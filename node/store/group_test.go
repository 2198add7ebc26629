package store

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Writes queued while a group syncs share the next transaction and its
// fsync, and GroupStats counts the commits and the writes they carried:
// the figure behind "fsyncs per message" in docs/performance.md.
func TestGroupCommitSharesOneTransaction(t *testing.T) {
	const queued = 20
	syncing := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	opts := DefaultOptions(filepath.Join(t.TempDir(), "node.db"))
	// The first group's sync is held until every other write has queued.
	opts.Disk = func(int) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(syncing)
			<-release
		}
	}
	s, err := Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	before := s.GroupStats()

	var wg sync.WaitGroup
	wg.Go(func() { assert.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "first", Data: []byte("x")}}})) })
	<-syncing
	for i := range queued {
		wg.Go(func() {
			id := fmt.Sprintf("m%02d", i)
			assert.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: id, Data: []byte(id)}}, PutRecords: []Record{{ID: id, Value: []byte("e")}}}))
		})
	}
	require.Eventually(t, func() bool { return len(s.reqs) == queued }, 10*time.Second, time.Millisecond, "every write queued behind the syncing group")
	close(release)
	wg.Wait()

	got := s.GroupStats()
	want := GroupStats{Commits: 2, Writes: 1 + queued}
	assert.Equal(t, want, GroupStats{Commits: got.Commits - before.Commits, Writes: got.Writes - before.Writes},
		"one commit for the first write, one for the %d queued behind it", queued)
	for i := range queued {
		_, err := s.Get(fmt.Sprintf("m%02d", i))
		assert.NoError(t, err)
	}
}
