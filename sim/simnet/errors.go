package simnet

import (
	"context"
	"net"
	"os"
	"syscall"
)

// The simulator's errors look like the net package's: *net.OpError around a
// *os.SyscallError, os.ErrDeadlineExceeded or net.ErrClosed, so that code
// checking errors.Is(err, syscall.ECONNRESET), net.Error.Timeout() or
// errors.Is(err, net.ErrClosed) behaves as on real sockets.

func opError(op, network string, src, dst net.Addr, err error) error {
	return &net.OpError{Op: op, Net: network, Source: src, Addr: dst, Err: err}
}

func sysErr(call string, errno syscall.Errno) error {
	return os.NewSyscallError(call, errno)
}

// dialTimeout is the error of a connect that ran out of time: like the net
// package's, it is a timeout, temporary, and matches both
// os.ErrDeadlineExceeded and context.DeadlineExceeded.
type dialTimeout struct{}

func (dialTimeout) Error() string   { return "i/o timeout" }
func (dialTimeout) Timeout() bool   { return true }
func (dialTimeout) Temporary() bool { return true }
func (dialTimeout) Is(target error) bool {
	return target == os.ErrDeadlineExceeded || target == context.DeadlineExceeded
}
