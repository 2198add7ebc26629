package sim

// The real-time load generator of bench-real: the simulator's load (the
// same arrival process, sizes, recipients and readers, drawn from the same
// seeded streams) driven by the wall clock over real sockets against
// `mailarray serve` processes. It shares the simulator's Record, Report and
// report helpers; it does not run inside synctest and uses no SimNet.
//
// On loopback every node listens on 127.0.0.1 with its own ports, so DNS
// answers cannot tell nodes apart by address: the generator reads the node
// name from each MX target (n1.example.com) and dials that node's port from
// RealTarget. POP3 readers take the first node of the same MX answer (the
// A records of pop.<domain> come in the same strategy order, README).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/schollz/progressbar/v3"

	"mailarray/node/ddns"
	"mailarray/node/env"
	"mailarray/sim/simnet"
)

// RealTarget is a running array as the real-time load generator reaches
// it.
type RealTarget struct {
	// Net dials the array (&env.RealNet{}).
	Net env.Net
	// DNS lists the DNS listeners (host:port) of the nodes running at the
	// start, asked in turn from a seeded first one.
	DNS []string
	// SMTP and POP3 map a node name to its listener (host:port).
	SMTP map[string]string
	POP3 map[string]string
}

// RealOptions are the caller's hooks into a real-time run.
type RealOptions struct {
	// Progress, when set, shows a progress bar in wall time.
	Progress io.Writer
	// Fault applies one of the scenario's faults at its time (the caller
	// owns the processes). Its error goes into the report's faults; nil
	// skips every fault with an error saying so.
	Fault func(FaultSpec) error
	// UnderReplicated, when set, is sampled every sampleEvery: the entries
	// the live nodes find short of R copies (for the rebuild episodes).
	UnderReplicated func() int64
}

// Limits of the real-time generator.
const (
	// realDialTimeout bounds one connect to a listener.
	realDialTimeout = 5 * time.Second
)

// RunReal drives sc's load against target in real time: sc.Duration of
// arrivals, then sc.Drain, then the clients are cut. The report has the
// client-side figures (outcomes, latency, CDF, timeline, unavailability,
// readers, faults, rebuild episodes from UnderReplicated) with times in
// wall seconds, and Records; the caller fills what only the nodes know
// (Nodes, Imbalance, Lost, rebuild copies) and Wall.
func RunReal(ctx context.Context, sc Scenario, target RealTarget, opts RealOptions) (*Report, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if target.Net == nil || len(target.DNS) == 0 {
		return nil, errors.New("sim: real: the target needs a Net and at least one DNS server")
	}
	g := newRealGen(sc, target, opts)
	return g.run(ctx)
}

// realRand is the stream the simulator's Net.Rand(name) gives for seed:
// the real generator draws the same arrivals, sizes and recipients.
func realRand(seed uint64, name string) *env.Rand {
	return env.NewRand(simnet.StreamSeed(seed, name))
}

// realGen is one real-time run.
type realGen struct {
	sc     Scenario
	spec   LoadSpec
	target RealTarget
	opts   RealOptions
	filler []byte
	start  time.Time

	queue chan *Record // arrivals waiting for a sender (MaxBacklog)

	mu       sync.Mutex
	records  []*Record
	accepted int
	readTally
	faults  []FaultResult
	samples []sample
}

func newRealGen(sc Scenario, target RealTarget, opts RealOptions) *realGen {
	lines := sc.Load.Size.MaxBytes/len(fillerLine) + 1
	return &realGen{
		sc: sc, spec: sc.Load, target: target, opts: opts,
		filler:    []byte(strings.Repeat(fillerLine, lines)),
		queue:     make(chan *Record, sc.Load.MaxBacklog),
		readTally: newReadTally(),
	}
}

func (g *realGen) since() time.Duration { return time.Since(g.start) }

func (g *realGen) run(parent context.Context) (*Report, error) {
	sc := g.sc
	end := sc.Duration.D() + sc.Drain.D()
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	g.start = time.Now()
	var wg sync.WaitGroup
	for k := range sc.Load.Senders {
		sd := g.newSender(k)
		wg.Go(func() { sd.run(ctx) })
	}
	for k := range sc.Load.Readers {
		r := &realReader{g: g, idx: k, rnd: realRand(sc.Seed, "load/reader"+strconv.Itoa(k))}
		wg.Go(func() { r.run(ctx, end) })
	}
	wg.Go(func() { g.arrivals(ctx) })
	wg.Go(func() { g.applyFaults(ctx) })
	wg.Go(func() { g.sampler(ctx, end) })

	select {
	case <-time.After(end):
	case <-parent.Done():
	}
	// The report is taken before the clients are cut, as the simulator
	// takes it from a frozen world: messages still in flight count as
	// unsent, not as failed.
	rep := g.report(end)
	cancel()
	wg.Wait()
	if err := parent.Err(); err != nil {
		return nil, fmt.Errorf("sim: real: %w", err)
	}
	g.lateDeletions(rep)
	return rep, nil
}

// lateDeletions marks in rep the deletions of reader sessions that were
// still in flight when it was taken: their QUIT was answered, or cut (in
// doubt), only after. Unlike the simulator's, the real world does not
// freeze at the report: without this, a mailbox a reader emptied at the
// end would count as lost (the real-process soak found it).
func (g *realGen) lateDeletions(rep *Report) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range rep.Records {
		rec := &rep.Records[i]
		if rec.ID == "" {
			continue
		}
		rec.Deleted = rec.Deleted || g.deleted[rec.CopyID()]
		rec.MaybeDeleted = rec.MaybeDeleted || g.maybeDel[rec.CopyID()]
	}
}

// arrivals draws the messages as the simulator does and queues each at
// its time; a full queue drops it (client_dropped).
func (g *realGen) arrivals(ctx context.Context) {
	r := realRand(g.sc.Seed, "load/arrivals")
	var zipf *rand.Zipf
	if g.spec.ZipfS > 1 && g.sc.Mailboxes > 1 {
		zipf = rand.NewZipf(r.Rand, g.spec.ZipfS, 1, uint64(g.sc.Mailboxes-1))
	}
	end := g.sc.Duration.D()
	lg := &loadGen{spec: g.spec, arrivals: r}
	t := time.NewTimer(0)
	defer t.Stop()
	for now := time.Duration(0); now < end; now += lg.gap(now) {
		if d := now - g.since(); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		} else if ctx.Err() != nil {
			return
		}
		rec := &Record{Arrive: now, Size: lg.drawSize(r)}
		box := 0
		if zipf != nil {
			box = int(zipf.Uint64())
		} else {
			box = r.IntN(g.sc.Mailboxes)
		}
		rec.Mailbox = mailboxAddr(permute(box, g.sc.Mailboxes), g.sc.Domain)
		rec.Urgent = g.spec.UrgentFraction > 0 && r.Float64() < g.spec.UrgentFraction
		g.mu.Lock()
		rec.Seq = len(g.records)
		g.records = append(g.records, rec)
		select {
		case g.queue <- rec:
		default:
			rec.Outcome, rec.Done = Dropped, rec.Arrive
		}
		g.mu.Unlock()
	}
}

// applyFaults calls opts.Fault at each fault's time, in order.
func (g *realGen) applyFaults(ctx context.Context) {
	for _, f := range g.sc.Faults {
		if d := f.At.D() - g.since(); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		err := errors.New("sim: real: no fault hook: skipped")
		if g.opts.Fault != nil {
			err = g.opts.Fault(f)
		}
		fr := FaultResult{AtS: roundTo(g.since().Seconds(), 3), Action: f.Action, Node: f.Node}
		if len(f.Nodes) > 0 {
			fr.Nodes = strings.Join(f.Nodes, ",")
			if len(f.From) > 0 {
				fr.Nodes += "|" + strings.Join(f.From, ",")
			}
		}
		if err != nil {
			fr.Error = err.Error()
		}
		g.mu.Lock()
		g.faults = append(g.faults, fr)
		g.mu.Unlock()
	}
}

// sampler samples rebuild progress and moves the progress bar.
func (g *realGen) sampler(ctx context.Context, end time.Duration) {
	var bar *progressbar.ProgressBar
	if g.opts.Progress != nil {
		bar = progressbar.NewOptions64(end.Milliseconds(),
			progressbar.OptionSetWriter(g.opts.Progress),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(false),
			progressbar.OptionThrottle(0),
			progressbar.OptionSetRenderBlankState(true),
		)
		defer func() {
			bar.Finish()
			fmt.Fprintln(g.opts.Progress)
		}()
	}
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		at := g.since()
		if g.opts.UnderReplicated != nil {
			under := g.opts.UnderReplicated()
			g.mu.Lock()
			g.samples = append(g.samples, sample{at: at, under: under})
			g.mu.Unlock()
		}
		if bar != nil {
			g.mu.Lock()
			acc := g.accepted
			g.mu.Unlock()
			bar.Describe(fmt.Sprintf("%s %5.1fs wall | %d accepted", g.sc.Name, at.Seconds(), acc))
			bar.Set64(min(at.Milliseconds(), end.Milliseconds()))
		}
	}
}

// realResolver caches MX answers per client for their TTL, asking the DNS
// servers from a seeded first one, moving on after a failure. It returns
// node names in preference order.
type realResolver struct {
	g       *realGen
	rnd     *env.Rand
	first   int
	names   []string
	expires time.Time
	seen    bool
}

func (r *realResolver) lookup(ctx context.Context) ([]string, error) {
	if r.names != nil && time.Now().Before(r.expires) {
		return r.names, nil
	}
	servers := r.g.target.DNS
	var lastErr error
	for i := range servers {
		names, ttl, err := r.ask(ctx, servers[(r.first+i)%len(servers)])
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if !r.seen && ttl > 0 {
			// As in the simulator: the first answer is of a random age.
			ttl -= time.Duration(r.rnd.Int64N(int64(ttl)))
		}
		r.seen = true
		r.names, r.expires = names, time.Now().Add(ttl)
		return names, nil
	}
	return nil, fmt.Errorf("sim: real: resolve MX %s: %w", r.g.sc.Domain, lastErr)
}

func (r *realResolver) ask(ctx context.Context, server string) ([]string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(r.g.sc.Domain), dns.TypeMX)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	resp, err := ddns.Exchange(ctx, r.g.target.Net, server, m, false)
	if err == nil && resp.Truncated {
		resp, err = ddns.Exchange(ctx, r.g.target.Net, server, m, true)
	}
	if err != nil {
		return nil, 0, err
	}
	if resp.Rcode != dns.RcodeSuccess {
		return nil, 0, &ddns.RcodeError{Name: r.g.sc.Domain, Type: dns.TypeMX, Rcode: resp.Rcode}
	}
	var mxs []*dns.MX
	ttl := uint32(math.MaxUint32)
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, mx)
			ttl = min(ttl, mx.Hdr.Ttl)
		}
	}
	slices.SortStableFunc(mxs, func(a, b *dns.MX) int { return int(a.Preference) - int(b.Preference) })
	var names []string
	for _, mx := range mxs {
		label, _, _ := strings.Cut(strings.ToLower(mx.Mx), ".")
		names = append(names, label)
	}
	if len(names) == 0 {
		return nil, 0, fmt.Errorf("sim: real: MX %s: empty answer", r.g.sc.Domain)
	}
	return names, time.Duration(ttl) * time.Second, nil
}

// realSender is one SMTP client over real sockets: the shared sendLoop
// over the wall clock and the target's DNS and listeners. Every sender
// takes from one queue (the arrivals' backlog).
type realSender struct {
	loop sendLoop
	g    *realGen
	rnd  *env.Rand
	res  realResolver
	held *Record // received by wait, not yet taken
}

func (g *realGen) newSender(k int) *realSender {
	sd := &realSender{g: g, rnd: realRand(g.sc.Seed, "load/sender"+strconv.Itoa(k))}
	sd.loop = sendLoop{name: "sender" + strconv.Itoa(k), spec: &g.spec, seed: g.sc.Seed, filler: g.filler,
		world: sd, queue: sd, mu: &g.mu, accepted: &g.accepted}
	return sd
}

func (sd *realSender) run(ctx context.Context) {
	sd.res = realResolver{g: sd.g, rnd: sd.rnd, first: sd.rnd.IntN(len(sd.g.target.DNS))}
	sd.loop.run(ctx)
}

// wait blocks until a message is queued and holds it for take
// (sendQueue).
func (sd *realSender) wait(ctx context.Context) bool {
	select {
	case sd.held = <-sd.g.queue:
		return true
	case <-ctx.Done():
		return false
	}
}

// take returns the held message, or another queued one, or nil
// (sendQueue).
func (sd *realSender) take() *Record {
	if rec := sd.held; rec != nil {
		sd.held = nil
		return rec
	}
	select {
	case rec := <-sd.g.queue:
		return rec
	default:
		return nil
	}
}

// now is wall time since the run started (senderWorld).
func (sd *realSender) now() time.Duration { return sd.g.since() }

// mxTargets resolves MX through the nodes' DNS: each target names its
// node (all listen on one loopback address), whose SMTP port comes from
// the target map; a name without one is skipped (senderWorld).
func (sd *realSender) mxTargets(ctx context.Context) ([]mxTarget, error) {
	names, err := sd.res.lookup(ctx)
	if err != nil {
		return nil, err
	}
	var out []mxTarget
	for _, name := range names {
		if addr, ok := sd.g.target.SMTP[name]; ok {
			out = append(out, mxTarget{node: name, addr: addr})
		}
	}
	return out, nil
}

// dial connects over the target's network, within realDialTimeout at most
// (senderWorld).
func (sd *realSender) dial(ctx context.Context, t mxTarget, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, min(timeout, realDialTimeout))
	defer cancel()
	return sd.g.target.Net.DialContext(ctx, "tcp", t.addr)
}

// ackedAt is 0: a real client cannot see when the listener sent the 250
// (senderWorld).
func (sd *realSender) ackedAt(net.Conn, time.Duration) time.Duration { return 0 }

// realReader is one POP3 user agent: every ~ReadInterval (exponential) it
// reads a mailbox drawn like the recipients.
type realReader struct {
	g   *realGen
	idx int
	rnd *env.Rand
	res realResolver
}

func (r *realReader) run(ctx context.Context, end time.Duration) {
	g := r.g
	dnsRand := realRand(g.sc.Seed, "load/reader-dns"+strconv.Itoa(r.idx))
	r.res = realResolver{g: g, rnd: dnsRand, first: dnsRand.IntN(len(g.target.DNS))}
	var zipf *rand.Zipf
	if g.spec.ZipfS > 1 && g.sc.Mailboxes > 1 {
		zipf = rand.NewZipf(r.rnd.Rand, g.spec.ZipfS, 1, uint64(g.sc.Mailboxes-1))
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		gap := max(time.Duration(r.rnd.ExpFloat64()*float64(g.spec.ReadInterval.D())), time.Millisecond)
		t.Reset(gap)
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if g.since() >= end {
			return
		}
		box := 0
		if zipf != nil {
			box = int(zipf.Uint64())
		} else {
			box = r.rnd.IntN(g.sc.Mailboxes)
		}
		r.session(ctx, permute(box, g.sc.Mailboxes))
	}
}

func (r *realReader) session(ctx context.Context, box int) {
	g := r.g
	fail := func(kind string) { g.fail(&g.mu, kind) }
	g.mu.Lock()
	g.rstats.Sessions++
	g.mu.Unlock()
	names, err := r.res.lookup(ctx)
	if err != nil {
		fail("dns")
		return
	}
	timeout := g.spec.SMTPTimeout.D()
	err = errors.New("sim: real: no POP3 listener in the answer")
	var conn net.Conn
	for _, name := range names {
		addr, ok := g.target.POP3[name]
		if !ok {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, min(timeout, realDialTimeout))
		conn, err = g.target.Net.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		fail("connect")
		return
	}
	g.readSession(ctx, &g.mu, conn, timeout, mailboxAddr(box, g.sc.Domain), mailboxPassword(box), g.spec.ReadMax)
}

// report builds the client-side report of the run.
func (g *realGen) report(end time.Duration) *Report {
	sc := g.sc
	r := newReport(sc, end)
	g.mu.Lock()
	r.Records = g.snapshot(g.records)
	r.Readers = g.rstats
	r.Faults = append([]FaultResult{}, g.faults...)
	samples := slices.Clone(g.samples)
	g.mu.Unlock()

	r.summarize(sc, nil)
	r.Unavailability = unavailability(r.Records)
	r.Timeline = timeline(r.Records, end)
	r.Rebuild = episodes(samples)
	return r
}

// episodes turns under-replication samples into the episodes during
// which some message had fewer than R copies (the simulator samples in
// virtual time, the real load in wall time).
func episodes(samples []sample) RebuildReport {
	out := RebuildReport{Episodes: []Episode{}}
	var open bool
	var start time.Duration
	for _, sm := range samples {
		switch {
		case sm.under > 0 && !open:
			open, start = true, sm.at
		case sm.under == 0 && open:
			open = false
			out.Episodes = append(out.Episodes, Episode{StartS: roundTo(start.Seconds(), 3), EndS: roundTo(sm.at.Seconds(), 3), Seconds: roundTo((sm.at - start).Seconds(), 3)})
		}
	}
	if open && len(samples) > 0 {
		last := samples[len(samples)-1].at
		out.Episodes = append(out.Episodes, Episode{StartS: roundTo(start.Seconds(), 3), EndS: roundTo(last.Seconds(), 3), Seconds: roundTo((last - start).Seconds(), 3)})
	}
	for _, e := range out.Episodes {
		out.Seconds += e.Seconds
	}
	out.Seconds = roundTo(out.Seconds, 3)
	return out
}
