package main

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"time"

	"mailarray/bench"
	"mailarray/bench/calibrate"
	"mailarray/sim"
)

// The host's share (host_cpu_per_msg, sim/host.go). An array of containers
// on one machine costs the machine more than its nodes' CPU: the load
// generator, and the kernel's network between the containers (veth pairs,
// the bridge, softirqs), which no container's cgroup pays for. Measured on
// the truth run's array: at its saturation the host was 93-97% busy, half
// of it system time, with no node at its quota. The loopback processes of
// the phases above do not show it, so each repeat also runs the load line
// against the same array as containers (the truth run's image and
// network, no quotas): the machine's busy CPU (/proc/stat) less the
// containers' (their cgroups), over msgs/s.

// calibrateLabel marks calibrate's containers and network, apart from the
// truth run's (bench.DefaultContainerConfig).
const (
	calibrateLabel  = "mailarray.calibrate"
	calibrateSubnet = "172.30.78.0/24"
)

// containerPhases starts the array as containers and runs the load
// line's rates at the smallest size against it.
func containerPhases(ctx context.Context, cfg config, rep int, res *repeatResult, log io.Writer) error {
	size := slices.Min(cfg.sizes)
	sc := cfg.scenario(size, uint64(rep+1))
	ccfg := bench.DefaultContainerConfig(filepath.Join(cfg.dir, fmt.Sprintf("repeat%d", rep+1), "containers"), sc, nil)
	ccfg.Image, ccfg.Label, ccfg.Subnet = cfg.image, calibrateLabel, calibrateSubnet
	if err := bench.RemoveLabelled(ctx, calibrateLabel); err != nil {
		return err
	}
	var key [24]byte
	if _, err := cryptorand.Read(key[:]); err != nil {
		return err
	}
	a, err := bench.StartContainers(ctx, ccfg, hex.EncodeToString(key[:]))
	if err != nil {
		return fmt.Errorf("%w (make image builds the node image; -containers=false skips this)", err)
	}
	defer a.Close()
	cpu := func() time.Duration { return containersCPU(a) }
	target := a.Target()
	for j, rate := range append([]float64{cfg.rate}, cfg.rates...) {
		msgs := int(math.Round(float64(cfg.messages) * rate / cfg.rate))
		psc := cfg.scenarioAt(size, rate, msgs, uint64(100*(rep+1)+80+j))
		c0, g0, h0, t0 := cpu(), calibrate.SelfCPU(), hostBusy(), time.Now()
		r, err := sim.RunReal(ctx, psc, target, sim.RealOptions{})
		if err != nil {
			return err
		}
		p := phase{size: size, rate: rate, count: r.Accepted, offered: r.Offered, wall: time.Since(t0),
			nodeCPU: cpu() - c0, genCPU: calibrate.SelfCPU() - g0, hostCPU: since(h0, hostBusy()), p99Ms: r.Latency.P99}
		res.containers = append(res.containers, p)
		w := p.wall.Seconds()
		fmt.Fprintf(log, "  containers %6d B at %4.0f msgs/s: %d of %d accepted in %.1f s (p99 %.0f ms); containers %.3f CPU-s/s (%.1f us per charge), load generator %.3f, the machine %.3f: %.3f CPU-s/s outside the containers\n",
			size, rate, p.count, p.offered, w, p.p99Ms, p.nodeCPU.Seconds()/w, 1e6*p.nodeCPU.Seconds()/float64(max(1, p.count*chargesPerMsg)),
			p.genCPU.Seconds()/w, p.hostCPU.Seconds()/w, (p.hostCPU-p.nodeCPU).Seconds()/w)
		warnSaturated(log, p, cfg)
	}
	if cfg.busyQuota > 0 {
		return busyPhase(ctx, cfg, a, size, rep, res, log)
	}
	return nil
}

// busyPhase measures what a charge costs a node that is always at work
// (cpu_per_msg_busy, sim/cost.go): every container gets -busy-quota of a
// CPU, and the load generator offers more than the array can take, with
// a client pool large enough to keep every node's queue full. The nodes
// then burn their quotas on messages alone: no thread sleeps between
// them, and commits and pushes carry what queued meanwhile. Their CPU
// less the idle array's background, over the charges accepted, is a
// busy charge's cost, all included (the per-KiB share is taken out in
// derive).
func busyPhase(ctx context.Context, cfg config, a *bench.ContainerArray, size, rep int, res *repeatResult, log io.Writer) error {
	if err := a.SetCPUQuota(ctx, cfg.busyQuota); err != nil {
		return err
	}
	cpu := func() time.Duration { return containersCPU(a) }
	msgs := int(math.Round(cfg.busyRate * cfg.busySeconds.Seconds()))
	psc := cfg.scenarioAt(size, cfg.busyRate, msgs, uint64(100*(rep+1)+90))
	psc.Load.Senders = cfg.busySenders
	// The run lasts the load and the drain, whatever it accepted: the
	// offered rate must outrun the array for the whole of it, so that the
	// nodes never wait for work (the messages still queued at the end
	// are left unsent; the sessions cut then cost CPU no acceptance
	// counts, a few percent at most).
	psc.Drain = sim.Duration(busyDrain)
	c0, g0, h0, t0 := cpu(), calibrate.SelfCPU(), hostBusy(), time.Now()
	r, err := sim.RunReal(ctx, psc, a.Target(), sim.RealOptions{})
	if err != nil {
		return err
	}
	p := phase{size: size, rate: cfg.busyRate, count: r.Accepted, offered: r.Offered, wall: time.Since(t0),
		nodeCPU: cpu() - c0, genCPU: calibrate.SelfCPU() - g0, hostCPU: since(h0, hostBusy()), p99Ms: r.Latency.P99}
	res.busy = &p
	w := p.wall.Seconds()
	quota := cfg.busyQuota * float64(cfg.nodes)
	fmt.Fprintf(log, "  busy   %6d B, %d containers at %.2f CPU each, %4.0f msgs/s offered by %d senders: %d of %d accepted in %.1f s (%.0f msgs/s); containers %.3f CPU-s/s, %.0f%% of their quotas (%.1f us per charge); load generator %.3f, the machine %.3f\n",
		size, cfg.nodes, cfg.busyQuota, cfg.busyRate, cfg.busySenders, p.count, p.offered, w, float64(p.count)/w,
		p.nodeCPU.Seconds()/w, 100*p.nodeCPU.Seconds()/w/quota, 1e6*p.nodeCPU.Seconds()/float64(max(1, p.count*chargesPerMsg)),
		p.genCPU.Seconds()/w, p.hostCPU.Seconds()/w)
	if p.count >= p.offered {
		fmt.Fprintf(log, "  WARNING: every message offered was accepted: the array kept up for part of the phase (raise -busy-rate or lower -busy-quota)\n")
	}
	if u := p.nodeCPU.Seconds() / w / quota; u < minBusyUtil {
		fmt.Fprintf(log, "  WARNING: the containers used %.0f%% of their quotas, under %.0f%%: not held at work the whole phase (raise -busy-rate or -busy-senders, or lower -busy-quota); cpu_per_msg_busy is an upper bound\n", 100*u, 100*minBusyUtil)
	}
	return nil
}

// busyDrain bounds the busy phase's drain; minBusyUtil is the share of
// their quotas below which the containers were not kept at work.
const (
	busyDrain   = 2 * time.Second
	minBusyUtil = 0.85
)

// containersCPU is the containers' CPU time so far, all nodes together.
func containersCPU(a *bench.ContainerArray) time.Duration {
	var s float64
	for _, v := range a.CPUSeconds() {
		s += v
	}
	return time.Duration(s * float64(time.Second))
}
