// Command benchreal runs a scenario's load over real loopback sockets
// against `mailarray serve` processes and writes the report in the
// simulator's format, timed by the wall clock (make bench-real):
//
//	benchreal -scenario roundrobin    # results/roundrobin-real.json and .md
//
// It starts the scenario's nodes (ports chosen free on 127.0.0.1, gossip
// profile local, the scenario's strategies, R, W and weights), drives the
// same load generator as the simulator (same seed, arrivals, sizes,
// recipients and readers) in real time, applies the faults it can (crash
// is SIGKILL, restart and add_node start the node, remove_node is SIGTERM;
// partitions, slow disks and lossy links are skipped and say so), then
// reads every node's status, checks that no acknowledged message is lost,
// stops the nodes and renders the page. The scenario's modeled hardware
// costs cannot be imposed on real processes: every node runs on this
// machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"mailarray/bench"
	"mailarray/bench/report"
	"mailarray/sim"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchreal:", err)
		os.Exit(1)
	}
}

// realReport is the simulator's report with a mode marker first: the same
// format, so that benchreport renders both.
type realReport struct {
	Mode string `json:"mode"`
	*sim.Report
}

func run(args []string) error {
	fs := flag.NewFlagSet("benchreal", flag.ContinueOnError)
	name := fs.String("scenario", "", "scenario name: scenarios/<name>.yaml")
	bin := fs.String("bin", "bin/mailarray", "the mailarray binary (make build)")
	dir := fs.String("dir", "tmp/bench-real", "working directory: users file, data, node logs (wiped)")
	results := fs.String("results", "results", "where <name>-real.json, <name>-real.md and img/ go")
	duration := fs.Duration("duration", 0, "override the scenario's load duration (0: the scenario's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("-scenario is required (make bench-real SCENARIO=name)")
	}
	sc, err := sim.LoadScenario(filepath.Join("scenarios", *name+".yaml"))
	if err != nil {
		return err
	}
	if *duration > 0 {
		sc.Duration = sim.Duration(*duration)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Fprintf(os.Stderr, "benchreal: starting %d nodes of %s (%s)\n", len(sc.Nodes), sc.Name, *dir)
	cl, err := bench.StartCluster(ctx, bench.DefaultClusterConfig(*bin, filepath.Join(*dir, sc.Name), sc))
	if err != nil {
		return err
	}
	defer cl.Close()
	fmt.Fprintf(os.Stderr, "benchreal: nodes ready; %v of load, then %v of drain\n", sc.Duration, sc.Drain)
	w0 := time.Now()
	rep, err := sim.RunReal(ctx, sc, cl.Target(), sim.RealOptions{Progress: os.Stderr, Fault: cl.Fault, UnderReplicated: cl.UnderReplicated})
	if err != nil {
		return err
	}
	wall := time.Since(w0)
	fmt.Fprintf(os.Stderr, "benchreal: checking %d accepted messages on the nodes\n", rep.Accepted)
	if err := cl.Fill(ctx, rep, wall); err != nil {
		return err
	}
	cl.Close()
	rep.Scenario = sc.Name + "-real"
	rep.Wall = sim.WallReport{Seconds: round3(wall.Seconds()), SimMsgsPerWallS: round3(float64(rep.Accepted) / wall.Seconds()), VirtualPerWallS: 1}
	js, err := report.EncodeJSON(realReport{Mode: report.ModeReal, Report: rep})
	if err != nil {
		return err
	}
	out := filepath.Join(*results, rep.Scenario+".json")
	if err := os.WriteFile(out, js, 0o644); err != nil {
		return err
	}
	r, err := report.Decode(js)
	if err != nil {
		return err
	}
	md, err := report.RenderScenario(r, report.Options{ImgDir: filepath.Join(*results, "img"), ImgRel: "img"})
	if err != nil {
		return err
	}
	mdOut := filepath.Join(*results, rep.Scenario+".md")
	if err := os.WriteFile(mdOut, md, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchreal: %s: %d offered, %d accepted (%.1f msgs/s wall), %d rejected, %d failed, %d lost; p50 %.1f ms, p99 %.1f ms\nbenchreal: wrote %s and %s\n",
		sc.Name, rep.Offered, rep.Accepted, rep.Throughput, rep.Rejected, rep.Failed, rep.Lost, rep.Latency.P50, rep.Latency.P99, out, mdOut)
	return nil
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }
