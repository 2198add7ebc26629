package replica

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/store"
)

// copyLog records rebuild's copy writes (node <- id).
type copyLog struct {
	mu     sync.Mutex
	writes []string
}

func (c *copyLog) write(_ context.Context, node string, _ []byte, e *catalog.Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, node+"<-"+e.ID)
	return nil
}

func (c *copyLog) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.writes...)
}

// holdEntry stores a copy of id on r and installs its committed entry.
func holdEntry(t *testing.T, r *Replicator, id string, locations ...string) catalog.Entry {
	t.Helper()
	data := []byte("Subject: " + id + "\r\n\r\nbody\r\n")
	sum := store.Checksum(data)
	e := catalog.Entry{ID: id, Mailbox: "alice@example.com", Size: int64(len(data)), Sum: sum, Locations: locations, State: catalog.Committed, Version: r.d.Catalog.Now()}
	require.NoError(t, r.d.Store.Write(&store.Batch{PutCopies: []store.Copy{{ID: e.ID, Data: data, Sum: sum}}, PutRecords: r.d.Catalog.Records(e)}))
	r.d.Catalog.Installed(e)
	return e
}

// A node that sees fewer live storage nodes than R — the last one up
// while the others stop, a minority side, a start before the join — must
// not unlist the holders it cannot see: their copies exist. (Issue 16: the
// last node of a stopping array rewrote every entry it held to list only
// itself, leaving one listed copy of messages that had two.)
func TestRebuildKeepsHoldersItCannotSee(t *testing.T) {
	ctx := context.Background()
	v := newRingView("n1")
	r := newMember(t, "n1", v, &askPeer{}, Tuning{})
	writes := &copyLog{}
	r.d.WriteCopy = writes.write
	a := holdEntry(t, r, "m-a", "n1", "n2")
	b := holdEntry(t, r, "m-b", "n3", "n1")

	r.rebuild(ctx)
	r.rebalance.Store(true) // a rebalance asked for on the same partial view
	r.rebuild(ctx)
	for _, want := range []catalog.Entry{a, b} {
		got, ok := r.d.Catalog.Get(want.ID)
		require.True(t, ok)
		assert.Equal(t, want.Locations, got.Locations, "%s: holders out of sight stay listed", want.ID)
		assert.Equal(t, want.Version, got.Version, "%s: not rewritten", want.ID)
	}
	assert.Empty(t, writes.got())

	// n3 is back: m-a gets its second live copy there and only then drops
	// n2; m-b already has R live holders and is left alone.
	v.set("n1", "n3")
	r.rebuild(ctx)
	got, _ := r.d.Catalog.Get("m-a")
	assert.ElementsMatch(t, []string{"n1", "n3"}, got.Locations)
	assert.Greater(t, got.Version, a.Version)
	got, _ = r.d.Catalog.Get("m-b")
	assert.Equal(t, b.Locations, got.Locations)
	assert.Equal(t, b.Version, got.Version)
	assert.Equal(t, []string{"n3<-m-a"}, writes.got())
}

// A repair that cannot reach R live holders (R=2, the ring has n1 and n3
// of a listed n2 and n4) keeps the unreachable holders listed beside the
// new one.
func TestRepairShortOfRKeepsOldHolders(t *testing.T) {
	ctx := context.Background()
	v := newRingView("n1", "n3")
	r := newMember(t, "n1", v, &askPeer{}, Tuning{})
	r.d.Replicas = 3
	writes := &copyLog{}
	r.d.WriteCopy = writes.write
	holdEntry(t, r, "m-c", "n1", "n2", "n4")
	r.rebuild(ctx)
	got, _ := r.d.Catalog.Get("m-c")
	assert.ElementsMatch(t, []string{"n1", "n3", "n2", "n4"}, got.Locations, "n3 added, n2 and n4 kept until R live copies exist")
	assert.Equal(t, []string{"n3<-m-c"}, writes.got())
	r.rebuild(ctx)
	assert.Equal(t, []string{"n3<-m-c"}, writes.got(), "nothing more to do on this ring")
}

// A node shutting down starts no more maintenance passes: the same short
// entry is repaired by a running loop and left alone by a stopped one.
func TestStopMaintenance(t *testing.T) {
	for _, stop := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			r := newMember(t, "n1", newRingView("n1", "n3"), &askPeer{}, Tuning{MaintainEvery: time.Second, OrphanGrace: time.Hour, AntiEntropyEvery: time.Hour, VerifyEvery: time.Hour, PendingTimeout: time.Hour, TombstoneTTL: 24 * time.Hour, CollectEvery: time.Hour})
			writes := &copyLog{}
			r.d.WriteCopy = writes.write
			holdEntry(t, r, "m-d", "n1", "n2")
			if stop {
				r.StopMaintenance()
			}
			var wg sync.WaitGroup
			r.Start(ctx, &wg)
			time.Sleep(10 * time.Second)
			synctest.Wait()
			cancel()
			wg.Wait()
			if stop {
				assert.Empty(t, writes.got(), "stopped: no repair")
			} else {
				assert.Equal(t, []string{"n3<-m-d"}, writes.got(), "running: repaired")
			}
		})
	}
}
