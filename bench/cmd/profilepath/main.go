// Command profilepath shows where one path's time goes on this machine
// (make profile PATH_NAME=ingest|imap|pop3|floors), for issue 21 and
// docs/performance.md:
//
//	profilepath -path ingest -seconds 20 -strace-seconds 10
//
// It starts three `mailarray serve` processes on loopback as the shared
// side-by-side scripts do (R=2 W=2, fsync on, the shipped pipeline), each
// with the loopback-only profiler (serve --pprof), and drives one path
// with the scripts' clients (drive.go). Then, in two passes so that
// neither distorts the other:
//
//  1. a CPU profile of every node over a window of load, broken down into
//     categories (breakdown.go) per node and for the array, with the top
//     functions;
//  2. strace -c -f on every node over another window: syscalls per
//     message (strace.go).
//
// Last, the machine's floors (floors.go): fsync/s on the data disk,
// loopback copy bandwidth, go-smtp with a discard backend driven by the
// same client. Profiles, strace tables, node logs and the printed report
// stay in -out (tmp/profile-<path>); look further with
// `go tool pprof -http : bin/mailarray tmp/profile-ingest/n1.cpu.pprof`.
//
// Per-message figures divide by the messages completed in the window,
// counted per batch (ingestBatch, or one whole mailbox read): exact to
// one batch. For ingest, the CPU window's count is the nodes' own
// (mailarray_smtp_messages_total, accepted), read from /metrics with the
// group commit figures (groupcommit.go): commits and writes per node.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "profilepath:", err)
		os.Exit(1)
	}
}

var drivers = map[string]driver{"ingest": driveIngest, "imap": driveIMAP, "pop3": drivePOP3}

type options struct {
	Path          string
	Bin           string
	Out           string
	Seconds       int
	StraceSeconds int
	Msgs          int
	Floors        bool
	Strace        bool
}

func run(args []string) error {
	fs := flag.NewFlagSet("profilepath", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.Path, "path", "ingest", "path to drive: ingest, imap, pop3, or floors (the floors only)")
	fs.StringVar(&o.Bin, "bin", "bin/mailarray", "the mailarray binary (make build)")
	fs.StringVar(&o.Out, "out", "", "directory for profiles, strace tables, logs and the report (default tmp/profile-<path>)")
	fs.IntVar(&o.Seconds, "seconds", 20, "CPU profile window")
	fs.IntVar(&o.StraceSeconds, "strace-seconds", 10, "strace window")
	fs.IntVar(&o.Msgs, "msgs", 1000, "messages in the mailbox read (imap, pop3) and sent to the go-smtp floor")
	fs.BoolVar(&o.Floors, "floors", true, "measure the machine's floors after the path")
	fs.BoolVar(&o.Strace, "strace", true, "count syscalls per message with strace")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, ok := drivers[o.Path]; !ok && o.Path != "floors" {
		return fmt.Errorf("-path %q: want ingest, imap, pop3 or floors", o.Path)
	}
	if o.Out == "" {
		o.Out = filepath.Join("tmp", "profile-"+o.Path)
	}
	if _, err := exec.LookPath("smtp-source"); err != nil {
		return fmt.Errorf("smtp-source (Postfix's) is needed to drive SMTP: apt-get install postfix (make profile installs it)")
	}
	if o.Strace {
		if _, err := exec.LookPath("strace"); err != nil {
			return fmt.Errorf("strace is needed for syscall counts (apt-get install strace), or pass -strace=false")
		}
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	rf, err := os.Create(filepath.Join(o.Out, "report.txt"))
	if err != nil {
		return err
	}
	defer rf.Close()
	w := io.MultiWriter(os.Stdout, rf)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The nodes' data go where the shared scripts put theirs (the temp
	// dir), so the fsync floor is measured on the same disk.
	data, err := os.MkdirTemp("", "profile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(data)

	if o.Path != "floors" {
		if err := profilePath(ctx, o, data, w); err != nil {
			return err
		}
	}
	if o.Floors || o.Path == "floors" {
		fmt.Fprintf(w, "\n== machine floors\n")
		fl, err := measureFloors(ctx, data, max(o.Msgs, 600))
		if err != nil {
			return err
		}
		formatFloors(w, fl)
	}
	fmt.Fprintf(w, "\nprofilepath: report in %s\n", rf.Name())
	return nil
}

func profilePath(ctx context.Context, o options, data string, w io.Writer) error {
	bin, err := filepath.Abs(o.Bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (make build)", o.Bin, err)
	}
	fmt.Fprintf(w, "== %s: 3 nodes R=2 W=2 on loopback, data in %s, %s\n", o.Path, data, time.Now().UTC().Format(time.RFC3339))
	c, err := startCluster(ctx, bin, data, 3)
	if c != nil {
		defer func() {
			c.Close()
			for _, n := range c.nodes {
				copyFile(n.log.Name(), filepath.Join(o.Out, n.name+".log"))
			}
		}()
	}
	if err != nil {
		return err
	}
	if o.Path != "ingest" {
		fmt.Fprintf(w, "preloading %d messages of 4 KiB into %s\n", o.Msgs, user)
		if err := preload(ctx, c, o.Msgs); err != nil {
			return err
		}
		if err := waitMailbox(ctx, c, o.Msgs-o.Msgs%len(c.nodes)); err != nil {
			return err
		}
	}
	drive := drivers[o.Path]

	// Pass 1: CPU profiles over a window of load (after a short warm-up).
	load, cancelLoad := context.WithCancel(ctx)
	var done atomic.Int64
	loadErr := make(chan error, 1)
	go func() { loadErr <- drive(load, c, &done) }()
	time.Sleep(2 * time.Second)
	before, counted := scrapeCounters(ctx, c)
	start := done.Load()
	t0 := time.Now()
	profiles, perr := fetchProfiles(ctx, c, o)
	msgs := done.Load() - start
	window := time.Since(t0)
	after, countedAfter := scrapeCounters(ctx, c)
	cancelLoad()
	if err := <-loadErr; err != nil {
		return fmt.Errorf("driving %s: %w", o.Path, err)
	}
	if perr != nil {
		return perr
	}
	if counted && countedAfter && o.Path == "ingest" {
		// Exact, where the driver's count is exact to one batch only.
		if accepted := formatGroupCommit(w, c, before, after); accepted > 0 {
			msgs = int64(accepted)
		}
	}
	fmt.Fprintf(w, "\n== CPU profile: %d messages in %s (%.0f msgs/s under the profiler)\n", msgs, window.Round(time.Millisecond), float64(msgs)/window.Seconds())
	var all []sample
	for i, p := range profiles {
		samples, err := traces(bin, p)
		if err != nil {
			return err
		}
		all = append(all, samples...)
		shares, total := breakdown(samples)
		fmt.Fprintf(w, "\n%s: %s CPU in the window (%.2f cores)\n", c.nodes[i].name, total.Round(time.Millisecond), total.Seconds()/window.Seconds())
		formatBreakdown(w, shares, total, msgs)
	}
	shares, total := breakdown(all)
	fmt.Fprintf(w, "\narray (all nodes): %s CPU (%.2f cores)\n", total.Round(time.Millisecond), total.Seconds()/window.Seconds())
	formatBreakdown(w, shares, total, msgs)
	top, err := exec.Command("go", append([]string{"tool", "pprof", "-top", "-nodecount=25", bin}, profiles...)...).Output()
	if err != nil {
		return fmt.Errorf("go tool pprof -top: %w", err)
	}
	fmt.Fprintf(w, "\ntop functions, all nodes (go tool pprof -top -nodecount=25 %s %s ...):\n%s", o.Bin, profiles[0], top)

	// Pass 2: syscalls per message.
	if o.Strace {
		if err := straceWindow(ctx, c, o, drive, w); err != nil {
			return err
		}
	}
	return nil
}

// fetchProfiles takes an o.Seconds CPU profile of every node at once and
// returns the files.
func fetchProfiles(ctx context.Context, c *cluster, o options) ([]string, error) {
	files := make([]string, len(c.nodes))
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			files[i] = filepath.Join(o.Out, n.name+".cpu.pprof")
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.addr("pprof"), o.Seconds)
			req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
			if err != nil {
				errs[i] = err
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = fmt.Errorf("profile of %s: %w", n.name, err)
				return
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			if _, err := io.Copy(&b, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
				errs[i] = fmt.Errorf("profile of %s: %s %v", n.name, resp.Status, err)
				return
			}
			errs[i] = os.WriteFile(files[i], b.Bytes(), 0o644)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

func traces(bin, profile string) ([]sample, error) {
	out, err := exec.Command("go", "tool", "pprof", "-traces", bin, profile).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces %s: %w", profile, err)
	}
	return parseTraces(bytes.NewReader(out))
}

func straceWindow(ctx context.Context, c *cluster, o options, drive driver, w io.Writer) error {
	load, cancelLoad := context.WithCancel(ctx)
	defer cancelLoad()
	var done atomic.Int64
	loadErr := make(chan error, 1)
	go func() { loadErr <- drive(load, c, &done) }()
	time.Sleep(time.Second)
	var tracers []*tracer
	for _, n := range c.nodes {
		t, err := startStrace(n, o.Out)
		if err != nil {
			for _, t := range tracers {
				_, _ = t.stop()
			}
			return err
		}
		tracers = append(tracers, t)
	}
	before, counted := scrapeCounters(ctx, c)
	start := done.Load()
	t0 := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(o.StraceSeconds) * time.Second):
	}
	sums := make([]straceSummary, len(tracers))
	var errs []error
	for i, t := range tracers {
		s, err := t.stop()
		sums[i] = s
		errs = append(errs, err)
	}
	msgs := done.Load() - start
	window := time.Since(t0)
	if after, ok := scrapeCounters(ctx, c); ok && counted && o.Path == "ingest" {
		// The nodes' exact count, as in the CPU window.
		var accepted float64
		for i := range after {
			accepted += after[i].accepted - before[i].accepted
		}
		if accepted > 0 {
			msgs = int64(accepted)
		}
	}
	cancelLoad()
	if err := <-loadErr; err != nil {
		return fmt.Errorf("driving %s under strace: %w", o.Path, err)
	}
	fmt.Fprintf(w, "\n== syscalls (strace -c -f, a separate window): %d messages in %s (strace slows the nodes; only the counts matter: calls/msg is each node's calls over the messages the array completed)\n",
		msgs, window.Round(time.Millisecond))
	for i, s := range sums {
		if errs[i] != nil {
			return fmt.Errorf("strace %s: %w", c.nodes[i].name, errs[i])
		}
		fmt.Fprintf(w, "\n%s:\n", c.nodes[i].name)
		formatStrace(w, s, msgs, 12)
	}
	return nil
}

// waitMailbox waits until n1 lists want messages in the mailbox (copies
// and catalog entries arrive from the other nodes asynchronously).
func waitMailbox(ctx context.Context, c *cluster, want int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		n, err := imapFetchAll(c.nodes[0].addr("imap"))
		if err == nil && n >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("n1 lists %d of %d preloaded messages (%v)", n, want, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func copyFile(from, to string) {
	if b, err := os.ReadFile(from); err == nil {
		_ = os.WriteFile(to, b, 0o644)
	}
}
