package sim

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// Garbage collection during a run.
//
// Collection is the simulator's largest overhead after the nodes' own
// work: a 100,000-message run allocates about 14 GiB. With GOGC=400 alone
// such a run collects 44 times, 30 of them in its first seconds while the
// live heap is small, and write barriers slow everything while a cycle
// marks. So a run collects only when the heap reaches a memory limit
// (gcLimit), 6 times in that run. Measured at 100,000 messages: run
// alternately with GOGC=400 (same binary, one at a time), 3 GiB took 4-7%
// less wall time in three pairs of three; run two at once (one per core,
// so both see the same host), 3-10% less in three pairs of four (0.4%
// more in the fourth), and less than 6 GiB (the heap outgrows the caches
// and more pages are faulted in fresh) and 1.5 GiB, one pair each. The
// host's own noise is ±10% from one run to the next.
//
// The heap the run grows into is advised for transparent huge pages
// (gc_linux.go): in this VM a 4 KiB page faulted in for the first time
// costs 5-16 us of CPU, and a 3 GiB heap is ~786,000 of them.
//
// A run whose live heap stays above a third of the limit (large clusters
// keep every node's catalog in memory) would collect back to back at the
// limit, so the run then falls back to GOGC=400 without a limit, as does
// a machine with less than 6 GiB of memory and a -race build (the race
// detector's shadow memory multiplies the heap). GOGC or GOMEMLIMIT in the
// environment win over all of this.
const (
	gcLimitMax = 3 << 30
	// gcLimitShare: the limit is at most this fraction of the machine's
	// memory (the nodes' data directories take memory too, in /dev/shm).
	gcLimitShare = 6
)

// hugeAdvised counts the bytes adviseHugeHeap allocated, which a
// benchmark's allocation figure leaves out.
var (
	hugeAdvised atomic.Int64
	hugeOnce    sync.Once
)

// gcLimit is the heap size at which a run collects, or 0 to use GOGC.
func gcLimit() int64 {
	if raceEnabled {
		return 0
	}
	limit := min(int64(gcLimitMax), int64(physicalMemory()/gcLimitShare))
	if limit < 1<<30 {
		return 0
	}
	return limit
}

// runGC counts the runs in progress: the first applies the policy, the
// last restores the process's settings (runs that overlapped would
// otherwise restore each other's).
var runGC struct {
	sync.Mutex
	active  int
	restore func()
}

// setRunGC applies the run's collection policy; restore undoes it.
func setRunGC() (restore func()) {
	runGC.Lock()
	defer runGC.Unlock()
	if runGC.active++; runGC.active == 1 {
		runGC.restore = applyRunGC()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			runGC.Lock()
			defer runGC.Unlock()
			if runGC.active--; runGC.active == 0 {
				runGC.restore()
				runGC.restore = nil
			}
		})
	}
}

func applyRunGC() (restore func()) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	limit := gcLimit()
	if limit == 0 {
		old := debug.SetGCPercent(simGCPercent)
		return func() { debug.SetGCPercent(old) }
	}
	// The heap grows to the limit: in huge pages where the kernel has them
	// (gc_linux.go). Once per process: the advice stays with the address
	// range, and allocating the object again would zero it, which is what
	// it saves (a second run's 3 GiB, faulted in 4 KiB at a time where the
	// scavenger had returned pages in between, took 10 s).
	hugeOnce.Do(func() { hugeAdvised.Add(adviseHugeHeap(limit)) })
	oldPercent := debug.SetGCPercent(-1)
	oldLimit := debug.SetMemoryLimit(limit)
	w := &gcWatch{limit: limit}
	w.arm()
	return func() {
		w.mu.Lock()
		w.stopped = true
		w.mu.Unlock()
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	}
}

// gcWatch checks the live heap after every collection, from a finalizer
// (reading runtime metrics on a timer cost more than a percent of a run).
// It runs outside the synctest bubble and only changes when the collector
// runs, which no simulated outcome depends on.
type gcWatch struct {
	limit   int64
	mu      sync.Mutex
	stopped bool
}

// gcSentinel is garbage as soon as it is armed: its finalizer runs after
// the next collection.
type gcSentinel struct{ w *gcWatch }

func (w *gcWatch) arm() {
	runtime.SetFinalizer(&gcSentinel{w: w}, func(s *gcSentinel) { s.w.check() })
}

func (w *gcWatch) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 && sample[0].Value.Uint64() > uint64(w.limit/3) {
		debug.SetMemoryLimit(math.MaxInt64)
		debug.SetGCPercent(simGCPercent)
		w.stopped = true
		return
	}
	w.arm()
}
