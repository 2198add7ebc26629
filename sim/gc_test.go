package sim

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunGCPolicy: a run collects at a memory limit and restores the
// process's settings after; under -race or with GOGC set it does not.
func TestRunGCPolicy(t *testing.T) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOGC or GOMEMLIMIT is set: the environment's settings win")
	}
	setGC(t, 123, 5<<40)
	restore := setRunGC()
	percent, limit := gcPercent(), debug.SetMemoryLimit(-1) // a negative limit only reads
	if raceEnabled || physicalMemory() < 6<<30 {
		assert.Equal(t, simGCPercent, percent)
		assert.Equal(t, int64(5<<40), limit)
	} else {
		assert.Equal(t, -1, percent, "collection is off but for the limit")
		assert.Equal(t, gcLimit(), limit)
		assert.Positive(t, gcLimit())
		assert.LessOrEqual(t, gcLimit(), int64(gcLimitMax))
	}
	restore()
	assert.Equal(t, 123, debug.SetGCPercent(123))
	assert.Equal(t, int64(5<<40), debug.SetMemoryLimit(-1))
}

// TestRunGCFallsBack: once the live heap passes a third of the limit, the
// run collects by GOGC again, without a limit.
func TestRunGCFallsBack(t *testing.T) {
	setGC(t, -1, 1<<40)
	// A limit far below this test binary's live heap: the first
	// collection's check must fall back.
	w := &gcWatch{limit: 3}
	w.arm()
	for i := 0; ; i++ {
		runtime.GC()
		w.mu.Lock()
		stopped := w.stopped
		w.mu.Unlock()
		if stopped {
			break
		}
		require.Less(t, i, 100, "the finalizer never ran")
		runtime.Gosched()
	}
	assert.Equal(t, simGCPercent, debug.SetGCPercent(-1))
	assert.Equal(t, int64(math.MaxInt64), debug.SetMemoryLimit(-1))
}

// TestRunGCOverlapping: runs that overlap leave the process's settings as
// they found them, whichever ends first.
func TestRunGCOverlapping(t *testing.T) {
	setGC(t, 77, 7<<40)
	a := setRunGC()
	during := gcPercent()
	b := setRunGC()
	a()
	assert.Equal(t, during, gcPercent(), "b still runs under the policy after a ended")
	b()
	b() // a second call does nothing
	assert.Equal(t, 77, debug.SetGCPercent(77))
	assert.Equal(t, int64(7<<40), debug.SetMemoryLimit(-1))
}

// setGC sets the process's GC percent and memory limit for the test and
// restores the previous ones after it.
func setGC(t *testing.T, percent int, limit int64) {
	percent0 := debug.SetGCPercent(percent)
	limit0 := debug.SetMemoryLimit(limit)
	t.Cleanup(func() {
		debug.SetGCPercent(percent0)
		debug.SetMemoryLimit(limit0)
	})
}

// gcPercent reads the process's GC percent.
func gcPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}

// TestAdviseHugeHeap: advising a range for huge pages allocates one
// object of the size asked (which the benchmark's allocation figure leaves
// out), or nothing when it is below a huge page or off Linux; the heap
// stays usable.
func TestAdviseHugeHeap(t *testing.T) {
	assert.Zero(t, adviseHugeHeap(hugePage-1))
	n := adviseHugeHeap(8 * hugePage)
	if runtime.GOOS == "linux" {
		assert.Equal(t, int64(8*hugePage), n)
	} else {
		assert.Zero(t, n)
	}
	b := make([]byte, 4*hugePage)
	for i := range b {
		b[i] = byte(i)
	}
	assert.Equal(t, byte(255), b[255])
}
