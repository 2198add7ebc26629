//go:build !linux

package sim

import "time"

// WallNow returns the machine's clock. Only Linux reads the kernel's clock
// directly; elsewhere this is time.Now, which inside a synctest bubble is
// the fake clock, so wall figures are only meaningful on Linux.
func WallNow() time.Duration {
	return time.Duration(time.Now().UnixNano())
}

// physicalMemory is unknown here: runs use GOGC (gc.go).
func physicalMemory() uint64 { return 0 }
