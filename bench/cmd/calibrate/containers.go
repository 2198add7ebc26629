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
	cpu := func() time.Duration {
		var s float64
		for _, v := range a.CPUSeconds() {
			s += v
		}
		return time.Duration(s * float64(time.Second))
	}
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
	return nil
}
