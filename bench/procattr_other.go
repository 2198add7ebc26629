//go:build !linux

package bench

import "syscall"

// nodeProcAttr puts a node in its own process group: a Ctrl-C reaches only
// the driver, which stops the nodes in order.
func nodeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
