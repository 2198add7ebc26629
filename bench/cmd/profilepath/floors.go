package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// The machine's physical floors, each the most a path could do here if
// that one cost were all it paid: how many fsyncs per second the data
// disk takes, how fast loopback TCP copies bytes, and how many messages
// per second go-smtp accepts from the same client (smtp-source, 4 KiB,
// 21 sessions) when its backend throws every message away.

// fsyncProbe appends 4 KiB and fdatasyncs, over and over, for d, in a
// file of dir (the nodes' data disk): the write pattern of a commit that
// holds one message, and each W copy pays at least one.
func fsyncProbe(dir string, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	n := 0
	t0 := time.Now()
	for time.Since(t0) < d {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// loopbackProbe copies bytes over one loopback TCP connection for d, 64
// KiB writes, and returns MiB/s: the floor of replication frames and of
// every client read.
func loopbackProbe(d time.Duration) (float64, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 64<<10)
	t0 := time.Now()
	for time.Since(t0) < d {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, err
		}
	}
	c.Close()
	n := <-got
	return float64(n) / (1 << 20) / time.Since(t0).Seconds(), nil
}

// discardBackend accepts every message and keeps none.
type discardBackend struct{}

func (discardBackend) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return discardSession{}, nil }

type discardSession struct{}

var _ gosmtp.Session = discardSession{}

func (discardSession) Reset()                                 {}
func (discardSession) Logout() error                          { return nil }
func (discardSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (discardSession) Data(r io.Reader) error                 { _, err := io.Copy(io.Discard, r); return err }

// smtpDiscardProbe serves go-smtp with the discard backend on loopback
// and drives it with smtp-source as the ingest path is driven: msgs/s.
func smtpDiscardProbe(ctx context.Context, msgs int) (float64, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	s := gosmtp.NewServer(discardBackend{})
	s.Domain = "discard.test"
	go func() { _ = s.Serve(l) }()
	defer s.Close()
	t0 := time.Now()
	n, err := smtpSource(ctx, []string{l.Addr().String()}, msgs, 21)
	if err != nil {
		return 0, err
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

type floors struct {
	FsyncPerS     float64
	LoopbackMiBS  float64
	SMTPDiscardMS float64
	DataDir       string
}

func measureFloors(ctx context.Context, dir string, msgs int) (floors, error) {
	fl := floors{DataDir: dir}
	var err error
	if fl.FsyncPerS, err = fsyncProbe(dir, 3*time.Second); err != nil {
		return fl, fmt.Errorf("fsync probe: %w", err)
	}
	if fl.LoopbackMiBS, err = loopbackProbe(2 * time.Second); err != nil {
		return fl, fmt.Errorf("loopback probe: %w", err)
	}
	if fl.SMTPDiscardMS, err = smtpDiscardProbe(ctx, msgs); err != nil {
		return fl, fmt.Errorf("go-smtp discard probe: %w", err)
	}
	return fl, nil
}

func formatFloors(w io.Writer, fl floors) {
	abs, _ := filepath.Abs(fl.DataDir)
	fmt.Fprintf(w, "  fsync (4 KiB append + fdatasync) on %s: %.0f/s\n", abs, fl.FsyncPerS)
	fmt.Fprintf(w, "  loopback TCP copy, one connection, 64 KiB writes: %.0f MiB/s\n", fl.LoopbackMiBS)
	fmt.Fprintf(w, "  go-smtp, discard backend, smtp-source 4 KiB, 21 sessions: %.0f msgs/s\n", fl.SMTPDiscardMS)
}
