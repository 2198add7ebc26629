package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"mailarray/bench"
	"mailarray/bench/calibrate"
	"mailarray/node/env"
	"mailarray/node/pop3"
	"mailarray/sim"
)

// The calibration array's replication: R copies, all durable before the
// 250, the receiving node holding one (placement local). The model then
// charges R CPU jobs per message (env.Cost.CPU): the SMTP delivery on the
// receiving node and one peer copy on each of the other R-1 holders.
const (
	replicas       = 2
	chargesPerMsg  = replicas
	popTimeout     = 30 * time.Second
	mailboxCount   = 100
	deleteSettle   = time.Second
	ingestDrainMin = 2 * time.Second
)

// phase is one measured stretch of load: count operations of size bytes.
type phase struct {
	size            int
	rate            float64 // offered msgs/s
	count           int     // accepted messages, or messages retrieved
	offered         int
	wall            time.Duration
	nodeCPU, genCPU time.Duration
	// hostCPU is the whole machine's busy CPU over the phase (the nodes,
	// the load generator, the kernel, everything: /proc/stat); 0 where
	// it cannot be read.
	hostCPU time.Duration
	idle    time.Duration // the nodes' idle CPU over wall, subtracted
	p99Ms   float64
}

// perCharge is the nodes' CPU seconds per model charge: their CPU over
// the phase less what they burn idle (gossip, timers), divided by the
// charges the model makes for count operations.
func (p phase) perCharge(charges int) float64 {
	if p.count == 0 {
		return 0
	}
	return (p.nodeCPU - p.idle).Seconds() / float64(p.count*charges)
}

// hostBusy is the machine's busy CPU so far, -1 where unknown.
func hostBusy() time.Duration {
	if d, ok := calibrate.HostBusy(); ok {
		return d
	}
	return -1
}

// since is the machine's busy CPU between two hostBusy readings, 0 where
// unknown.
func since(a, b time.Duration) time.Duration {
	if a < 0 || b < a {
		return 0
	}
	return b - a
}

// util is a CPU time as a share of the machine over the phase.
func util(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return cpu.Seconds() / (wall.Seconds() * float64(runtime.NumCPU()))
}

// repeatResult is everything one repeat measured.
type repeatResult struct {
	idlePerSec float64 // the nodes' CPU seconds per second when idle
	ingest     []phase
	// load: ingest phases at the smallest size and rising rates (the
	// sweep's own phase at -rate first): the CPU line over the load.
	load  []phase
	read  []phase
	fsync []calibrate.SyncSamples
	rtt   []float64 // back-to-back loopback echo round trips
	noop  []float64 // spaced SMTP NOOP round trips to a node: the link
	// containers: the load line's phases against the array as containers
	// (containers.go); empty with -containers=false.
	containers []phase
	// busy: the phase with every container held at its quota
	// (busyPhase); nil without it.
	busy *phase
}

// runRepeat starts a fresh array, measures its idle CPU, then for every
// size an ingest phase (the real load generator, SMTP only) and a read
// phase (every mailbox emptied over POP3: RETR and DELE), then the probes,
// and stops the array.
func runRepeat(ctx context.Context, cfg config, rep int, log io.Writer) (repeatResult, error) {
	var res repeatResult
	sc := cfg.scenario(cfg.sizes[0], uint64(rep+1))
	dir := filepath.Join(cfg.dir, fmt.Sprintf("repeat%d", rep+1))
	cl, err := bench.StartCluster(ctx, bench.DefaultClusterConfig(cfg.bin, dir, sc))
	if err != nil {
		return res, err
	}
	defer cl.Close()

	// Idle: what the nodes burn with no load (membership, timers), to
	// subtract from every phase.
	c0, t0 := cl.CPUTime(), time.Now()
	if err := bench.Sleep(ctx, cfg.idle); err != nil {
		return res, err
	}
	res.idlePerSec = (cl.CPUTime() - c0).Seconds() / time.Since(t0).Seconds()
	fmt.Fprintf(log, "  idle: the %d nodes burn %.4f CPU-s per second with no load (%v measured)\n", cfg.nodes, res.idlePerSec, cfg.idle)
	idleOver := func(d time.Duration) time.Duration { return time.Duration(res.idlePerSec * float64(d)) }

	target := cl.Target()
	for i, size := range cfg.sizes {
		sc := cfg.scenario(size, uint64(100*(rep+1)+i))
		c0, g0, h0, t0 := cl.CPUTime(), calibrate.SelfCPU(), hostBusy(), time.Now()
		r, err := sim.RunReal(ctx, sc, target, sim.RealOptions{})
		if err != nil {
			return res, err
		}
		p := phase{size: size, rate: cfg.rate, count: r.Accepted, offered: r.Offered, wall: time.Since(t0),
			nodeCPU: cl.CPUTime() - c0, genCPU: calibrate.SelfCPU() - g0, hostCPU: since(h0, hostBusy()), p99Ms: r.Latency.P99}
		p.idle = idleOver(p.wall)
		res.ingest = append(res.ingest, p)
		fmt.Fprintf(log, "  ingest %6d B: %d of %d accepted in %.1f s (p99 %.0f ms); nodes %.3f CPU-s less %.3f idle = %.1f us per message, %.1f us per charge (R=%d); nodes at %.0f%% of the machine, load generator %.3f CPU-s (%.0f%%)\n",
			size, p.count, p.offered, p.wall.Seconds(), p.p99Ms, p.nodeCPU.Seconds(), p.idle.Seconds(),
			1e6*p.perCharge(1), 1e6*p.perCharge(chargesPerMsg), chargesPerMsg,
			100*util(p.nodeCPU, p.wall), p.genCPU.Seconds(), 100*util(p.genCPU, p.wall))
		warnSaturated(log, p, cfg)

		c0, g0, t0 = cl.CPUTime(), calibrate.SelfCPU(), time.Now()
		n, err := readAll(ctx, target, sc, cfg.readers)
		if err != nil {
			return res, err
		}
		// Deletions reach the other holder after the session: their work
		// belongs to the read.
		if err := bench.Sleep(ctx, deleteSettle); err != nil {
			return res, err
		}
		q := phase{size: size, count: n, offered: p.count, wall: time.Since(t0),
			nodeCPU: cl.CPUTime() - c0, genCPU: calibrate.SelfCPU() - g0}
		q.idle = idleOver(q.wall)
		res.read = append(res.read, q)
		if q.count > p.count {
			// Transactions the report counted as unsent completed after
			// it, within the CPU window: the mailboxes held them all.
			fmt.Fprintf(log, "  ingest %6d B: %d stored (%d completed after the load generator's report): the per-message figure uses %d\n", size, q.count, q.count-p.count, q.count)
			res.ingest[len(res.ingest)-1].count = q.count
		}
		fmt.Fprintf(log, "  read   %6d B: %d of %d retrieved and deleted in %.1f s; nodes %.3f CPU-s less %.3f idle = %.1f us per RETR; load generator %.3f CPU-s (%.0f%%)\n",
			size, q.count, q.offered, q.wall.Seconds(), q.nodeCPU.Seconds(), q.idle.Seconds(),
			1e6*q.perCharge(1), q.genCPU.Seconds(), 100*util(q.genCPU, q.wall))
	}
	if err := loadPhases(ctx, cfg, cl, rep, &res, log); err != nil {
		return res, err
	}
	if res.noop, err = calibrate.NoopProbe(ctx, target.SMTP[sc.Nodes[0].Name], cfg.noopCount, cfg.noopGap); err != nil {
		return res, err
	}
	fmt.Fprintf(log, "  SMTP NOOP round trip to %s, one every %v: p10 %.1f us, p50 %.1f us, p90 %.1f us over %d\n", sc.Nodes[0].Name, cfg.noopGap,
		1e6*calibrate.Percentile(res.noop, 0.1), 1e6*calibrate.Percentile(res.noop, 0.5), 1e6*calibrate.Percentile(res.noop, 0.9), len(res.noop))
	cl.Close()
	if cfg.containers {
		if err := containerPhases(ctx, cfg, rep, &res, log); err != nil {
			return res, err
		}
	}

	probeDir, err := calibrate.ProbeDir(dir)
	if err != nil {
		return res, err
	}
	if res.fsync, err = calibrate.FsyncProbe(probeDir, cfg.fsyncSizes, cfg.fsyncCount); err != nil {
		return res, err
	}
	for _, s := range res.fsync {
		fmt.Fprintf(log, "  fsync  %7d B: p50 %.3f ms, p90 %.3f ms, p99 %.3f ms over %d write+fdatasync\n", s.Bytes,
			1e3*calibrate.Percentile(s.Seconds, 0.5), 1e3*calibrate.Percentile(s.Seconds, 0.9), 1e3*calibrate.Percentile(s.Seconds, 0.99), len(s.Seconds))
	}
	if res.rtt, err = calibrate.EchoProbe(ctx, cfg.echoCount); err != nil {
		return res, err
	}
	fmt.Fprintf(log, "  loopback round trip: p10 %.1f us, p50 %.1f us, p90 %.1f us over %d\n",
		1e6*calibrate.Percentile(res.rtt, 0.1), 1e6*calibrate.Percentile(res.rtt, 0.5), 1e6*calibrate.Percentile(res.rtt, 0.9), len(res.rtt))
	return res, nil
}

// loadPhases measures the nodes' CPU at the smallest size and each of
// cfg.rates, after the sweep (whose phase at that size and -rate is the
// line's first point). Every phase lasts as long as the sweep's: the
// message count grows with the rate. The mailboxes are not emptied: the
// reads are measured by the sweep.
func loadPhases(ctx context.Context, cfg config, cl *bench.Cluster, rep int, res *repeatResult, log io.Writer) error {
	size := slices.Min(cfg.sizes)
	for _, p := range res.ingest {
		if p.size == size {
			res.load = append(res.load, p)
			break
		}
	}
	target := cl.Target()
	for j, rate := range cfg.rates {
		msgs := int(math.Round(float64(cfg.messages) * rate / cfg.rate))
		sc := cfg.scenarioAt(size, rate, msgs, uint64(100*(rep+1)+50+j))
		c0, g0, h0, t0 := cl.CPUTime(), calibrate.SelfCPU(), hostBusy(), time.Now()
		r, err := sim.RunReal(ctx, sc, target, sim.RealOptions{})
		if err != nil {
			return err
		}
		p := phase{size: size, rate: rate, count: r.Accepted, offered: r.Offered, wall: time.Since(t0),
			nodeCPU: cl.CPUTime() - c0, genCPU: calibrate.SelfCPU() - g0, hostCPU: since(h0, hostBusy()), p99Ms: r.Latency.P99}
		p.idle = time.Duration(res.idlePerSec * float64(p.wall))
		res.load = append(res.load, p)
		fmt.Fprintf(log, "  load   %6d B at %4.0f msgs/s: %d of %d accepted in %.1f s (p99 %.0f ms); nodes %.3f CPU-s = %.3f CPU-s/s at %.0f charges/s (%.1f us per charge); load generator %.0f%% of the machine; the machine %.3f CPU-s/s, %.3f outside the nodes\n",
			size, rate, p.count, p.offered, p.wall.Seconds(), p.p99Ms, p.nodeCPU.Seconds(), p.nodeCPU.Seconds()/p.wall.Seconds(),
			float64(p.count*chargesPerMsg)/p.wall.Seconds(), 1e6*p.nodeCPU.Seconds()/float64(max(1, p.count*chargesPerMsg)), 100*util(p.genCPU, p.wall),
			p.hostCPU.Seconds()/p.wall.Seconds(), (p.hostCPU-p.nodeCPU).Seconds()/p.wall.Seconds())
		warnSaturated(log, p, cfg)
	}
	return nil
}

// warnSaturated says when a phase was not the controlled load it should
// be: messages refused or late, or the load generator a large share of
// the machine (then it, not the nodes, may be what limits).
func warnSaturated(log io.Writer, p phase, cfg config) {
	if p.offered > 0 && float64(p.count) < 0.99*float64(p.offered) {
		fmt.Fprintf(log, "  WARNING: only %d of %d accepted: the array was saturated or failing; lower -rate\n", p.count, p.offered)
	}
	if g := util(p.genCPU, p.wall); g > maxGenUtil {
		fmt.Fprintf(log, "  WARNING: the load generator used %.0f%% of the machine (over %.0f%%): it competes with the nodes; lower -rate or -senders\n", 100*g, 100*maxGenUtil)
	}
}

// maxGenUtil is the load generator's share of the machine above which the
// run warns.
const maxGenUtil = 0.25

// readAll empties every mailbox over POP3, workers at a time, each
// mailbox through node k mod N (so reads are spread as a DNS rotation
// would spread them, some holding the message and some fetching it from
// a peer): log in, UIDL, RETR and DELE each message, QUIT. It returns the
// messages retrieved.
func readAll(ctx context.Context, target sim.RealTarget, sc sim.Scenario, workers int) (int, error) {
	var names []string
	for _, nd := range sc.Nodes {
		names = append(names, nd.Name)
	}
	boxes := make(chan int)
	var mu sync.Mutex
	var total int
	var firstErr error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for box := range boxes {
				n, err := readBox(ctx, target.Net, target.POP3[names[box%len(names)]], box, sc.Domain)
				mu.Lock()
				total += n
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	for box := range sc.Mailboxes {
		boxes <- box
	}
	close(boxes)
	wg.Wait()
	return total, firstErr
}

// readBox empties mailbox box (user<box+1>, password pw<box+1>: the
// scenarios' users file, sim.MailboxLines).
func readBox(ctx context.Context, n env.Net, addr string, box int, domain string) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, popTimeout)
	conn, err := n.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("calibrate: pop3 %s: %w", addr, err)
	}
	c, err := pop3.NewClient(conn)
	if err != nil {
		conn.Close()
		return 0, fmt.Errorf("calibrate: pop3 %s: %w", addr, err)
	}
	defer c.Close()
	c.SetTimeout(popTimeout)
	k := strconv.Itoa(box + 1)
	if err := c.Login("user"+k+"@"+domain, "pw"+k); err != nil {
		return 0, fmt.Errorf("calibrate: pop3 login user%s: %w", k, err)
	}
	uids, err := c.Uidl()
	if err != nil {
		return 0, fmt.Errorf("calibrate: pop3 uidl: %w", err)
	}
	got := 0
	for _, u := range uids {
		if _, err := c.RetrTo(u.Num, io.Discard); err != nil {
			return got, fmt.Errorf("calibrate: pop3 retr: %w", err)
		}
		got++
		if err := c.Dele(u.Num); err != nil {
			return got, fmt.Errorf("calibrate: pop3 dele: %w", err)
		}
	}
	if err := c.Quit(); err != nil {
		return got, fmt.Errorf("calibrate: pop3 quit: %w", err)
	}
	return got, nil
}
