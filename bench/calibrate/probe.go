package calibrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Limits of the probes.
const (
	// maxProbeWriteBytes bounds one write of the fsync probe.
	maxProbeWriteBytes = 64 << 20
	// probeSlots is how many distinct regions of the probe file the writes
	// rotate through, so that consecutive syncs are not of the same block
	// (a store writes new pages, not one page again and again).
	probeSlots = 8
	// echoBytes is the echo probe's message: a small request, as a peer
	// call's headers are.
	echoBytes = 64
	// echoTimeout bounds one round trip of the echo probe.
	echoTimeout = 5 * time.Second
)

// SyncSamples are the latencies of count writes of Bytes, each followed
// by fdatasync.
type SyncSamples struct {
	Bytes int
	// Seconds, sorted.
	Seconds []float64
}

// FsyncProbe writes a file in dir (removed after) and times, for each
// size, count writes of that size each followed by fdatasync: what bbolt
// does at every commit of the store (pwrite of the dirty pages, then
// fdatasync), on the data directory's filesystem. The file is written and
// synced in full first, so that the samples time syncs, not block
// allocation.
func FsyncProbe(dir string, sizes []int, count int) ([]SyncSamples, error) {
	if len(sizes) == 0 || count < 1 {
		return nil, errors.New("calibrate: fsync probe: no sizes or count < 1")
	}
	top := slices.Max(sizes)
	if slices.Min(sizes) < 1 || top > maxProbeWriteBytes {
		return nil, fmt.Errorf("calibrate: fsync probe: sizes must be 1..%d bytes", maxProbeWriteBytes)
	}
	f, err := os.CreateTemp(dir, "fsync-probe-*")
	if err != nil {
		return nil, fmt.Errorf("calibrate: fsync probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := bytes.Repeat([]byte("mailarray calibrate fsync probe\n"), top/32+1)[:top]
	for slot := range probeSlots {
		if _, err := f.WriteAt(buf, int64(slot*top)); err != nil {
			return nil, fmt.Errorf("calibrate: fsync probe: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("calibrate: fsync probe: %w", err)
	}
	fd := int(f.Fd())
	var out []SyncSamples
	for _, size := range sizes {
		s := SyncSamples{Bytes: size, Seconds: make([]float64, 0, count)}
		for i := range count {
			t0 := time.Now()
			if _, err := f.WriteAt(buf[:size], int64((i%probeSlots)*top)); err != nil {
				return nil, fmt.Errorf("calibrate: fsync probe: %w", err)
			}
			if err := fdatasync(fd); err != nil {
				return nil, fmt.Errorf("calibrate: fsync probe: %w", err)
			}
			s.Seconds = append(s.Seconds, time.Since(t0).Seconds())
		}
		slices.Sort(s.Seconds)
		out = append(out, s)
	}
	return out, nil
}

// FsyncFit is the disk model's line through the probe's medians: seconds
// per sync = disk_fsync + bytes / disk_bytes_per_sec. The medians, not
// the means: a sync delayed by the machine's other work is not the disk's
// speed.
func FsyncFit(samples []SyncSamples) (Line, error) {
	pts := make([]Point, 0, len(samples))
	for _, s := range samples {
		pts = append(pts, Point{X: float64(s.Bytes), Y: Percentile(s.Seconds, 0.5)})
	}
	return Fit(pts)
}

// EchoProbe times count round trips of a small message over a loopback
// TCP connection to an echo server of its own: the network part of a peer
// call, without the node's work (which the model charges as CPU). The
// returned seconds are sorted.
func EchoProbe(ctx context.Context, count int) ([]float64, error) {
	if count < 1 {
		return nil, errors.New("calibrate: echo probe: count < 1")
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("calibrate: echo probe: %w", err)
	}
	defer l.Close()
	served := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(c, c)
		served <- err
	}()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", l.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("calibrate: echo probe: %w", err)
	}
	msg := bytes.Repeat([]byte{'e'}, echoBytes)
	got := make([]byte, echoBytes)
	out := make([]float64, 0, count)
	for range count {
		if err := ctx.Err(); err != nil {
			c.Close()
			return nil, err
		}
		c.SetDeadline(time.Now().Add(echoTimeout))
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			c.Close()
			return nil, fmt.Errorf("calibrate: echo probe: %w", err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			c.Close()
			return nil, fmt.Errorf("calibrate: echo probe: %w", err)
		}
		out = append(out, time.Since(t0).Seconds())
	}
	// Closing our end ends the server's copy: its goroutine is done when
	// the probe returns.
	c.Close()
	<-served
	slices.Sort(out)
	return out, nil
}

// SelfCPU is this process's CPU time (user + system) so far: the load
// generator's, which runs in it.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProbeDir is a directory for the fsync probe on the filesystem of dir,
// created if needed.
func ProbeDir(dir string) (string, error) {
	p := filepath.Join(dir, "probe")
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", fmt.Errorf("calibrate: %w", err)
	}
	return p, nil
}

// NoopProbe measures count SMTP NOOP round trips to the listener at addr
// (a node of the array), one every gap: the round trip a message's
// dialogue pays per command on an array that is idle between its events,
// where each hop wakes a sleeping thread of another process (the echo
// probe's back-to-back round trips stay in one hot process and miss that
// wake-up). It returns the round trips in seconds, sorted.
func NoopProbe(ctx context.Context, addr string, count int, gap time.Duration) ([]float64, error) {
	if count < 1 {
		return nil, errors.New("calibrate: noop probe: count < 1")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("calibrate: noop probe: %w", err)
	}
	defer c.Close()
	tp := textproto.NewConn(c)
	c.SetDeadline(time.Now().Add(echoTimeout))
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("calibrate: noop probe: greeting: %w", err)
	}
	out := make([]float64, 0, count)
	t := time.NewTimer(gap)
	defer t.Stop()
	for range count {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		c.SetDeadline(time.Now().Add(echoTimeout))
		t0 := time.Now()
		if err := tp.PrintfLine("NOOP"); err != nil {
			return nil, fmt.Errorf("calibrate: noop probe: %w", err)
		}
		if _, _, err := tp.ReadResponse(250); err != nil {
			return nil, fmt.Errorf("calibrate: noop probe: %w", err)
		}
		out = append(out, time.Since(t0).Seconds())
		t.Reset(gap)
	}
	tp.PrintfLine("QUIT")
	slices.Sort(out)
	return out, nil
}

// HostBusy is the machine's busy CPU time since boot, every CPU's and every
// process's (the kernel's softirqs, daemons and the load generator too):
// /proc/stat's user, nice, system, irq, softirq and steal. ok is false
// where there is no /proc/stat.
func HostBusy() (busy time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	return parseHostBusy(string(b))
}

// userHZ is /proc/stat's tick (USER_HZ, 100 on every Linux ABI Go runs on).
const userHZ = 100

func parseHostBusy(stat string) (time.Duration, bool) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, false
	}
	var ticks uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, true
}
