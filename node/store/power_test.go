package store

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Condition polling of these tests.
const (
	waitFor = 5 * time.Second
	tick    = time.Millisecond
)

// gatedDisk is a Disk model whose every sync waits until the test lets
// it finish: a sync in flight is a group the disk has not made durable.
type gatedDisk struct {
	entered chan int      // a sync started (its bytes)
	release chan struct{} // finish one sync
}

func newGatedDisk() *gatedDisk {
	return &gatedDisk{entered: make(chan int), release: make(chan struct{})}
}

func (d *gatedDisk) Disk(bytes int) {
	d.entered <- bytes
	<-d.release
}

// ledger records what the store reported durable and dropped.
type ledger struct {
	mu                    sync.Mutex
	put, deleted, dropped []string
}

func (l *ledger) durable(put, deleted []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.put = append(l.put, put...)
	l.deleted = append(l.deleted, deleted...)
}

func (l *ledger) drop(put []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropped = append(l.dropped, put...)
}

func (l *ledger) snapshot() (put, deleted, dropped []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string{}, l.put...), append([]string{}, l.deleted...), append([]string{}, l.dropped...)
}

func putCopy(id string) *Batch {
	return &Batch{PutCopies: []Copy{{ID: id, Data: []byte("message " + id)}}}
}

// TestPowerOffKeepsExactlyTheSyncedGroups: a group whose sync returned is
// in the file; the group whose sync was in flight when the power went, and
// a write queued behind it, never reach the file, even though their syncs
// "finish" afterwards and the store is then closed (Close drains).
func TestPowerOffKeepsExactlyTheSyncedGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	disk, led := newGatedDisk(), &ledger{}
	opts := DefaultOptions(path)
	opts.Disk, opts.Durable, opts.Dropped = disk.Disk, led.durable, led.drop
	s, err := Open(opts)
	require.NoError(t, err)

	errs := make(chan error, 3)
	go func() { errs <- s.Write(putCopy("synced")) }()
	<-disk.entered
	disk.release <- struct{}{}
	require.NoError(t, <-errs)

	go func() { errs <- s.Write(putCopy("in-flight")) }()
	<-disk.entered // its sync is running
	go func() { errs <- s.Write(putCopy("queued")) }()
	require.Eventually(t, func() bool { return len(s.reqs) == 1 }, waitFor, tick, "the second write never queued")
	s.PowerOff()
	disk.release <- struct{}{} // the in-flight sync "completes" after the cut
	require.ErrorIs(t, <-errs, ErrPowerLost)
	// The queued one is dropped without waiting for a sync: the machine
	// is off.
	require.ErrorIs(t, <-errs, ErrPowerLost)
	require.ErrorIs(t, s.PutMeta("k", []byte("v")), ErrPowerLost)
	require.NoError(t, s.Close())

	put, deleted, dropped := led.snapshot()
	assert.Equal(t, []string{"synced"}, put, "durable")
	assert.Empty(t, deleted)
	assert.Equal(t, []string{"in-flight", "queued"}, dropped, "dropped")

	s, err = Open(DefaultOptions(path))
	require.NoError(t, err)
	defer s.Close()
	assert.True(t, s.Has("synced"), "a synced group was lost")
	assert.False(t, s.Has("in-flight"), "a group whose sync had not returned reached the file")
	assert.False(t, s.Has("queued"), "a write queued at the power loss reached the file")
	assert.Nil(t, s.GetMeta("k"))
}

// TestDurableReportsPutsAndDeletes: the ledger hears of every copy put and
// deleted, once per committed group.
func TestDurableReportsPutsAndDeletes(t *testing.T) {
	led := &ledger{}
	opts := DefaultOptions(filepath.Join(t.TempDir(), "node.db"))
	opts.Durable = led.durable
	s, err := Open(opts)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Write(putCopy("a")))
	require.NoError(t, s.Write(&Batch{PutRecords: []Record{{ID: "a", Value: []byte("entry")}}}))
	require.NoError(t, s.Write(&Batch{DeleteCopies: []string{"a"}}))
	put, deleted, dropped := led.snapshot()
	assert.Equal(t, []string{"a"}, put)
	assert.Equal(t, []string{"a"}, deleted)
	assert.Empty(t, dropped)
}

// TestBackupIsTheStateAtItsInstant: a backup holds what was committed when
// it was taken, not what came after.
func TestBackupIsTheStateAtItsInstant(t *testing.T) {
	s := open(t)
	require.NoError(t, s.Write(putCopy("before")))
	bak := filepath.Join(t.TempDir(), "backup.db")
	require.NoError(t, s.Backup(bak))
	require.NoError(t, s.Write(putCopy("after")))

	b, err := Open(DefaultOptions(bak))
	require.NoError(t, err)
	defer b.Close()
	assert.True(t, b.Has("before"))
	assert.False(t, b.Has("after"))
}
