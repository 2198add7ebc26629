//go:build !unix

package pipeline

import "os"

// lockFile creates path but does not lock it: without flock(2), concurrent
// editors may lose each other's change (each write is still atomic).
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}
