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
