package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// A driver offers one path's load until ctx ends and counts the messages
// it completed. Each is the client of the side-by-side scripts: Postfix's
// smtp-source for ingest (4 KiB, one connection per message, 21 sessions
// over the nodes), UID FETCH 1:* BODY.PEEK[] for IMAP, RETR with up to 64
// in flight for POP3; all read from n1, as access_compare.py does.
type driver func(ctx context.Context, c *cluster, done *atomic.Int64) error

// ingestBatch is how many messages each smtp-source run sends per node:
// the count of a window is exact to one batch.
const ingestBatch = 200

// smtpSource runs Postfix's smtp-source against each target at once,
// msgs messages over sessions connections in all, and returns the
// messages sent.
func smtpSource(ctx context.Context, targets []string, msgs, sessions int) (int, error) {
	per := msgs / len(targets)
	var wg sync.WaitGroup
	errs := make([]error, len(targets))
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, "smtp-source", "-l", "4096", "-m", strconv.Itoa(per), "-s", strconv.Itoa(max(1, sessions/len(targets))),
				"-f", "s@perf.test", "-t", user, t)
			if out, err := cmd.CombinedOutput(); err != nil && ctx.Err() == nil {
				errs[i] = fmt.Errorf("smtp-source %s: %w: %s", t, err, strings.TrimSpace(string(out)))
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	if ctx.Err() != nil {
		return 0, nil // cut short: not counted
	}
	return per * len(targets), nil
}

func driveIngest(ctx context.Context, c *cluster, done *atomic.Int64) error {
	var targets []string
	for _, n := range c.nodes {
		targets = append(targets, n.addr("smtp"))
	}
	for ctx.Err() == nil {
		n, err := smtpSource(ctx, targets, ingestBatch*len(targets), 21)
		if err != nil {
			return err
		}
		done.Add(int64(n))
	}
	return nil
}

// preload fills alice's mailbox with msgs messages for the read paths.
func preload(ctx context.Context, c *cluster, msgs int) error {
	var targets []string
	for _, n := range c.nodes {
		targets = append(targets, n.addr("smtp"))
	}
	msgs -= msgs % len(targets)
	_, err := smtpSource(ctx, targets, msgs, 21)
	return err
}

func driveIMAP(ctx context.Context, c *cluster, done *atomic.Int64) error {
	for ctx.Err() == nil {
		n, err := imapFetchAll(c.nodes[0].addr("imap"))
		if err != nil {
			return err
		}
		if ctx.Err() == nil {
			done.Add(int64(n))
		}
	}
	return nil
}

// imapFetchAll is access_compare.py's imap_read: one UID FETCH 1:*
// BODY.PEEK[] of the whole mailbox.
func imapFetchAll(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	cl := imapclient.New(conn, nil)
	defer cl.Close()
	if err := cl.WaitGreeting(); err != nil {
		return 0, fmt.Errorf("imap: greeting: %w", err)
	}
	if err := cl.Login(user, password).Wait(); err != nil {
		return 0, fmt.Errorf("imap: login: %w", err)
	}
	if _, err := cl.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return 0, fmt.Errorf("imap: select: %w", err)
	}
	peek := &imap.FetchItemBodySection{Peek: true}
	msgs, err := cl.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{peek}}).Collect()
	if err != nil {
		return 0, fmt.Errorf("imap: fetch: %w", err)
	}
	_ = cl.Logout().Wait()
	return len(msgs), nil
}

func drivePOP3(ctx context.Context, c *cluster, done *atomic.Int64) error {
	for ctx.Err() == nil {
		n, err := pop3RetrAll(c.nodes[0].addr("pop3"), 64)
		if err != nil {
			return err
		}
		if ctx.Err() == nil {
			done.Add(int64(n))
		}
	}
	return nil
}

// pop3RetrAll is access_compare.py's pop_read_pipelined: RETR every
// message with up to window commands in flight (RFC 2449 PIPELINING).
func pop3RetrAll(addr string, window int) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Minute))
	r := bufio.NewReaderSize(conn, 64<<10)
	line := func() (string, error) {
		l, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("pop3: %w", err)
		}
		if !strings.HasPrefix(l, "+OK") {
			return "", fmt.Errorf("pop3: %q", strings.TrimSpace(l))
		}
		return l, nil
	}
	if _, err := line(); err != nil {
		return 0, err
	}
	var l string
	for _, cmd := range []string{"USER " + user, "PASS " + password, "STAT"} {
		if _, err := fmt.Fprintf(conn, "%s\r\n", cmd); err != nil {
			return 0, err
		}
		if l, err = line(); err != nil {
			return 0, err
		}
	}
	f := strings.Fields(l)
	if len(f) < 2 {
		return 0, fmt.Errorf("pop3: STAT answered %q", l)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, fmt.Errorf("pop3: STAT answered %q", l)
	}
	sent, got := 0, 0
	for got < n {
		if sent < n && sent-got < window {
			var b strings.Builder
			for k := sent + 1; k <= min(n, got+window); k++ {
				fmt.Fprintf(&b, "RETR %d\r\n", k)
			}
			sent = min(n, got+window)
			if _, err := conn.Write([]byte(b.String())); err != nil {
				return got, err
			}
		}
		if _, err := line(); err != nil {
			return got, err
		}
		for {
			d, err := r.ReadString('\n')
			if err != nil {
				return got, fmt.Errorf("pop3: %w", err)
			}
			if d == ".\r\n" {
				break
			}
		}
		got++
	}
	// Wait for QUIT's answer: the server releases the maildrop lock
	// (RFC 1939 section 6, the UPDATE state) before it answers, and the
	// next read of the mailbox must not find it still held.
	if _, err := fmt.Fprintf(conn, "QUIT\r\n"); err != nil {
		return n, err
	}
	if _, err := line(); err != nil {
		return n, err
	}
	return n, nil
}
