package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"mailarray/bench/calibrate"
	"mailarray/sim"
)

// figures are one repeat's parameters, in seconds and bytes per second.
type figures struct {
	cpuPerMsg, cpuPerKiB, cpuR2    float64
	cpuAvgPerMsg                   float64 // the sweep's intercept: a charge's average cost at -rate
	cpuBackground, loadR2          float64 // per node, CPUs; the load line's fit
	cpuIdle                        float64 // per node, CPUs: the intercept less the idle array's
	cpuPerMsgBusy, busyUtil        float64 // a charge on a node at work (0: no busy phase); its quotas' use
	busyRate                       float64 // msgs/s the busy array accepted
	hostPerMsg, hostR2             float64 // the machine's CPU outside the nodes per message; 0 unknown
	hostFromContainers             bool    // measured on the array as containers, not loopback processes
	readPerMsg, readPerKiB, readR2 float64
	fsyncP50, fsyncP90, fsyncP99   float64
	fsyncIntercept                 float64
	bandwidth                      float64
	bandwidthFromFit               bool
	latency, jitter                float64
	echoP50                        float64 // back-to-back echo round trip
	genUtilMax, nodeUtilMax        float64
	idle                           float64 // the array's idle CPUs
}

// repeatFigures derives one repeat's parameters from its measurements.
func repeatFigures(cfg config, res repeatResult) (figures, error) {
	f := figures{idle: res.idlePerSec}
	var ing, rd []calibrate.Point
	for _, p := range res.ingest {
		ing = append(ing, calibrate.Point{X: float64(p.size) / 1024, Y: p.perCharge(chargesPerMsg)})
		f.genUtilMax = max(f.genUtilMax, util(p.genCPU, p.wall))
		f.nodeUtilMax = max(f.nodeUtilMax, util(p.nodeCPU, p.wall))
	}
	for _, p := range res.read {
		rd = append(rd, calibrate.Point{X: float64(p.size) / 1024, Y: p.perCharge(1)})
	}
	l, err := calibrate.Fit(ing)
	if err != nil {
		return f, fmt.Errorf("ingest: %w", err)
	}
	f.cpuAvgPerMsg, f.cpuPerKiB, f.cpuR2 = l.Intercept, l.Slope, l.R2
	// The CPU line over the load at the smallest size: the nodes'
	// CPU-s/s against the charges/s. Its slope is the marginal cost of a
	// charge of that size, its intercept what the array burns whatever
	// the load (the model's background, shared equally by the nodes).
	var lp []calibrate.Point
	for _, p := range res.load {
		w := p.wall.Seconds()
		lp = append(lp, calibrate.Point{X: float64(p.count*chargesPerMsg) / w, Y: p.nodeCPU.Seconds() / w})
	}
	ll, err := calibrate.Fit(lp)
	if err != nil {
		return f, fmt.Errorf("load line: %w", err)
	}
	size0 := float64(slices.Min(cfg.sizes)) / 1024
	f.cpuPerMsg = ll.Slope - size0*f.cpuPerKiB
	// The intercept is two things: what the idle array burns (gossip,
	// timers: measured alone) and what a node with load burns between its
	// messages, waking, spinning and parking threads, which work preempts
	// (the model's idle CPU, sim/background.go).
	icpt := max(0, ll.Intercept/float64(cfg.nodes))
	f.cpuBackground = min(icpt, res.idlePerSec/float64(cfg.nodes))
	f.cpuIdle = icpt - f.cpuBackground
	f.loadR2 = ll.R2
	// A charge on a node always at work (busyPhase): the containers' CPU
	// less their background over the charges they accepted, less the
	// size's per-KiB share.
	if b := res.busy; b != nil && b.count > 0 {
		w := b.wall.Seconds()
		bg := f.cpuBackground * float64(cfg.nodes) * w
		f.cpuPerMsgBusy = max(0, (b.nodeCPU.Seconds()-bg)/float64(b.count*chargesPerMsg)-size0*f.cpuPerKiB)
		f.busyUtil = b.nodeCPU.Seconds() / w / (cfg.busyQuota * float64(cfg.nodes))
		f.busyRate = float64(b.count) / w
	}
	// The machine's CPU outside the nodes (the load generator, the
	// kernel's network and scheduling, daemons) over the same phases: its
	// slope over msgs/s is what each message costs the host beyond the
	// nodes' own CPU (sim/host.go).
	var hp []calibrate.Point
	host := res.containers // the array as containers, as the truth run has it
	f.hostFromContainers = len(host) > 0
	if !f.hostFromContainers {
		host = res.load
	}
	for _, p := range host {
		if p.hostCPU <= 0 {
			hp = nil
			break
		}
		w := p.wall.Seconds()
		hp = append(hp, calibrate.Point{X: float64(p.count) / w, Y: (p.hostCPU - p.nodeCPU).Seconds() / w})
	}
	if len(hp) >= 2 {
		if hl, err := calibrate.Fit(hp); err == nil {
			f.hostPerMsg, f.hostR2 = max(0, hl.Slope), hl.R2
		}
	}
	if l, err = calibrate.Fit(rd); err != nil {
		return f, fmt.Errorf("read: %w", err)
	}
	f.readPerMsg, f.readPerKiB, f.readR2 = l.Intercept, l.Slope, l.R2

	small := res.fsync[0]
	for _, s := range res.fsync {
		if s.Bytes < small.Bytes {
			small = s
		}
	}
	f.fsyncP50 = calibrate.Percentile(small.Seconds, 0.5)
	f.fsyncP90 = calibrate.Percentile(small.Seconds, 0.9)
	f.fsyncP99 = calibrate.Percentile(small.Seconds, 0.99)
	if l, err = calibrate.FsyncFit(res.fsync); err != nil {
		return f, fmt.Errorf("fsync: %w", err)
	}
	f.fsyncIntercept = l.Intercept
	if l.Slope > 0 {
		f.bandwidth, f.bandwidthFromFit = 1/l.Slope, true
	} else {
		// The sync time did not grow with the size (a fast disk under
		// noise): the largest write over its whole sync time is a lower
		// bound of the bandwidth.
		big := slices.MaxFunc(res.fsync, func(a, b calibrate.SyncSamples) int { return a.Bytes - b.Bytes })
		f.bandwidth = float64(big.Bytes) / calibrate.Percentile(big.Seconds, 0.5)
	}

	f.echoP50 = calibrate.Percentile(res.rtt, 0.5)
	p10, p50, p90 := calibrate.Percentile(res.noop, 0.1), calibrate.Percentile(res.noop, 0.5), calibrate.Percentile(res.noop, 0.9)
	// The model's one-way delay is latency + U[0, jitter); a round trip
	// is two. Jitter spans the middle 80% of the round trips (halved: one
	// way), and latency puts the model's median round trip at the
	// measured one.
	f.jitter = max(0, (p90-p10)/2)
	f.latency = max(p50/2-f.jitter/2, p10/2)
	return f, nil
}

// derive turns the repeats into the profile, printing every figure with
// how it was obtained and its spread.
func derive(cfg config, results []repeatResult, log io.Writer) (sim.CostProfile, error) {
	var all []figures
	for i, res := range results {
		f, err := repeatFigures(cfg, res)
		if err != nil {
			return sim.CostProfile{}, fmt.Errorf("repeat %d: %w", i+1, err)
		}
		all = append(all, f)
	}
	col := func(get func(f figures) float64) calibrate.Summary {
		var v []float64
		for _, f := range all {
			v = append(v, get(f))
		}
		return calibrate.Summarize(v)
	}
	p := sim.CostProfile{Name: cfg.name, Repeats: cfg.repeats}
	fmt.Fprintf(log, "\ncalibrate: %d repeats; each figure is the median, [min..max] and the range as a share of the median\n", len(all))
	line := func(key string, s calibrate.Summary, unit float64, unitName, how string) {
		fmt.Fprintf(log, "  %-18s %10.3f %s  [%.3f..%.3f] %5.1f%%  %s\n", key, s.Median/unit, unitName, s.Min/unit, s.Max/unit, 100*s.Spread(), how)
		p.Method = append(p.Method, key+": "+how)
	}
	us, ms := 1e-6, 1e-3

	cpuMsg := col(func(f figures) float64 { return f.cpuPerMsg })
	cpuKiB := col(func(f figures) float64 { return f.cpuPerKiB })
	r2 := col(func(f figures) float64 { return f.cpuR2 })
	bg := col(func(f figures) float64 { return f.cpuBackground })
	loadR2 := col(func(f figures) float64 { return f.loadR2 })
	rates := append([]float64{cfg.rate}, cfg.rates...)
	how := fmt.Sprintf("marginal CPU of a charge: slope of the least-squares line of the nodes' CPU-s/s (/proc utime+stime) over their charges/s (messages stored x R=%d), %d-byte messages at %v msgs/s (R2 median %.3f), less the size's cpu_per_kib; a charge's average at %v msgs/s, idle subtracted, was %.0f us (the intercept of the sweep below): the difference is cpu_background and cpu_idle",
		chargesPerMsg, slices.Min(cfg.sizes), rates, loadR2.Median, cfg.rate, col(func(f figures) float64 { return f.cpuAvgPerMsg }).Median/us)
	line("cpu_per_msg", cpuMsg, us, "us", how)
	line("cpu_per_kib", cpuKiB, us, "us", fmt.Sprintf("slope of the least-squares line of the nodes' CPU (less idle) per charge over the message sizes %v, %d messages each at %v msgs/s (R2 median %.3f), per KiB of message", cfg.sizes, cfg.messages, cfg.rate, r2.Median))
	line("cpu_background", bg, 1, "CPUs", fmt.Sprintf("the idle array's CPU over its %d nodes (%v with no load): what each burns whatever its load", cfg.nodes, cfg.idle))
	idleCPU := col(func(f figures) float64 { return f.cpuIdle })
	line("cpu_idle", idleCPU, 1, "CPUs", fmt.Sprintf("intercept of the load line above over the %d nodes (median %.4f CPUs) less cpu_background: what a node with load burns between its messages (waking, spinning and parking threads), which work preempts", cfg.nodes, col(func(f figures) float64 { return f.cpuBackground + f.cpuIdle }).Median))
	busyMsg := col(func(f figures) float64 { return f.cpuPerMsgBusy })
	if busyMsg.Median > 0 {
		line("cpu_per_msg_busy", busyMsg, us, "us", fmt.Sprintf("a charge on a node already at work: the %d containers held at %.2f CPU each (docker update --cpus), offered %v msgs/s of %d-byte messages by %d clients for %v, took %.0f msgs/s (median) using %.0f%% of their quotas (median; under %.0f%% makes this an upper bound); their CPU less cpu_background over the charges accepted (messages x R=%d), less the size's cpu_per_kib",
			cfg.nodes, cfg.busyQuota, cfg.busyRate, slices.Min(cfg.sizes), cfg.busySenders, cfg.busySeconds, col(func(f figures) float64 { return f.busyRate }).Median,
			100*col(func(f figures) float64 { return f.busyUtil }).Median, 100*minBusyUtil, chargesPerMsg))
	}
	hostMsg := col(func(f figures) float64 { return f.hostPerMsg })
	if hostMsg.Median > 0 {
		where := "the load phases above, on loopback processes (no container phases: -containers=false)"
		if all[0].hostFromContainers {
			where = fmt.Sprintf("the same load line (%d-byte messages at %v msgs/s) against the array as Docker containers without quotas (the truth run's image and bridge network), less the containers' CPU (their cgroups)", slices.Min(cfg.sizes), rates)
		}
		line("host_cpu_per_msg", hostMsg, us, "us", fmt.Sprintf("slope of the least-squares line of the machine's busy CPU-s/s (/proc/stat) over msgs/s, in %s (R2 median %.3f): what a message costs the host beyond the nodes (the load generator, the kernel's network and scheduling), for scenarios whose nodes share a host (host_cpus)",
			where, col(func(f figures) float64 { return f.hostR2 }).Median))
	}
	readMsg := col(func(f figures) float64 { return f.readPerMsg })
	readKiB := col(func(f figures) float64 { return f.readPerKiB })
	line("read_cpu_per_msg", readMsg, us, "us", fmt.Sprintf("intercept of the nodes' CPU per POP3 RETR (login, UIDL, DELE and the deletion's sync included) over the sizes, %d readers (R2 median %.3f); not applied: the model charges a RETR as cpu_per_msg/cpu_per_kib", cfg.readers, col(func(f figures) float64 { return f.readR2 }).Median))
	line("read_cpu_per_kib", readKiB, us, "us", "slope of the same line")

	fsync50 := col(func(f figures) float64 { return f.fsyncP50 })
	line("disk_fsync", fsync50, ms, "ms", fmt.Sprintf("median of %d write+fdatasync of %d bytes on the data directory's filesystem", cfg.fsyncCount, slices.Min(cfg.fsyncSizes)))
	line("fsync_p90", col(func(f figures) float64 { return f.fsyncP90 }), ms, "ms", "90th percentile of the same")
	line("fsync_p99", col(func(f figures) float64 { return f.fsyncP99 }), ms, "ms", "99th percentile of the same")
	bw := col(func(f figures) float64 { return f.bandwidth })
	fromFit := 0
	for _, f := range all {
		if f.bandwidthFromFit {
			fromFit++
		}
	}
	line("disk_bytes_per_sec", bw, 1e6, "MB/s", fmt.Sprintf("1 / slope of the median sync time over the write sizes %v (in %d of %d repeats; else the largest write over its sync time, a lower bound); the fit's intercept is %.3f ms",
		cfg.fsyncSizes, fromFit, len(all), col(func(f figures) float64 { return f.fsyncIntercept }).Median/ms))
	lat := col(func(f figures) float64 { return f.latency })
	jit := col(func(f figures) float64 { return f.jitter })
	line("link_latency", lat, us, "us", fmt.Sprintf("SMTP NOOP round trips to a node, %d one every %v: one-way = median round trip/2 - jitter/2 (on an array idle between events each hop wakes a sleeping thread of another process; a back-to-back loopback echo's round trip, which stays hot, was %.1f us)",
		cfg.noopCount, cfg.noopGap, col(func(f figures) float64 { return f.echoP50 }).Median/us))
	line("link_jitter", jit, us, "us", "(p90 - p10 of the round trips) / 2: the model adds U[0, jitter) each way")

	gen := col(func(f figures) float64 { return f.genUtilMax })
	nodes := col(func(f figures) float64 { return f.nodeUtilMax })
	fmt.Fprintf(log, "  load generator: at most %.0f%% of the machine in an ingest phase (median over repeats; max %.0f%%), nodes at most %.0f%%\n", 100*gen.Median, 100*gen.Max, 100*nodes.Median)

	p.CPUPerMsg = durFig(cpuMsg, log, "cpu_per_msg")
	p.CPUPerKiB = durFig(cpuKiB, log, "cpu_per_kib")
	p.CPUBackground = sim.FractionFigure{Value: round4(bg.Median), Min: round4(bg.Min), Max: round4(bg.Max)}
	p.CPUIdle = sim.FractionFigure{Value: round4(idleCPU.Median), Min: round4(idleCPU.Min), Max: round4(idleCPU.Max)}
	if hostMsg.Median > 0 {
		p.HostCPUPerMsg = rawDurFig(hostMsg)
	}
	if busyMsg.Median > 0 {
		p.CPUPerMsgBusy = durFig(busyMsg, log, "cpu_per_msg_busy")
	}
	p.ReadCPUPerMsg = rawDurFig(readMsg)
	p.ReadCPUPerKiB = rawDurFig(readKiB)
	p.DiskFsync = durFig(fsync50, log, "disk_fsync")
	p.FsyncP50 = rawDurFig(fsync50)
	p.FsyncP90 = rawDurFig(col(func(f figures) float64 { return f.fsyncP90 }))
	p.FsyncP99 = rawDurFig(col(func(f figures) float64 { return f.fsyncP99 }))
	p.DiskBytesPerSec = sim.RateFigure{Value: int64(math.Round(bw.Median)), Min: int64(math.Floor(bw.Min)), Max: int64(math.Ceil(bw.Max))}
	p.LinkLatency = durFig(lat, log, "link_latency")
	p.LinkJitter = rawDurFig(jit)
	return p, nil
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// rawDurFig is a summary in seconds as a duration figure.
func rawDurFig(s calibrate.Summary) sim.DurationFigure {
	d := func(sec float64) sim.Duration { return sim.Duration(time.Duration(math.Round(sec * 1e9))) }
	return sim.DurationFigure{Value: d(s.Median), Min: d(s.Min), Max: d(s.Max)}
}

// durFig is rawDurFig for a figure the model applies, which must be > 0:
// in a node 0 reads as unset (the default would replace it). A median at
// or below 0 (the cost did not grow with the size, within the noise) is
// recorded as 1ns, and said.
func durFig(s calibrate.Summary, log io.Writer, key string) sim.DurationFigure {
	f := rawDurFig(s)
	if f.Value <= 0 {
		fmt.Fprintf(log, "  WARNING: %s measured %v (noise larger than the cost): recorded as 1ns\n", key, f.Value)
		f.Value = sim.Duration(time.Nanosecond)
		f.Max = max(f.Max, f.Value)
	}
	return f
}
