//go:build linux

package sim

import (
	"runtime"
	"syscall"
	"unsafe"
)

// hugePage is the size of a transparent huge page on x86-64 (and arm64
// with 4 KiB base pages). Where it is larger the advice covers a range
// that is not aligned to it: the kernel then uses fewer huge pages, no harm.
const hugePage = 2 << 20

// adviseHugeHeap asks the kernel to back the next n bytes of heap with
// transparent huge pages and returns the bytes it allocated to do so (0
// if it did nothing).
//
// A run at the memory limit (gc.go) grows its heap to the limit, and every
// 4 KiB page of it is faulted in on first touch: ~786,000 faults for a
// 3 GiB heap, each a trap into the guest kernel that costs this VM 5-16 us
// (1 GiB touched page by page took 3.3-4.3 s of CPU, against 0.8-2.0 s in
// huge pages). The Go runtime does not ask for huge pages for its heap, and
// the machine's THP mode is "madvise", so the run advises them itself:
// it allocates one n-byte object (fresh memory from the kernel, which the
// runtime neither zeroes nor touches), advises its range MADV_HUGEPAGE,
// and drops it. The advice belongs to the address range, which the
// runtime keeps mapped and hands out again for the run's objects after the
// collection below. Nothing the simulation computes depends on where its
// memory is; the cost is memory faulted in 2 MiB at a time (the run
// reaches the limit anyway).
func adviseHugeHeap(n int64) int64 {
	if n < hugePage {
		return 0
	}
	buf := make([]byte, n)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	beg := (p + hugePage - 1) &^ (hugePage - 1)
	end := (p + uintptr(n)) &^ (hugePage - 1)
	if beg < end {
		// Errors (no THP support, "never" mode) leave the heap as it was.
		syscall.Syscall(syscall.SYS_MADVISE, beg, end-beg, syscall.MADV_HUGEPAGE)
	}
	runtime.KeepAlive(buf)
	buf = nil
	runtime.GC() // frees the object's pages for the run's allocations
	return n
}
