//go:build !(linux || darwin || freebsd)

package node

// freeDiskBytes is unknown (-1) where syscall.Statfs is not available:
// strategies then treat free disk as unknown.
func freeDiskBytes(dir string) int64 { return -1 }
