package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"mailarray/node/ddns"
	"mailarray/node/env"
	"mailarray/sim/simnet"
)

// Outcome is what became of one offered message.
type Outcome uint8

// Outcomes of a message, in Record.Outcome.
const (
	Unsent   Outcome = iota // still queued at a sender when the run ended
	Accepted                // 250 to DATA: the array acknowledged it
	Rejected                // a 4xx/5xx reply (Record.Code)
	Failed                  // no reply: DNS, connect or I/O failure (Record.Reason)
	Dropped                 // the client backlog was full
)

var outcomeNames = [...]string{"unsent", "accepted", "rejected", "failed", "dropped"}

func (o Outcome) String() string { return outcomeNames[o] }

// Failure reasons of Record.Reason.
const (
	ReasonDNS     = "dns"     // no MX answer from any DNS node
	ReasonConnect = "connect" // no MX target accepted the connection
	ReasonIO      = "io"      // the session broke (reset, EOF)
	ReasonTimeout = "timeout" // a command or the submission timed out
)

// Record is one offered message, as the load generator saw it. The
// records of accepted messages are what the chaos checker compares with the
// stores: every accepted, undeleted message must stay readable.
type Record struct {
	Seq     int    // arrival order, from 0
	ID      string // transaction id from the 250 reply ("queued as ID"); its copy is ID+".0"
	Mailbox string // the recipient
	Size    int    // bytes sent (headers included)
	Urgent  bool
	// Virtual times since the load started: arrival, start of the first
	// attempt (the sender took it), final reply.
	Arrive, Start, Done time.Duration
	Outcome             Outcome
	Code                int    // SMTP reply code of a rejection
	Reason              string // failure reason
	Node                string // the node whose listener gave the final reply
	// Acked is when the listener sent the 250 (virtual, since the load
	// started): the send time of the reply's segment, earlier than Done
	// by the link's delay. Set for accepted messages.
	Acked        time.Duration
	Deleted      bool // a reader deleted it (DELE then QUIT +OK)
	MaybeDeleted bool // a reader sent DELE but the QUIT reply was lost
}

// CopyID is the id of the message's copy in the catalog (one recipient).
func (r *Record) CopyID() string { return r.ID + ".0" }

// Latency is from arrival to the final reply.
func (r *Record) Latency() time.Duration { return r.Done - r.Arrive }

// Limits and constants of the load generator.
const (
	// minMessageBytes leaves room for the generated headers.
	minMessageBytes = 256
	// dnsTimeout bounds one DNS exchange before the next DNS node is asked.
	dnsTimeout = time.Second
	// fillerLine is the body's line; every body is a prefix of lines.
	fillerLine = "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstu\r\n"
	senderFrom = "load@load.test"
)

// loadGen runs the clients: SMTP senders fed by an arrival process, and
// POP3 readers. Arrivals, dispatch and reader ticks run on the driver
// (Net.AfterFunc), in canonical order; each sender and reader is one
// goroutine on its own host, woken through a channel.
type loadGen struct {
	s      *simulation
	n      *simnet.Net
	spec   LoadSpec
	domain string
	boxes  int
	end    time.Duration // arrivals stop (virtual time since load start)
	filler []byte

	arrivals *env.Rand // arrival times, sizes, recipients: driver only
	zipf     *rand.Zipf
	next     time.Duration // next arrival, since load start

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	records  []*Record
	senders  []*sender
	readers  []*reader
	rotate   int
	queued   int // messages waiting at senders
	accepted int
	readTally
}

// ReaderStats count the POP3 readers' work.
type ReaderStats struct {
	Sessions  int64          `json:"sessions"`
	Retrieved int64          `json:"retrieved"`
	Deleted   int64          `json:"deleted"`
	Errors    int64          `json:"errors"`
	ErrorsBy  map[string]int `json:"errors_by_kind"`
}

func newLoadGen(s *simulation) *loadGen {
	sc := s.sc
	g := &loadGen{
		s: s, n: s.net, spec: sc.Load, domain: sc.Domain, boxes: sc.Mailboxes,
		end:       sc.Duration.D(),
		arrivals:  netRand(s.net, "load/arrivals"),
		readTally: newReadTally(),
	}
	if sc.Load.ZipfS > 1 && sc.Mailboxes > 1 {
		g.zipf = rand.NewZipf(g.arrivals.Rand, sc.Load.ZipfS, 1, uint64(sc.Mailboxes-1))
	}
	lines := sc.Load.Size.MaxBytes/len(fillerLine) + 1
	g.filler = []byte(strings.Repeat(fillerLine, lines))
	g.ctx, g.cancel = context.WithCancel(context.Background())
	for k := range sc.Load.Senders {
		g.senders = append(g.senders, g.newSender(k))
	}
	for k := range sc.Load.Readers {
		ip := fmt.Sprintf("10.2.0.%d", k+1)
		g.readers = append(g.readers, &reader{g: g, idx: k, host: s.net.Host(ip),
			rnd: netRand(s.net, "load/reader"+strconv.Itoa(k)), wake: make(chan int, 1)})
	}
	return g
}

// clientIPs lists every client host (for partitions that isolate a node).
func (g *loadGen) clientIPs() []string {
	var out []string
	for _, sd := range g.senders {
		out = append(out, sd.host.IP())
	}
	for _, r := range g.readers {
		out = append(out, r.host.IP())
	}
	return out
}

// start launches the clients and schedules the first arrival and reader
// ticks. Called at the load's start (virtual time 0 of the report).
func (g *loadGen) start() {
	for _, sd := range g.senders {
		g.wg.Go(sd.run)
	}
	for _, r := range g.readers {
		g.wg.Go(r.run)
		g.n.AfterFunc(g.readGap(r.rnd), r.key(), r.tick)
	}
	g.next = 0
	g.n.AfterFunc(0, "load/arrivals", g.arrive)
}

// stop ends every client: sessions in flight are cut.
func (g *loadGen) stop() {
	g.cancel()
	for _, sd := range g.senders {
		signal(sd.wake)
	}
	g.wg.Wait()
}

func (g *loadGen) now() time.Duration { return g.s.sinceLoad() }

// arrive runs on the driver at each arrival: it draws the message, hands it
// to a sender and schedules the next arrival.
func (g *loadGen) arrive() {
	now := g.next
	if now >= g.end || g.ctx.Err() != nil {
		return
	}
	r := g.arrivals
	rec := &Record{Arrive: now, Size: g.drawSize(r)}
	box := 0
	if g.zipf != nil {
		box = int(g.zipf.Uint64())
	} else {
		box = r.IntN(g.boxes)
	}
	// Popularity rank k maps to a scattered mailbox, so that popular
	// mailboxes are not all neighbours in name order.
	rec.Mailbox = mailboxAddr(permute(box, g.boxes), g.domain)
	rec.Urgent = g.spec.UrgentFraction > 0 && r.Float64() < g.spec.UrgentFraction
	g.dispatch(rec)

	gap := g.gap(now)
	g.next = now + gap
	g.n.AfterFunc(g.next-g.now(), "load/arrivals", g.arrive)
}

// gap draws the time to the next arrival after now.
func (g *loadGen) gap(now time.Duration) time.Duration {
	rate := g.spec.RatePerSec
	var sec float64
	switch g.spec.Arrival {
	case ArrivalConstant:
		sec = 1 / rate
	case ArrivalPoisson:
		sec = g.arrivals.ExpFloat64() / rate
	case ArrivalBursty:
		period := g.spec.BurstOn.D() + g.spec.BurstOff.D()
		if now%period < g.spec.BurstOn.D() {
			rate *= g.spec.BurstFactor
		}
		sec = g.arrivals.ExpFloat64() / rate
	}
	return max(time.Duration(sec*float64(time.Second)), time.Nanosecond)
}

func (g *loadGen) drawSize(r *env.Rand) int {
	s := g.spec.Size
	size := s.MedianBytes
	if s.Dist == SizeLognormal && s.Sigma > 0 {
		size = int(math.Round(float64(s.MedianBytes) * math.Exp(s.Sigma*r.NormFloat64())))
	}
	return min(max(size, s.MinBytes), s.MaxBytes)
}

// permute maps popularity rank k of n to a mailbox number, a bijection
// that scatters neighbours (multiplication by a unit mod n).
func permute(k, n int) int {
	if n <= 2 {
		return k
	}
	const step = 7919 // prime; coprime with n unless n is a multiple
	for m := step; ; m += 2 {
		if gcd(m, n) == 1 {
			return int((int64(k)*int64(m) + 1) % int64(n))
		}
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// mailboxAddr is mailbox k's address (k from 0): user<k+1>@domain.
func mailboxAddr(k int, domain string) string {
	return "user" + strconv.Itoa(k+1) + "@" + domain
}

// MailboxLines returns the directory lines of the scenario's mailboxes:
// user<k>@domain with password pw<k>.
func MailboxLines(count int, domain string) []string {
	out := make([]string, count)
	for k := range count {
		out[k] = fmt.Sprintf("user%d@%s:{PLAIN}pw%d", k+1, domain, k+1)
	}
	return out
}

// dispatch gives rec to the sender with the shortest queue (join the
// shortest queue; ties rotate), or drops it when the backlog is full. It
// runs on the driver, so the senders' queues are a consistent snapshot.
func (g *loadGen) dispatch(rec *Record) {
	g.s.host.message() // the generator's and the kernel's share of the host (host.go)
	g.mu.Lock()
	defer g.mu.Unlock()
	rec.Seq = len(g.records)
	g.records = append(g.records, rec)
	best, bestLoad := -1, math.MaxInt
	k := len(g.senders)
	for i := range k {
		sd := g.senders[(g.rotate+i)%k]
		sd.mu.Lock()
		load := len(sd.queue)
		if sd.busy {
			load++
		}
		sd.mu.Unlock()
		if load < bestLoad {
			best, bestLoad = (g.rotate+i)%k, load
			if load == 0 {
				break
			}
		}
	}
	g.rotate = (g.rotate + 1) % k
	if bestLoad > 0 && g.queued >= g.spec.MaxBacklog {
		rec.Outcome = Dropped
		rec.Done = rec.Arrive
		return
	}
	g.queued++
	sd := g.senders[best]
	sd.mu.Lock()
	sd.queue = append(sd.queue, rec)
	sd.mu.Unlock()
	signal(sd.wake)
}

// resolver caches DNS answers per client, by TTL in virtual time, and asks
// the DNS nodes in a seeded order, moving to the next on failure.
type resolver struct {
	g      *loadGen
	host   *simnet.Host
	rnd    *env.Rand
	first  int // index of the DNS node asked first
	cached map[string]cachedAnswer
}

type cachedAnswer struct {
	ips     []net.IP
	expires time.Time
}

// lookup returns the addresses for name: MX targets' glue addresses in
// preference order (mx), or A records in the server's order.
func (r *resolver) lookup(ctx context.Context, name string, mx bool) ([]net.IP, error) {
	key := name
	if mx {
		key = "MX " + name
	}
	if c, ok := r.cached[key]; ok && time.Now().Before(c.expires) {
		return c.ips, nil
	}
	servers := r.g.s.dnsServers
	var lastErr error
	for i := range servers {
		server := servers[(r.first+i)%len(servers)]
		ips, ttl, err := r.ask(ctx, server, name, mx)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if r.cached == nil {
			r.cached = map[string]cachedAnswer{}
		}
		if _, seen := r.cached[key]; !seen && ttl > 0 {
			// A relay's resolver shares its cache with other users: the
			// first answer a client sees is already of a random age. Without
			// this every client would re-resolve at the same moments (they
			// all start together) and get the same rotation.
			ttl -= time.Duration(r.rnd.Int64N(int64(ttl)))
		}
		r.cached[key] = cachedAnswer{ips: ips, expires: time.Now().Add(ttl)}
		return ips, nil
	}
	return nil, fmt.Errorf("sim: resolve %s: %w", name, lastErr)
}

func (r *resolver) ask(ctx context.Context, server, name string, mx bool) ([]net.IP, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	qtype := dns.TypeA
	if mx {
		qtype = dns.TypeMX
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	resp, err := ddns.Exchange(ctx, r.host, server, m, false)
	if err == nil && resp.Truncated {
		resp, err = ddns.Exchange(ctx, r.host, server, m, true)
	}
	if err != nil {
		return nil, 0, err
	}
	if resp.Rcode != dns.RcodeSuccess {
		return nil, 0, &ddns.RcodeError{Name: name, Type: qtype, Rcode: resp.Rcode}
	}
	ttl := uint32(math.MaxUint32)
	var ips []net.IP
	if mx {
		glue := map[string]net.IP{}
		for _, rr := range resp.Extra {
			if a, ok := rr.(*dns.A); ok {
				glue[strings.ToLower(a.Hdr.Name)] = a.A
			}
		}
		var mxs []*dns.MX
		for _, rr := range resp.Answer {
			if m, ok := rr.(*dns.MX); ok {
				mxs = append(mxs, m)
				ttl = min(ttl, m.Hdr.Ttl)
			}
		}
		slices.SortStableFunc(mxs, func(a, b *dns.MX) int { return int(a.Preference) - int(b.Preference) })
		for _, m := range mxs {
			if ip := glue[strings.ToLower(m.Mx)]; ip != nil {
				ips = append(ips, ip)
			}
		}
	} else {
		for _, rr := range resp.Answer {
			if a, ok := rr.(*dns.A); ok {
				ips = append(ips, a.A)
				ttl = min(ttl, a.Hdr.Ttl)
			}
		}
	}
	if len(ips) == 0 {
		return nil, 0, fmt.Errorf("sim: %s: no addresses in the answer", name)
	}
	return ips, time.Duration(ttl) * time.Second, nil
}

// sender is one simulated SMTP client, on its own host: the shared
// sendLoop over simnet and the virtual clock. The driver's dispatch fills
// its queue and wakes it.
type sender struct {
	loop sendLoop
	g    *loadGen
	host *simnet.Host
	rnd  *env.Rand
	wake chan struct{}
	res  resolver

	mu    sync.Mutex
	queue []*Record
	busy  bool
}

func (g *loadGen) newSender(k int) *sender {
	ip := fmt.Sprintf("10.1.%d.%d", k/250, k%250+1)
	sd := &sender{g: g, host: g.n.Host(ip), rnd: netRand(g.n, "load/sender"+strconv.Itoa(k)), wake: make(chan struct{}, 1)}
	sd.loop = sendLoop{name: "sender" + strconv.Itoa(k), spec: &g.spec, seed: g.s.sc.Seed, filler: g.filler,
		world: sd, queue: sd, mu: &g.mu, accepted: &g.accepted}
	return sd
}

func (sd *sender) run() {
	sd.res = resolver{g: sd.g, host: sd.host, rnd: sd.rnd, first: sd.rnd.IntN(len(sd.g.s.dnsServers))}
	sd.loop.run(sd.g.ctx)
}

// wait blocks until dispatch wakes the sender (sendQueue).
func (sd *sender) wait(ctx context.Context) bool {
	select {
	case <-sd.wake:
		return true
	case <-ctx.Done():
		return false
	}
}

// take returns the next queued message and marks the sender busy, or nil
// and marks it idle (sendQueue).
//
// Lock order: loadGen.mu before sender.mu (dispatch); take holds one at a
// time.
func (sd *sender) take() *Record {
	sd.mu.Lock()
	if len(sd.queue) == 0 {
		sd.busy = false
		sd.mu.Unlock()
		return nil
	}
	rec := sd.queue[0]
	sd.queue[0] = nil
	sd.queue = sd.queue[1:]
	sd.busy = true
	sd.mu.Unlock()
	sd.g.mu.Lock()
	sd.g.queued--
	sd.g.mu.Unlock()
	return rec
}

// now is virtual time since the load started (senderWorld).
func (sd *sender) now() time.Duration { return sd.g.now() }

// mxTargets resolves MX through the simulated DNS; each glue address
// names its node (senderWorld).
func (sd *sender) mxTargets(ctx context.Context) ([]mxTarget, error) {
	ips, err := sd.res.lookup(ctx, sd.g.domain, true)
	if err != nil {
		return nil, err
	}
	out := make([]mxTarget, len(ips))
	for i, ip := range ips {
		out[i] = mxTarget{node: sd.g.s.nodeByIP(ip.String()), addr: net.JoinHostPort(ip.String(), "25")}
	}
	return out, nil
}

// dial connects from the sender's simulated host (senderWorld).
func (sd *sender) dial(ctx context.Context, t mxTarget, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return sd.host.DialContext(ctx, "tcp", t.addr)
}

// ackedAt is the send time of the 250's segment, which simnet knows:
// earlier than now by the link's delay (senderWorld).
func (sd *sender) ackedAt(conn net.Conn, now time.Duration) time.Duration {
	if c, ok := conn.(*simnet.Conn); ok {
		return c.LastArrivalSent().Sub(sd.g.s.loadStart)
	}
	return now
}

// classify returns an SMTP error's reply code, or 0 and the failure reason.
func classify(err error) (code int, reason string) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code, ""
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return 0, ReasonTimeout
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return 0, ReasonConnect
	}
	return 0, ReasonIO
}

// reader is one POP3 user agent: on each tick it logs in to a mailbox
// drawn like the recipients, RETRs and DELEs up to ReadMax messages, and
// QUITs.
type reader struct {
	g    *loadGen
	idx  int
	host *simnet.Host
	rnd  *env.Rand
	wake chan int // mailbox number to read
	res  resolver
	zipf *rand.Zipf

	mu   sync.Mutex
	busy bool
}

func (r *reader) key() string { return "load/reader" + strconv.Itoa(r.idx) }

func (g *loadGen) readGap(rnd *env.Rand) time.Duration {
	return max(time.Duration(rnd.ExpFloat64()*float64(g.spec.ReadInterval.D())), time.Millisecond)
}

// readersQuietMax bounds the quiet end of the drain in which readers
// start no session (readersStop).
const readersQuietMax = 10 * time.Second

// readersStop is when readers start their last session: half the drain,
// at most readersQuietMax, before the run's report. A session still
// deleting when the report freezes the world left a tombstone on its node
// only (its push to the others in flight): the chaos checker, which
// judges the array after quiescence, saw diverging catalogs and a message
// deleted although its reader's QUIT got no +OK (soak seed 1037, in every
// cell). The quiet end lets anti-entropy and the deletions settle first.
func (g *loadGen) readersStop() time.Duration {
	drain := g.s.sc.Drain.D()
	return g.end + drain - min(drain/2, readersQuietMax)
}

// tick runs on the driver: a session starts unless the last one is still
// running; the next tick is drawn.
func (r *reader) tick() {
	g := r.g
	if g.ctx.Err() != nil || g.now() >= g.readersStop() {
		return
	}
	if r.zipf == nil && g.zipf != nil {
		r.zipf = rand.NewZipf(r.rnd.Rand, g.spec.ZipfS, 1, uint64(g.boxes-1))
	}
	box := 0
	if r.zipf != nil {
		box = int(r.zipf.Uint64())
	} else {
		box = r.rnd.IntN(g.boxes)
	}
	r.mu.Lock()
	idle := !r.busy
	if idle {
		r.busy = true
	}
	r.mu.Unlock()
	if idle {
		r.wake <- permute(box, g.boxes)
	}
	g.n.AfterFunc(g.readGap(r.rnd), r.key(), r.tick)
}

func (r *reader) run() {
	dnsRand := netRand(r.g.n, "load/reader-dns"+strconv.Itoa(r.idx))
	r.res = resolver{g: r.g, host: r.host, rnd: dnsRand, first: dnsRand.IntN(len(r.g.s.dnsServers))}
	ctx := r.g.ctx
	for {
		select {
		case box := <-r.wake:
			r.session(ctx, box)
			r.mu.Lock()
			r.busy = false
			r.mu.Unlock()
		case <-ctx.Done():
			return
		}
	}
}

func (r *reader) session(ctx context.Context, box int) {
	g := r.g
	fail := func(kind string) { g.fail(&g.mu, kind) }
	g.mu.Lock()
	g.rstats.Sessions++
	g.mu.Unlock()
	ips, err := r.res.lookup(ctx, "pop."+g.domain, false)
	if err != nil {
		fail("dns")
		return
	}
	timeout := g.spec.SMTPTimeout.D()
	var conn net.Conn
	for _, ip := range ips {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err = r.host.DialContext(dctx, "tcp", net.JoinHostPort(ip.String(), "110"))
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		fail("connect")
		return
	}
	g.readSession(ctx, &g.mu, conn, timeout, mailboxAddr(box, g.domain), mailboxPassword(box), g.spec.ReadMax)
}
