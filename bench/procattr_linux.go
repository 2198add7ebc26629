package bench

import "syscall"

// nodeProcAttr puts a node in its own process group (a Ctrl-C reaches only
// the driver, which stops the nodes in order) and has the kernel kill it
// if the driver dies without stopping it (kill -9, a panic), so that no
// node outlives its run. Pdeathsig follows the thread that started the
// node; the Go runtime does not end its threads unless a goroutine locked
// to one exits, which the drivers never do.
func nodeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
