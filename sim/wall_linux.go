//go:build linux

package sim

import (
	"syscall"
	"time"
	"unsafe"
)

// WallNow returns the machine's monotonic clock. Inside a synctest bubble
// time.Now is the fake clock, so the report's wall figures (messages per
// wall second) need the kernel's clock, read with a raw syscall.
func WallNow() time.Duration {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		panic("sim: clock_gettime(CLOCK_MONOTONIC): " + errno.Error())
	}
	return time.Duration(ts.Nano())
}

// physicalMemory is the machine's memory in bytes (0 if unknown).
func physicalMemory() uint64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}
