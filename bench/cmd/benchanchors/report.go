package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// The goals of issue 21, per path.
const (
	goalIngest3   = 3.0 // 3 nodes R=2 W=2 against Postfix's one copy
	goalIngest1   = 7.0 // one node against Postfix
	goalIMAP      = 1.0 // against Dovecot, same client
	goalPOP3Pipe  = 1.0 // against Dovecot, up to 64 RETRs in flight
	goalSimMsgs   = 100000
	goalSimWallS  = 20.0 // 100,000 messages in at most this many wall seconds
	goalSimFactor = 4.0  // that is, about 4x the real array's ingest
)

type step struct {
	Name    string
	Command string
	Seconds float64
	Output  string
}

type machine struct {
	NProc    int
	CPU      string
	Kernel   string
	MemTotal string
	Disk     string // where the scripts' data directories live (the temp dir)
	SimDisk  string // where the simulator keeps its stores
	LoadAvg  string // at the start: the machine may be shared
}

type report struct {
	Config   config
	Start    time.Time
	Duration time.Duration
	Commit   string
	Machine  machine
	Steps    []step
	Ingest3  ingestResult
	Ingest1  ingestResult
	Access   accessResult
	Sim      simResult
}

func readMachine() machine {
	m := machine{NProc: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	m.Kernel = firstLine("/proc/sys/kernel/osrelease")
	m.LoadAvg = firstLine("/proc/loadavg")
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemTotal = strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")
	}
	m.Disk = diskOf(os.TempDir())
	simDir := os.Getenv("SIM_DATA_DIR")
	if simDir == "" {
		simDir = "/dev/shm" // sim/doc.go: the simulator's default when it exists
		if _, err := os.Stat(simDir); err != nil {
			simDir = os.TempDir()
		}
	}
	m.SimDisk = diskOf(simDir)
	return m
}

func firstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
}

// diskOf says which device and filesystem hold dir, and whether the
// kernel believes the device rotates: fsync's cost is the ingest's floor.
func diskOf(dir string) string {
	out, err := exec.Command("findmnt", "-no", "SOURCE,FSTYPE", "-T", dir).Output()
	if err != nil {
		return dir + ": unknown"
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return dir + ": unknown"
	}
	desc := fmt.Sprintf("%s: %s (%s)", dir, f[0], f[1])
	if strings.HasPrefix(f[0], "/dev/") {
		dev := filepath.Base(f[0])
		// A partition's queue is its disk's: sda1 -> sda, nvme0n1p1 -> nvme0n1.
		for _, d := range []string{dev, strings.TrimRight(dev, "0123456789"), strings.TrimSuffix(strings.TrimRight(dev, "0123456789"), "p")} {
			if r := firstLine("/sys/block/" + d + "/queue/rotational"); r == "0" || r == "1" {
				kind := map[string]string{"0": "non-rotational", "1": "rotational"}[r] + " per /sys/block"
				if model := firstLine("/sys/block/" + d + "/device/model"); model != "unknown" && model != "" {
					kind = model + ", " + kind
				}
				desc += ", " + kind
				break
			}
		}
	}
	return desc
}

// row is one line of the table.
type row struct {
	Path, Project, Anchor, Ratio, Goal, Met string
}

// figure is the median of the rounds, with their range when there were
// several.
func figure(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	if len(xs) == 1 {
		return fmt.Sprintf("%.0f", lo)
	}
	return fmt.Sprintf("%.0f (%.0f-%.0f)", median(xs), lo, hi)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func (r *report) rows() []row {
	c := r.Config
	a := r.Access.Series
	ingest := func(res ingestResult, path string, goal float64) row {
		return row{
			Path:    path,
			Project: figure(res.Mailarray),
			Anchor:  "Postfix, one copy: " + figure(res.Postfix),
			Ratio:   fmt.Sprintf("%.2f (%.2f-%.2f)", res.RatioMed, res.RatioMin, res.RatioMax),
			Goal:    fmt.Sprintf(">= %.1f", goal),
			Met:     met(res.RatioMed >= goal),
		}
	}
	access := func(path, series string, ratio, goal float64) row {
		g, m := fmt.Sprintf(">= %.1f", goal), met(ratio >= goal)
		if goal == 0 {
			g, m = "(not a goal: one round trip per message, the client is the bottleneck)", "-"
		}
		return row{
			Path:    path,
			Project: figure(a["mailarray "+series]),
			Anchor:  "Dovecot: " + figure(a["dovecot "+series]),
			Ratio:   fmt.Sprintf("%.2f", ratio),
			Goal:    g,
			Met:     m,
		}
	}
	real3 := median(r.Ingest3.Mailarray)
	simRow := row{
		Path:    fmt.Sprintf("simulator, %d messages, 3 nodes R=2 (BenchmarkSimThreeNodeR2)", r.Sim.Msgs),
		Project: fmt.Sprintf("%.1f s wall, %.0f msgs/wall-s", r.Sim.WallS, r.Sim.MsgsPerWallS),
		Anchor:  fmt.Sprintf("the real array's 3-node ingest above: %.0f msgs/s", real3),
		Goal:    fmt.Sprintf("%d in <= %.0f s (>= %.0fx real)", goalSimMsgs, goalSimWallS, goalSimFactor),
	}
	if real3 > 0 {
		simRow.Ratio = fmt.Sprintf("%.2fx real", r.Sim.MsgsPerWallS/real3)
	}
	simRow.Met = met(r.Sim.WallS <= goalSimWallS)
	if r.Sim.Msgs != goalSimMsgs {
		simRow.Met = fmt.Sprintf("n/a (%d messages, not %d)", r.Sim.Msgs, goalSimMsgs)
	}
	return []row{
		ingest(r.Ingest3, fmt.Sprintf("durable ingest, 3 nodes R=2 W=2, smtp-source 4 KiB, %d msgs x %d rounds", c.IngestMsgs, c.Rounds), goalIngest3),
		ingest(r.Ingest1, fmt.Sprintf("durable ingest, one node R=1, same client, %d msgs x %d rounds", c.IngestMsgs, c.Rounds), goalIngest1),
		access(fmt.Sprintf("IMAP UID FETCH 1:* BODY.PEEK[], %d x ~4.5 KiB, 3 nodes R=2, read from n1, imaplib", c.AccessMsgs), "imap", r.Access.RatioIMAP, goalIMAP),
		access("POP3 RETR, up to 64 in flight (RFC 2449 PIPELINING), same mailbox", "pop3 pipelined", r.Access.RatioPipeline, goalPOP3Pipe),
		access("POP3 RETR with poplib (one round trip per message)", "pop3", r.Access.RatioPOP3, 0),
		simRow,
	}
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Side-by-side anchors (issue 21)\n\n")
	p("Written by `make bench-anchors` (bench/cmd/benchanchors). One run on one machine: the ratios are the figures\n")
	p("to compare; absolute msgs/s move with the machine and its load. Figures are msgs/s, median of the rounds\n")
	p("(range in brackets); ratios are this project's over the anchor's (ingest: the median of the per-round ratios,\n")
	p("as ingest_compare.py computes them; access: the ratio of the medians, as access_compare.py computes them).\n\n")
	p("| path | this project | anchor | ratio | goal | |\n|---|---:|---:|---:|---:|---|\n")
	for _, w := range r.rows() {
		p("| %s | %s | %s | %s | %s | %s |\n", w.Path, w.Project, w.Anchor, w.Ratio, w.Goal, w.Met)
	}
	p("\nDurability was not relaxed for any of this: the array ran with W copies fsynced before each 250\n")
	p("(R=2 W=2 on three nodes, R=1 W=1 alone), the shipped pipeline, fsync on.\n\n")
	p("## Run\n\n")
	p("- date: %s (UTC), duration %s\n", r.Start.Format("2006-01-02 15:04:05"), r.Duration.Round(time.Second))
	p("- commit: %s\n", r.Commit)
	m := r.Machine
	p("- machine: %d CPUs (nproc), %s, kernel %s, memory %s\n", m.NProc, m.CPU, m.Kernel, m.MemTotal)
	p("- disk of the nodes' and the anchors' data: %s\n", m.Disk)
	p("- disk of the simulator's stores: %s\n", m.SimDisk)
	p("- load average at the start: %s\n", m.LoadAvg)
	p("\n## Commands\n\nRun from the repository's root, in this order:\n\n```sh\n")
	for _, s := range r.Steps {
		p("%s    # %s, %.0f s\n", s.Command, s.Name, s.Seconds)
	}
	p("```\n\n## Output of each step\n\n")
	for _, s := range r.Steps {
		p("<details><summary>%s</summary>\n\n```\n%s```\n\n</details>\n\n", s.Name, tail(s.Output, 40))
	}
	return b.String()
}

// tail keeps the last n lines of a step's output: the figures are at the
// end, and a go test or apt log before them is noise on the page.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := strings.Join(lines, "")
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return out
}

// summary is the run as one JSON object, for scripts that compare runs.
func (r *report) summary() map[string]any {
	return map[string]any{
		"date":       r.Start.Format(time.RFC3339),
		"commit":     r.Commit,
		"nproc":      r.Machine.NProc,
		"duration_s": r.Duration.Seconds(),
		"ingest3":    r.Ingest3,
		"ingest1":    r.Ingest1,
		"access":     r.Access,
		"sim":        r.Sim,
	}
}
