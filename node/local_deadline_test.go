package node

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

// stallDisk is an env.Cost whose Disk, once armed, blocks until released:
// a disk whose writes hang. The store calls Disk before each group commit
// (store.Options.Disk), so every write of the node waits, as on a real
// stalled disk, and not only the copy write a fault hook would stop.
type stallDisk struct {
	armed    atomic.Bool
	released atomic.Bool
	once     sync.Once // closes entered
	relOnce  sync.Once // closes release
	entered  chan struct{}
	release  chan struct{}
}

func newStallDisk() *stallDisk {
	return &stallDisk{entered: make(chan struct{}), release: make(chan struct{})}
}

func (d *stallDisk) Disk(int) {
	if d.armed.Load() {
		d.once.Do(func() { close(d.entered) })
		<-d.release
	}
}

func (d *stallDisk) CPU(int) {}

// unstall releases every write waiting on the disk, and every later one.
func (d *stallDisk) unstall() {
	d.relOnce.Do(func() {
		d.released.Store(true)
		close(d.release)
	})
}

var _ env.Cost = (*stallDisk)(nil)

// stalledDiskBound is how long the test lets a delivery wait on the
// stalled disk before it releases the disk and fails. It is no timing
// claim: the delivery must answer while the disk is still stalled, and a
// delivery that waits for the disk waits forever, so the bound only caps
// the test's failure and is far above anything a loaded machine needs to
// run a copy deadline (copyTimeout) and one fallback copy.
const stalledDiskBound = 60 * time.Second

// TestLocalWriteBoundedByDeliveryDeadline: the listener's disk stalls
// (for minutes, in the field); the delivery must still end with its copy
// placed elsewhere or a 451 while the disk is stalled, never wait for the
// disk. The 250, if any, names W copies on the nodes whose disks work
// (make mutants: local-write-no-deadline).
func TestLocalWriteBoundedByDeliveryDeadline(t *testing.T) {
	disk := newStallDisk()
	cl := newFaultyClusterWith(t, 3, 2, 2, func(name string, e *Env) {
		if name == "n1" {
			e.Cost = disk
		}
	})
	t.Cleanup(disk.unstall) // runs before the nodes close (cleanups run last first)
	disk.armed.Store(true)
	type result struct {
		text     string
		err      error
		released bool // the disk had been released when the reply came
	}
	done := make(chan result, 1)
	go func() {
		text, err := send(t, cl.nodes["n1"].Addr("smtp"), []string{"alice@example.com"}, testMessage("stalled disk", 900))
		done <- result{text, err, disk.released.Load()}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(stalledDiskBound):
		disk.unstall()
		r = <-done
	}
	select {
	case <-disk.entered:
	default:
		t.Fatal("the delivery never reached n1's disk: the test proves nothing")
	}
	require.False(t, r.released, "the delivery answered only once the stalled disk was released: the local write ignores its deadline")
	if r.err != nil {
		assert.Equal(t, 451, smtpCode(r.err), "a transient failure: %v", r.err)
		return
	}
	id := copyID(queuedID(t, r.text), 0)
	var holders []string
	for _, name := range []string{"n2", "n3"} {
		if cl.nodes[name].Store().Has(id) {
			holders = append(holders, name)
		}
	}
	require.Len(t, holders, 2, "a 250 with n1's disk stalled: W=2 copies on n2 and n3")
}
