package calibrate

import "syscall"

// fdatasync is what bbolt calls on Linux at each commit.
func fdatasync(fd int) error { return syscall.Fdatasync(fd) }
