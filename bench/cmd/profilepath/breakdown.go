package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// A breakdown puts each CPU sample of a profile in one category of
// issue 21's list (SMTP dialogue, pipeline, placement, replication
// frames, bbolt commit, fsync, catalog, GC) or of the few more a node
// spends time in, in three steps:
//
//  1. costs that matter wherever they are paid (costs): a sample with
//     fsync anywhere on its stack is fsync, then GC and allocation, then
//     bbolt's commit work;
//  2. otherwise the component nearest the leaf (components): the code
//     that was running, so a socket write of a replication frame is
//     replication frames, and the node's own transaction code called
//     from the SMTP session is node core, not SMTP dialogue;
//  3. otherwise what the stack touches at all (fallbacks): network I/O,
//     the scheduler.
type category struct {
	Name string
	RE   *regexp.Regexp
}

var costs = []category{
	{"fsync", regexp.MustCompile(`^(syscall\.(Fsync|Fdatasync)|golang\.org/x/sys/unix\.(Fsync|Fdatasync)|os\.\(\*File\)\.Sync|go\.etcd\.io/bbolt\.fdatasync)$`)},
	{"GC and allocation", regexp.MustCompile(`^runtime\.(gc[A-Za-z]*|mallocgc[A-Za-z]*|bgsweep|bgscavenge|markroot[A-Za-z]*|scanobject|scanObject|scanblock|sweepone|wbBufFlush[A-Za-z0-9]*)$`)},
	{"bbolt commit", regexp.MustCompile(`^go\.etcd\.io/bbolt\.(\(\*Tx\)\.(Commit|write|writeMeta|rebalance|spill)|\(\*DB\)\.(allocate|grow|mmap))$`)},
}

var components = []category{
	{"bbolt other (reads, puts, cursors)", regexp.MustCompile(`^go\.etcd\.io/bbolt`)},
	{"replication frames", regexp.MustCompile(`^mailarray/node/(replica|mirror|peer)\.`)},
	{"catalog", regexp.MustCompile(`^mailarray/node/catalog\.`)},
	{"placement", regexp.MustCompile(`^mailarray/node/strategy\.|^mailarray/node\.\(\*(Node|balancer)\)\.(place|placement)$`)},
	{"pipeline", regexp.MustCompile(`^mailarray/node/pipeline\.`)},
	{"message store", regexp.MustCompile(`^mailarray/node/store\.`)},
	{"SMTP dialogue", regexp.MustCompile(`^github\.com/emersion/go-smtp|^mailarray/node/(smtp|flushconn)\.`)},
	{"IMAP", regexp.MustCompile(`^github\.com/emersion/go-imap|^mailarray/node/imap\.`)},
	{"POP3", regexp.MustCompile(`^mailarray/node/pop3\.`)},
	{"gossip", regexp.MustCompile(`^github\.com/hashicorp/(serf|memberlist)`)},
	{"node core (transaction, delivery, retrieval)", regexp.MustCompile(`^mailarray/node\.`)},
	{"other mailarray code", regexp.MustCompile(`^mailarray/`)},
}

var fallbacks = []category{
	{"network I/O (other)", regexp.MustCompile(`^(internal/poll|net|net/http|crypto/tls)\.`)},
	{"scheduler and runtime", regexp.MustCompile(`^runtime\.`)},
}

const otherCategory = "other"

// sample is one stack of `go tool pprof -traces` with its CPU time.
type sample struct {
	Value  time.Duration
	Frames []string // leaf first
}

// parseTraces reads `go tool pprof -traces` output: blocks separated by
// "-----------+-----..." lines, each "<value>   <leaf function>" then one
// caller per line.
func parseTraces(r io.Reader) ([]sample, error) {
	var out []sample
	var cur *sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "-----------+") {
			if cur != nil && len(cur.Frames) > 0 {
				out = append(out, *cur)
			}
			cur = &sample{}
			continue
		}
		if cur == nil || strings.TrimSpace(l) == "" {
			continue // the header (File:, Type:, ...)
		}
		f := strings.Fields(l)
		if strings.HasSuffix(f[0], ":") {
			continue // a "key: value" label line, not a frame
		}
		if len(cur.Frames) == 0 && cur.Value == 0 {
			if len(f) < 2 {
				return nil, fmt.Errorf("traces: want %q, got %q", "<value> <function>", l)
			}
			d, err := time.ParseDuration(f[0])
			if err != nil {
				return nil, fmt.Errorf("traces: value %q: %w", f[0], err)
			}
			cur.Value = d
			f = f[1:]
		}
		if len(f) > 0 {
			cur.Frames = append(cur.Frames, f[0])
		}
	}
	if cur != nil && len(cur.Frames) > 0 {
		out = append(out, *cur)
	}
	return out, sc.Err()
}

func categorize(frames []string) string {
	for _, c := range costs {
		for _, f := range frames {
			if c.RE.MatchString(f) {
				return c.Name
			}
		}
	}
	for _, f := range frames { // leaf first
		for _, c := range components {
			if c.RE.MatchString(f) {
				return c.Name
			}
		}
	}
	for _, c := range fallbacks {
		for _, f := range frames {
			if c.RE.MatchString(f) {
				return c.Name
			}
		}
	}
	return otherCategory
}

// share is one category's CPU time.
type share struct {
	Name string
	CPU  time.Duration
}

// breakdown sums the samples per category, largest first.
func breakdown(samples []sample) (shares []share, total time.Duration) {
	sum := map[string]time.Duration{}
	for _, s := range samples {
		sum[categorize(s.Frames)] += s.Value
		total += s.Value
	}
	for name, d := range sum {
		shares = append(shares, share{name, d})
	}
	sort.Slice(shares, func(i, j int) bool {
		if shares[i].CPU != shares[j].CPU {
			return shares[i].CPU > shares[j].CPU
		}
		return shares[i].Name < shares[j].Name
	})
	return shares, total
}

// formatBreakdown prints the shares with their part of the total and the
// CPU time per message.
func formatBreakdown(w io.Writer, shares []share, total time.Duration, msgs int64) {
	fmt.Fprintf(w, "  %-46s %10s %7s %12s\n", "category", "cpu", "share", "cpu/msg")
	for _, s := range shares {
		fmt.Fprintf(w, "  %-46s %10s %6.1f%% %12s\n", s.Name, s.CPU.Round(time.Millisecond), 100*float64(s.CPU)/float64(max(total, 1)), perMsg(s.CPU, msgs))
	}
	fmt.Fprintf(w, "  %-46s %10s %7s %12s\n", "total", total.Round(time.Millisecond), "", perMsg(total, msgs))
}

func perMsg(d time.Duration, msgs int64) string {
	if msgs <= 0 {
		return "-"
	}
	return (d / time.Duration(msgs)).Round(100 * time.Nanosecond).String()
}
