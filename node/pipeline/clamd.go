package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"mailarray/node/env"
)

// Limits of the clamd client.
const (
	// ClamdChunkBytes is the size of the INSTREAM chunks sent. clamd
	// accepts any chunk up to its StreamMaxLength; 64 KiB keeps writes
	// large and memory small.
	ClamdChunkBytes = 64 << 10
	// MaxClamdReplyBytes bounds clamd's reply ("stream: <name> FOUND").
	MaxClamdReplyBytes = 4096
	// DefaultClamdTimeout bounds a scan whose context has no deadline.
	DefaultClamdTimeout = 30 * time.Second
	// maxClamdLocateParts bounds the parts sent one by one to find which
	// one clamd objected to (to defang it); past it the message is
	// quarantined whole.
	maxClamdLocateParts = 32
)

// ErrClamd is wrapped by Clamd.Scan's errors when clamd answered with an
// error (for instance "INSTREAM size limit exceeded. ERROR").
var ErrClamd = errors.New("pipeline: clamd error reply")

// Clamd is a client of ClamAV's daemon, speaking its INSTREAM command: the
// command "zINSTREAM\0", then chunks each preceded by its length as 4 bytes
// in network order, then a zero length; the reply is "stream: OK\0",
// "stream: <name> FOUND\0" or "<message> ERROR\0" (clamd(8), "COMMANDS").
// One connection per scan: clamd closes it after INSTREAM.
type Clamd struct {
	// Addr is "host:port" (TCP) or "unix:/path/to/clamd.sock".
	Addr string
	Net  env.Net
}

// Scan sends data to clamd and returns the name of what it found, "" for
// clean. An error means no verdict: clamd unreachable, timed out or
// answering with an error.
func (c *Clamd) Scan(ctx context.Context, data []byte) (string, error) {
	network, addr := "tcp", c.Addr
	if p, ok := strings.CutPrefix(c.Addr, "unix:"); ok {
		network, addr = "unix", p
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultClamdTimeout)
		defer cancel()
	}
	conn, err := c.Net.DialContext(ctx, network, addr)
	if err != nil {
		return "", fmt.Errorf("pipeline: clamd %s: %w", c.Addr, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	// Cancellation: a past deadline unblocks any read or write at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	werr := writeInstream(conn, data)
	// Read the reply even after a failed write: clamd says why it hung
	// up (size limit) before closing.
	reply, rerr := readClamdReply(conn)
	if rerr != nil {
		if ctx.Err() != nil {
			rerr = ctx.Err()
		}
		if werr != nil {
			return "", fmt.Errorf("pipeline: clamd %s: send: %w", c.Addr, werr)
		}
		return "", fmt.Errorf("pipeline: clamd %s: reply: %w", c.Addr, rerr)
	}
	return parseClamdReply(reply)
}

func writeInstream(w io.Writer, data []byte) error {
	if _, err := w.Write([]byte("zINSTREAM\x00")); err != nil {
		return err
	}
	var hdr [4]byte
	for len(data) > 0 {
		n := min(len(data), ClamdChunkBytes)
		binary.BigEndian.PutUint32(hdr[:], uint32(n))
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	binary.BigEndian.PutUint32(hdr[:], 0)
	_, err := w.Write(hdr[:])
	return err
}

// readClamdReply reads up to the NUL that ends a z-command reply (or EOF).
func readClamdReply(r io.Reader) (string, error) {
	var buf []byte
	var b [256]byte
	for len(buf) <= MaxClamdReplyBytes {
		n, err := r.Read(b[:])
		buf = append(buf, b[:n]...)
		if i := bytes.IndexByte(buf, 0); i >= 0 {
			return string(buf[:i]), nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(buf) > 0 {
				return string(buf), nil
			}
			return "", err
		}
	}
	return "", fmt.Errorf("reply longer than %d bytes", MaxClamdReplyBytes)
}

func parseClamdReply(reply string) (string, error) {
	reply = strings.TrimSpace(reply)
	body, _ := strings.CutPrefix(reply, "stream: ")
	switch {
	case body == "OK":
		return "", nil
	case strings.HasSuffix(body, " FOUND"):
		name := strings.TrimSpace(strings.TrimSuffix(body, " FOUND"))
		if name == "" {
			name = "unknown"
		}
		return printable(name, MaxSignatureNameBytes), nil
	default:
		return "", fmt.Errorf("%w: %q", ErrClamd, printable(reply, 200))
	}
}
