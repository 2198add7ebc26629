// Command soakreal is the real-process soak (make soak-real): runs of
// three `mailarray serve` processes on loopback under SMTP and POP3 load,
// each with one fault drawn from its seed (SIGKILL and restart,
// SIGSTOP/SIGCONT past failure detection, restart from a backup of
// node.db), checked against what the load generator saw acknowledged.
// Package chaos/realsoak says what a run does and checks.
//
//	soakreal -runs 100              # seeds 1..100; results/soak-real.md
//	soakreal -runs 1 -seed 17       # replay seed 17
//
// It exits 1 if any run broke a rule or could not be carried out, 2 on a
// usage error. Every node it starts is stopped before it exits, also on
// Ctrl-C (a second Ctrl-C exits at once; the kernel then kills the nodes).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"mailarray/chaos/realsoak"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg := realsoak.DefaultConfig()
	fs := flag.NewFlagSet("soakreal", flag.ContinueOnError)
	runs := fs.Int("runs", 100, "number of runs")
	seed := fs.Uint64("seed", 1, "first seed; run i uses seed+i (its fault kind is seed mod 3: kill, pause, restore)")
	out := fs.String("out", "results/soak-real.md", "report (a JSON of every run goes beside it in -dir)")
	fs.StringVar(&cfg.Bin, "bin", cfg.Bin, "the mailarray binary (make build)")
	fs.StringVar(&cfg.Dir, "dir", cfg.Dir, "working directory: one run-<seed> directory per run, kept when the run fails")
	fs.BoolVar(&cfg.KeepPassing, "keep", false, "keep the directories of passing runs too")
	plans := fs.Bool("plan", false, "print each run's fault and exit (nothing is started)")
	render := fs.String("render", "", "rewrite the report from this soak-real.json (of -dir) and exit")
	fs.DurationVar(&cfg.LoadDuration, "load", cfg.LoadDuration, "load duration of a run")
	fs.Float64Var(&cfg.RatePerSec, "rate", cfg.RatePerSec, "messages per second offered")
	fs.IntVar(&cfg.Senders, "senders", cfg.Senders, "SMTP senders")
	fs.IntVar(&cfg.Readers, "readers", cfg.Readers, "POP3 readers (they delete what they read)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *runs < 1 {
		fmt.Fprintln(os.Stderr, "soakreal: -runs must be >= 1")
		return 2
	}
	if *plans {
		for i := range *runs {
			fmt.Printf("seed %d: %s\n", *seed+uint64(i), realsoak.NewPlan(*seed+uint64(i), cfg.LoadDuration))
		}
		return 0
	}
	if *render != "" {
		b, err := os.ReadFile(*render)
		var s realsoak.Summary
		if err == nil {
			err = json.Unmarshal(b, &s)
		}
		if err == nil {
			cmd := fmt.Sprintf("make soak-real RUNS=%d SEED=%d", len(s.Runs), s.FirstSeed)
			err = os.WriteFile(*out, s.Markdown(cfg, cmd, "make soak-real RUNS=1 SEED=%d"), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "soakreal:", err)
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, the next one has its default effect.
		<-ctx.Done()
		stop()
	}()
	cmd := fmt.Sprintf("make soak-real RUNS=%d SEED=%d", *runs, *seed)
	jsPath := filepath.Join(cfg.Dir, "soak-real.json")
	write := func(s *realsoak.Summary) {
		md := s.Markdown(cfg, cmd, "make soak-real RUNS=1 SEED=%d")
		err := os.MkdirAll(filepath.Dir(*out), 0o755)
		if err == nil {
			err = os.WriteFile(*out, md, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "soakreal:", err)
		}
		js, _ := json.MarshalIndent(s, "", "  ")
		os.WriteFile(jsPath, js, 0o644)
	}
	s, err := realsoak.Soak(ctx, cfg, *seed, *runs, os.Stderr, write)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soakreal:", err)
		return 2
	}
	write(s)
	failed := s.Failed()
	fmt.Fprintf(os.Stderr, "soakreal: %d runs, %d failed, %v; report %s, every run in %s\n", len(s.Runs), len(failed), s.Wall, *out, jsPath)
	if len(failed) > 0 {
		var seeds []string
		for _, r := range failed {
			seeds = append(seeds, fmt.Sprintf("%d (%s)", r.Plan.Seed, r.Plan.Kind))
		}
		fmt.Fprintf(os.Stderr, "soakreal: failed seeds: %s; replay one with make soak-real RUNS=1 SEED=<seed>\n", strings.Join(seeds, ", "))
		return 1
	}
	if s.Interrupted {
		return 1
	}
	return 0
}
