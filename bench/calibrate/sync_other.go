//go:build !linux

package calibrate

import "syscall"

// fdatasync falls back to fsync where the system has no fdatasync (bbolt
// does the same).
func fdatasync(fd int) error { return syscall.Fsync(fd) }
