// Command truth checks the simulator against a real heterogeneous array
// (make truth, issue 20): four `mailarray serve` containers with unequal
// CPU quotas and one emulated slow disk (bench.DefaultTruthArray), and the
// same array as a scenario with the calibrated costs. For each strategy it
// predicts, then measures, the saturation point (the simulator's search
// and criterion on both sides), and the p50, p99 and copy shares of a
// nominal run; it writes results/truth.json and results/truth.md with a
// chart.
//
//	truth                                  # results/truth.json, .md (16.5 minutes for all eight strategies on a quiet machine)
//	truth -quick                           # smoke: one strategy, short runs, to tmp/truth/results
//
// Order: the predictions first (the simulator in `go test ./bench -run
// TestTruthPredict`, before any container runs, so that they do not share
// the CPUs), then per strategy: start the containers, the nominal run, the
// saturation probes against the same array, remove the containers. The
// load generator runs in this process, beside the quotas; its CPU is
// reported so that a run it limited shows. Containers and their network
// carry a label and are removed on every exit path, and a previous run's
// leftovers at the start.
package main

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
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
		fmt.Fprintln(os.Stderr, "truth:", err)
		os.Exit(1)
	}
}

type config struct {
	profile, out, work, image, subnet string
	strategies                        []string
	rate                              float64
	duration, drain                   time.Duration
	maxProbes                         int
	quick                             bool
}

func parse(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("truth", flag.ContinueOnError)
	fs.StringVar(&c.profile, "profile", "calibrated", "cost profile: scenarios/profiles/<name>.yaml (make calibrate), or a path to a .yaml file")
	strategies := fs.String("strategies", strings.Join(bench.Strategies, ","), "strategy scenarios to compare (comma-separated; default all eight)")
	fs.Float64Var(&c.rate, "rate", 50, "nominal offered rate (msgs/s): below every strategy's saturation; the searches start from it")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "nominal run's load")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "nominal run's drain")
	fs.IntVar(&c.maxProbes, "max-probes", 0, "saturation probes per strategy and side (0: the simulator search's default)")
	fs.StringVar(&c.out, "out", "", "where truth.json, truth.md and img/ go (default results, or tmp/truth/results with -quick)")
	fs.StringVar(&c.work, "work", "tmp/truth", "working directory: generated scenarios, node logs (wiped)")
	fs.StringVar(&c.image, "image", "mailarray:dev", "node image (make image)")
	fs.StringVar(&c.subnet, "subnet", "172.30.77.0/24", "the containers' bridge network (a.b.c.0/24)")
	fs.BoolVar(&c.quick, "quick", os.Getenv("TRUTH_QUICK") == "1", "smoke run: roundrobin only, 3 s runs, 2 probes (TRUTH_QUICK=1)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		// Flags given explicitly still win.
		if !set["strategies"] {
			*strategies = "roundrobin"
		}
		if !set["duration"] {
			c.duration = 3 * time.Second
		}
		if !set["drain"] {
			c.drain = 2 * time.Second
		}
		if !set["max-probes"] {
			c.maxProbes = 2
		}
	}
	if c.out == "" {
		c.out = "results"
		if c.quick {
			c.out = filepath.Join(c.work, "results")
		}
	}
	for _, s := range strings.Split(*strategies, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if !bench.IsStrategy(s) {
				return c, fmt.Errorf("-strategies: %q is not a strategy scenario (%v)", s, bench.Strategies)
			}
			c.strategies = append(c.strategies, s)
		}
	}
	switch {
	case len(c.strategies) == 0:
		return c, errors.New("-strategies: none")
	case !(c.rate > 0):
		return c, errors.New("-rate must be > 0")
	case c.duration < time.Second || c.drain < 0:
		return c, errors.New("-duration must be >= 1s and -drain >= 0")
	case c.maxProbes < 0 || c.maxProbes > 32:
		return c, errors.New("-max-probes must be 0..32")
	}
	return c, nil
}

func run(args []string) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w0 := time.Now()
	busy, err := hostBusyOver(ctx, 3*time.Second)
	if err != nil {
		return err
	}
	if busy > report.TruthQuietHostBusy {
		logf("WARNING: the machine is %.0f%% busy with other work before the run: the measured side will share the CPUs with it", 100*busy)
	}
	path := c.profile
	if !strings.HasSuffix(path, ".yaml") {
		path = filepath.Join("scenarios", sim.ProfilesDir, c.profile+".yaml")
	}
	prof, err := sim.LoadProfile(path)
	if err != nil {
		return fmt.Errorf("%w (make calibrate writes it)", err)
	}
	if err := os.RemoveAll(c.work); err != nil {
		return err
	}
	scDir := filepath.Join(c.work, "scenarios")
	array := bench.DefaultTruthArray()
	scs := map[string]sim.Scenario{}
	for _, s := range c.strategies {
		strat, err := sim.LoadScenario(filepath.Join("scenarios", s+".yaml"))
		if err != nil {
			return err
		}
		sc, err := bench.TruthScenario(strat, array, prof, c.rate, c.duration, c.drain)
		if err != nil {
			return err
		}
		if _, err := bench.WriteScenario(scDir, sc); err != nil {
			return err
		}
		scs[s] = sc
	}

	logf("predicting %v with the simulator (scenarios in %s)", c.strategies, scDir)
	pred, err := predict(ctx, c, scDir)
	if err != nil {
		return err
	}

	t := &report.Truth{Kind: report.KindTruth, Quick: c.quick, Profile: prof.Name, ProfileMachine: prof.Machine, ProfileDate: prof.Date,
		NominalRate: c.rate, NominalSeconds: c.duration.Seconds(), HostCPUs: runtime.NumCPU()}
	first := scs[c.strategies[0]]
	t.HostCPUPerMsgMs = ms(first.HostCPUPerMsg.D())
	t.Criterion = bench.TruthSaturationConfig(first, c.maxProbes).Criterion()
	for _, n := range first.Nodes {
		var delay time.Duration
		for _, a := range array {
			if a.Name == n.Name {
				delay = a.SyncDelay
			}
		}
		size := time.Duration(int64(first.Load.Size.MedianBytes) * int64(n.CPUPerKiB.D()) / 1024)
		tn := report.TruthNode{Name: n.Name, CPUQuota: n.CPUQuota, SyncDelayMs: ms(delay), DiskFsyncMs: ms(n.DiskFsync.D()), Weight: n.Weight,
			ChargeMs: ms(n.CPUPerMsg.D() + size), CPUBackground: n.CPUBackground, CPUIdle: n.CPUIdle, Cores: n.CPUCores}
		if n.CPUPerMsgBusy > 0 {
			tn.BusyChargeMs = ms(n.CPUPerMsgBusy.D() + size)
		}
		t.Array = append(t.Array, tn)
	}

	if err := bench.RemoveLabelled(ctx, bench.DefaultContainerConfig("", sim.Scenario{}, nil).Label); err != nil {
		return err
	}
	for _, s := range c.strategies {
		meas, err := measure(ctx, c, scs[s], array)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		t.Strategies = append(t.Strategies, report.NewTruthStrategy(s, pred[s], meas))
	}
	t.Rank()
	t.HostBusyBefore = round3(busy)
	t.WallSeconds = float64(int(time.Since(w0).Seconds()))
	return write(c, t)
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "truth: "+format+"\n", a...) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// predict runs the simulator's side (bench's TestTruthPredict) in a child
// `go test`, in its own process group so that an interrupt ends it all.
func predict(ctx context.Context, c config, scDir string) (map[string]report.TruthSide, error) {
	abs, err := filepath.Abs(scDir)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(abs, "predicted.json")
	cmd := exec.CommandContext(ctx, "go", "test", "./bench", "-run", "^TestTruthPredict$", "-count=1", "-v", "-timeout", "3h")
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "TRUTH_SCENARIOS="+abs, "TRUTH_STRATEGIES="+strings.Join(c.strategies, ","),
		"TRUTH_OUT="+out, "TRUTH_MAX_PROBES="+strconv.Itoa(c.maxProbes))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("the simulator's side (go test ./bench -run TestTruthPredict): %w", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	var ps []bench.TruthPrediction
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("predictions: %w", err)
	}
	m := map[string]report.TruthSide{}
	for _, p := range ps {
		m[p.Strategy] = p.Side
	}
	for _, s := range c.strategies {
		if _, ok := m[s]; !ok {
			return nil, fmt.Errorf("no prediction for %s", s)
		}
	}
	return m, nil
}

// cpuNow is this process's CPU time (the load generator's).
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// realRun is one run of sc against the array: the report filled with the
// nodes' copies (since the run began), CPU and the lost check, and the
// load generator's CPU in cores.
func realRun(ctx context.Context, a *bench.ContainerArray, sc sim.Scenario, progress bool) (*sim.Report, float64, error) {
	copies0, err := a.Copies(ctx)
	if err != nil {
		return nil, 0, err
	}
	cpu0, self0, w0 := a.CPUSeconds(), cpuNow(), time.Now()
	host0, hostOK := calibrate.HostBusy()
	opts := sim.RealOptions{}
	if progress {
		opts.Progress = os.Stderr
	}
	rep, err := sim.RunReal(ctx, sc, a.Target(), opts)
	if err != nil {
		return nil, 0, err
	}
	wall := time.Since(w0)
	gen := (cpuNow() - self0).Seconds() / wall.Seconds()
	if host1, ok := calibrate.HostBusy(); ok && hostOK && host1 >= host0 {
		// The machine the containers share, as the model's host reports it.
		busy := (host1 - host0).Seconds()
		rep.Host = &sim.HostReport{CPUs: runtime.NumCPU(), BusySeconds: busy, Utilization: busy / (float64(runtime.NumCPU()) * wall.Seconds())}
	}
	if err := a.Fill(ctx, rep, copies0, cpu0, wall); err != nil {
		return nil, 0, err
	}
	return rep, gen, nil
}

// measure runs one strategy on containers: the nominal run, then the
// saturation search. The containers are removed on every path.
func measure(ctx context.Context, c config, sc sim.Scenario, array []bench.TruthNode) (side report.TruthSide, err error) {
	delays := map[string]time.Duration{}
	for _, n := range array {
		delays[n.Name] = n.SyncDelay
	}
	cfg := bench.DefaultContainerConfig(filepath.Join(c.work, "nodes", sc.Name), sc, delays)
	cfg.Image, cfg.Subnet = c.image, c.subnet
	var key [24]byte
	if _, err := cryptorand.Read(key[:]); err != nil {
		return side, err
	}
	logf("%s: starting %d containers", sc.Name, len(sc.Nodes))
	a, err := bench.StartContainers(ctx, cfg, hex.EncodeToString(key[:]))
	if err != nil {
		return side, err
	}
	defer func() {
		if cerr := a.Close(); cerr != nil && err == nil {
			err = cerr
		}
		logf("%s: containers removed (node logs in %s)", sc.Name, cfg.Dir)
	}()
	logf("%s: nominal run, %v msgs/s for %v (+%v drain)", sc.Name, sc.Load.RatePerSec, sc.Duration, sc.Drain)
	rep, gen, err := realRun(ctx, a, sc, true)
	if err != nil {
		return side, err
	}
	side = bench.Side(rep)
	side.LoadGenCPUCores = round3(gen)
	logf("%s measured: nominal p50 %.1f ms, p99 %.1f ms, %d/%d accepted, %d lost, shares %v, load generator %.2f cores",
		sc.Name, side.P50Ms, side.P99Ms, side.Accepted, side.Offered, side.Lost, side.CopyShare, gen)
	scfg := bench.TruthSaturationConfig(sc, c.maxProbes)
	pass, fail, probes, err := scfg.Search(sc.Load.RatePerSec, func(rate float64) (report.Probe, error) {
		psc := scfg.ProbeScenario(sc, rate)
		rep, gen, err := realRun(ctx, a, psc, false)
		if err != nil {
			return report.Probe{}, err
		}
		side.LoadGenCPUCoresMax = max(side.LoadGenCPUCoresMax, round3(gen))
		p, err := bench.SummarizeProbe(rep, rate, psc.Load.Senders)
		if err == nil {
			logf("%s measured: probe %v msgs/s, %d senders: p99 %.1f ms, pass %v %s (load generator %.2f cores)", sc.Name, rate, psc.Load.Senders, p.P99Ms, p.Pass, p.Why, gen)
		}
		return p, err
	})
	if err != nil {
		return side, err
	}
	side.SaturationMsgsPerSec, side.FirstFailMsgsPerSec, side.Probes = pass, fail, probes
	return side, nil
}

// hostBusyOver is the machine's busy share of its CPUs over d (0 where
// /proc/stat cannot be read).
func hostBusyOver(ctx context.Context, d time.Duration) (float64, error) {
	b0, ok := calibrate.HostBusy()
	t0 := time.Now()
	if err := bench.Sleep(ctx, d); err != nil {
		return 0, err
	}
	b1, ok1 := calibrate.HostBusy()
	if !ok || !ok1 || b1 < b0 {
		return 0, nil
	}
	return (b1 - b0).Seconds() / (float64(runtime.NumCPU()) * time.Since(t0).Seconds()), nil
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

// write renders truth.json and truth.md (and img/truth.png) into c.out.
func write(c config, t *report.Truth) error {
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	js, err := report.EncodeJSON(t)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, "truth.json"), js, 0o644); err != nil {
		return err
	}
	md, err := report.RenderTruth(t, report.Options{ImgDir: filepath.Join(c.out, "img"), ImgRel: "img"})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, "truth.md"), md, 0o644); err != nil {
		return err
	}
	logf("wrote %s and %s", filepath.Join(c.out, "truth.json"), filepath.Join(c.out, "truth.md"))
	for _, s := range t.Strategies {
		logf("%s: saturation predicted %v measured %v (%+.1f%%); p50 predicted %.1f measured %.1f ms (%+.1f%%); copy share gap %.1f pp",
			s.Strategy, s.PredictedSaturation, s.MeasuredSaturation, s.SaturationErrorPct, s.PredictedP50Ms, s.MeasuredP50Ms, s.P50ErrorPct, s.CopyShareMaxDiffPP)
	}
	return nil
}
