//go:build !linux

package sim

// hugePage: see gc_linux.go.
const hugePage = 2 << 20

// adviseHugeHeap does nothing off Linux (see gc_linux.go).
func adviseHugeHeap(int64) int64 { return 0 }
