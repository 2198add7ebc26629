// Command calibrate measures the simulator's cost-model parameters on this
// machine (make calibrate) and writes them as a cost profile a scenario
// can name (cost_profile: <name>):
//
//	calibrate                                  # scenarios/profiles/calibrated.yaml
//	calibrate -messages 100 -repeats 1 -out /tmp/p.yaml   # a quick smoke run
//
// Each repeat starts a fresh array of real `mailarray serve` processes on
// loopback (bench.StartCluster) and drives it with the real load generator
// (sim.RunReal) at a controlled rate, one message size at a time; then it
// empties every mailbox over POP3, and probes the disk and the loopback
// network. The parameters are what the model means by them (sim/cost.go):
//
//   - cpu_per_kib: the model charges R CPU jobs per ingested message (the
//     SMTP delivery, a peer copy on each other holder), each per_msg +
//     size/KiB * per_kib. The nodes' CPU time over a phase, less their
//     idle CPU, over accepted * R is one charge at that size; the slope
//     of the least-squares line over the sizes is per_kib. The same for
//     reads, over the messages retrieved: recorded, not applied (the
//     model charges a RETR like a delivery).
//   - cpu_per_msg, cpu_background, cpu_idle: a node's CPU grows far less
//     than in proportion to its load (the runtime wakes, spins and parks
//     its threads between messages at any rate), so the sweep's
//     intercept, a charge's average at one rate, is not what a charge
//     costs at another. Phases at the smallest size and rising rates
//     (-rate, then -rates) give the line of the nodes' CPU-s/s over their
//     charges/s: its slope less the size's per_kib is per_msg (the
//     marginal cost); its intercept over the nodes is what a node burns
//     apart from its charges: the idle array's share is cpu_background,
//     the rest cpu_idle, which work preempts (sim/background.go).
//   - disk_fsync: the median of a small write+fdatasync on the data
//     directory's filesystem; disk_bytes_per_sec: 1 / the slope of the
//     median sync time over the write sizes.
//   - link latency and jitter: from SMTP NOOP round trips to a node, one
//     every 10 ms, one-way = round trip / 2: on an array idle between its
//     events every hop wakes a sleeping thread of another process, which a
//     back-to-back echo (also measured, and recorded) never does.
//
// Every figure is the median over the repeats, with their range. The load
// generator runs in this process: its CPU time is reported beside the
// nodes' so that a run where it, not the nodes, was the limit shows.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mailarray/bench"
	"mailarray/bench/calibrate"
	"mailarray/bench/report"
	"mailarray/sim"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "calibrate:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	bin, dir, out, name string
	repeats, nodes      int
	sizes               []int
	messages            int
	rate                float64
	// rates are the extra ingest rates at the smallest size: with the
	// sweep's own phase at rate, they give the line of the nodes' CPU
	// over their load (cpu_background, cpu_per_msg).
	rates            []float64
	senders, readers int
	idle             time.Duration
	fsyncSizes       []int
	fsyncCount       int
	echoCount        int
	noopCount        int
	noopGap          time.Duration
	// containers runs the load line against the array as containers too
	// (image): the host's CPU beyond the nodes (host_cpu_per_msg).
	containers bool
	image      string
	// The busy phase (busyPhase): the containers at busyQuota each, offered
	// busyRate msgs/s for busySeconds by busySenders clients; 0 skips it.
	busyQuota   float64
	busyRate    float64
	busySeconds time.Duration
	busySenders int
}

// Limits of the command line.
const (
	maxRepeats  = 20
	maxNodes    = 8
	maxMessages = 100_000
)

func parse(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("calibrate", flag.ContinueOnError)
	fs.StringVar(&c.bin, "bin", "bin/mailarray", "the mailarray binary (make build)")
	fs.StringVar(&c.dir, "dir", "tmp/calibrate", "working directory: data, node logs, the fsync probe's file (wiped)")
	fs.BoolVar(&c.containers, "containers", true, "also run the load line against the array as Docker containers (-image): the host's CPU beyond the nodes, host_cpu_per_msg")
	fs.StringVar(&c.image, "image", "mailarray:dev", "node image for -containers (make image)")
	fs.Float64Var(&c.busyQuota, "busy-quota", 0.15, "with -containers: each container's CPU quota in the busy phase (cpu_per_msg_busy: a charge's CPU on a node always at work); 0 skips it")
	fs.Float64Var(&c.busyRate, "busy-rate", 1200, "msgs/s offered in the busy phase: above what the containers at -busy-quota can take for the whole phase (800 was drained within the phase in 2 of 3 repeats, 2026-12-08)")
	fs.DurationVar(&c.busySeconds, "busy-seconds", 5*time.Second, "how long the busy phase offers its load")
	fs.IntVar(&c.busySenders, "busy-senders", 128, "SMTP clients of the busy phase: enough to keep every node's queue full")
	fs.StringVar(&c.name, "name", "calibrated", "the profile's name (cost_profile: <name>)")
	fs.StringVar(&c.out, "out", "", "the profile file (default scenarios/profiles/<name>.yaml)")
	fs.IntVar(&c.repeats, "repeats", 3, "independent repeats of every measurement, each on a fresh array")
	fs.IntVar(&c.nodes, "nodes", 4, "nodes in the array (the strategy scenarios have 4)")
	sizes := fs.String("sizes", "1024,8192,32768,131072", "message sizes in bytes, comma-separated (two or more)")
	fs.IntVar(&c.messages, "messages", 1000, "messages per size and repeat")
	fs.Float64Var(&c.rate, "rate", 100, "offered load in msgs/s: well below saturation, so that CPU, not queueing, is measured")
	rates := fs.String("rates", "200,400", "more ingest rates in msgs/s at the smallest size, each above -rate and below saturation: the CPU line over the load (cpu_background, cpu_per_msg)")
	fs.IntVar(&c.senders, "senders", 32, "concurrent SMTP clients: enough that large messages at -rate do not wait for a free one")
	fs.IntVar(&c.readers, "readers", 4, "concurrent POP3 clients emptying the mailboxes")
	fs.DurationVar(&c.idle, "idle", 3*time.Second, "how long the idle array's CPU is measured")
	fsyncSizes := fs.String("fsync-sizes", "4096,65536,262144,1048576", "write sizes of the fsync probe, bytes")
	fs.IntVar(&c.fsyncCount, "fsync-count", 100, "write+fdatasync per size and repeat")
	fs.IntVar(&c.echoCount, "echo-count", 2000, "back-to-back loopback round trips per repeat (recorded beside the link figures)")
	fs.IntVar(&c.noopCount, "noop-count", 300, "SMTP NOOP round trips to a node per repeat, one every -noop-gap: the link latency and jitter")
	fs.DurationVar(&c.noopGap, "noop-gap", 10*time.Millisecond, "pause before each NOOP: the array idle between events, as at the nominal rates")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.out == "" {
		c.out = filepath.Join("scenarios", sim.ProfilesDir, c.name+".yaml")
	}
	var err error
	var errs []error
	if c.sizes, err = parseSizes(*sizes); err != nil {
		errs = append(errs, fmt.Errorf("-sizes: %w", err))
	} else if len(c.sizes) < 2 {
		errs = append(errs, errors.New("-sizes: two or more sizes, so that a line can be fitted"))
	}
	if c.rates, err = parseRates(*rates, c.rate); err != nil {
		errs = append(errs, fmt.Errorf("-rates: %w", err))
	}
	if c.fsyncSizes, err = parseSizes(*fsyncSizes); err != nil || len(c.fsyncSizes) < 2 {
		errs = append(errs, fmt.Errorf("-fsync-sizes: two or more sizes (%v)", err))
	}
	switch {
	case c.repeats < 1 || c.repeats > maxRepeats:
		errs = append(errs, fmt.Errorf("-repeats %d must be 1..%d", c.repeats, maxRepeats))
	case c.nodes < replicas || c.nodes > maxNodes:
		errs = append(errs, fmt.Errorf("-nodes %d must be %d..%d", c.nodes, replicas, maxNodes))
	case c.messages < 10 || c.messages > maxMessages:
		errs = append(errs, fmt.Errorf("-messages %d must be 10..%d", c.messages, maxMessages))
	case !(c.rate > 0 && c.rate <= 10_000):
		errs = append(errs, fmt.Errorf("-rate %v must be in (0, 10000]", c.rate))
	case c.busyQuota < 0 || c.busyQuota > float64(runtime.NumCPU()) || (c.busyQuota > 0 && (c.busyRate <= 0 || c.busyRate > 10_000 || c.busySeconds < time.Second || c.busySenders < 1 || c.busySenders > 4096)):
		errs = append(errs, fmt.Errorf("-busy-quota %v must be 0..%d, and with it -busy-rate in (0, 10000], -busy-seconds >= 1s, -busy-senders 1..4096", c.busyQuota, runtime.NumCPU()))
	case c.senders < 1 || c.readers < 1 || c.fsyncCount < 1 || c.echoCount < 1 || c.noopCount < 1 || c.idle <= 0 || c.noopGap <= 0:
		errs = append(errs, errors.New("-senders, -readers, -fsync-count, -echo-count, -noop-count, -noop-gap and -idle must be > 0"))
	}
	return c, errors.Join(errs...)
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 256 || n > 16<<20 {
			return nil, fmt.Errorf("%q is not a size of 256..%d bytes", f, 16<<20)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseRates reads the extra rates: one or more, each above base (the
// line needs load levels apart) and at most 10,000.
func parseRates(s string, base float64) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(r > base && r <= 10_000) {
			return nil, fmt.Errorf("%q is not a rate above -rate %v and at most 10000", f, base)
		}
		out = append(out, r)
	}
	return out, nil
}

// scenario is the load of one ingest phase: size-byte messages at a
// constant rate to uniformly drawn mailboxes, no readers, and a drain
// long enough for the commits and copies to finish.
func (c config) scenario(size int, seed uint64) sim.Scenario {
	return c.scenarioAt(size, c.rate, c.messages, seed)
}

// scenarioAt is scenario at another rate and message count.
func (c config) scenarioAt(size int, rate float64, messages int, seed uint64) sim.Scenario {
	var nodes []sim.NodeSpec
	for i := range c.nodes {
		nodes = append(nodes, sim.NodeSpec{Name: "n" + strconv.Itoa(i+1)})
	}
	dur := time.Duration(float64(messages) / rate * float64(time.Second))
	sc := sim.Scenario{
		Name: "calibrate", Seed: seed,
		Duration: sim.Duration(dur), Drain: sim.Duration(max(ingestDrainMin, dur/10)),
		Mailboxes: mailboxCount, Replicas: replicas, WriteQuorum: replicas,
		DNSStrategy: "roundrobin", PlacementStrategy: "local",
		Nodes: nodes,
		Load: sim.LoadSpec{
			Senders: c.senders, Arrival: sim.ArrivalConstant, RatePerSec: rate,
			Size:  sim.SizeSpec{Dist: sim.SizeFixed, MedianBytes: size, MinBytes: size, MaxBytes: size},
			ZipfS: -1,
		},
	}
	// Validate fills the defaults the cluster's command lines need
	// (domain, TTL); parse has bounded every input, so an error is a bug.
	if err := sc.Validate(); err != nil {
		panic("calibrate: the calibration scenario is invalid: " + err.Error())
	}
	return sc
}

func run(args []string) error {
	cfg, err := parse(args)
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.bin); err != nil {
		return fmt.Errorf("%w (run make build)", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := os.Stdout
	phaseTime := time.Duration(float64(cfg.messages) / cfg.rate * float64(time.Second))
	perRepeat := time.Duration(len(cfg.sizes)+len(cfg.rates))*phaseTime + cfg.idle
	fmt.Fprintf(log, "calibrate: %d repeats of %d nodes (R=%d, placement local) on %d CPUs; each: %d messages at %v msgs/s for each size %v, then POP3 reads, then the smallest size at %v msgs/s, then the fsync and loopback probes (at least %v of load per repeat)\n",
		cfg.repeats, cfg.nodes, replicas, runtime.NumCPU(), cfg.messages, cfg.rate, cfg.sizes, cfg.rates, perRepeat.Round(time.Second))
	// Other work on the machine moves every figure: say so when there is some.
	if b0, ok := calibrate.HostBusy(); ok {
		t0 := time.Now()
		if err := bench.Sleep(ctx, 3*time.Second); err != nil {
			return err
		}
		if b1, ok := calibrate.HostBusy(); ok && b1 >= b0 {
			busy := (b1 - b0).Seconds() / (float64(runtime.NumCPU()) * time.Since(t0).Seconds())
			fmt.Fprintf(log, "calibrate: the machine is %.0f%% busy with other work before the run\n", 100*busy)
			if busy > report.TruthQuietHostBusy {
				fmt.Fprintf(log, "calibrate: WARNING: more than a quiet machine (%.0f%%): the figures will include its contention\n", 100*report.TruthQuietHostBusy)
			}
		}
	}
	var results []repeatResult
	for r := range cfg.repeats {
		fmt.Fprintf(log, "repeat %d of %d\n", r+1, cfg.repeats)
		res, err := runRepeat(ctx, cfg, r, log)
		if err != nil {
			return fmt.Errorf("repeat %d: %w", r+1, err)
		}
		results = append(results, res)
	}
	p, err := derive(cfg, results, log)
	if err != nil {
		return err
	}
	p.Machine, p.Date, p.Commit = machine(), time.Now().UTC().Format(time.RFC3339), binCommit(cfg.bin)
	b, err := p.Marshal()
	if err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("the measured profile is not usable: %w", err)
	}
	header := fmt.Sprintf("# Cost profile measured by make calibrate (bench/cmd/calibrate): name it in a\n# scenario with cost_profile: %s. Each figure is the median of the repeats,\n# with their range; method says how each was obtained.\n", p.Name)
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(cfg.out, append([]byte(header), b...), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(log, "calibrate: wrote %s\n", cfg.out)
	return nil
}

// machine describes this machine: host, CPUs and model, kernel, Go.
func machine() string {
	host, _ := os.Hostname()
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := runtime.GOOS
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel += " " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d CPUs (%s), %s, %s", host, runtime.NumCPU(), model, kernel, runtime.Version())
}

// binCommit is the commit the measured binary was built from (mailarray
// version), or "unknown".
func binCommit(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	s := string(out)
	if _, after, ok := strings.Cut(s, "commit "); ok {
		if c, _, ok := strings.Cut(after, ","); ok && c != "" {
			return c
		}
	}
	return strings.TrimSpace(s)
}
