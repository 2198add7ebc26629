package simnet

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Net is the simulated network: hosts, links, and the driver's queue of
// network events. Create it inside a synctest bubble with NewNet, give each
// node Host(ip) as its env.Net, and run the driver with Run or Start.
//
// Lock order: Host.mu and the conns' mutexes may be held while taking
// Net.mu; Net.mu is always innermost.
type Net struct {
	cfg   NetConfig
	seed  uint64
	epoch time.Time // virtual time of NewNet; event times are offsets from it
	kick  chan struct{}

	mu        sync.Mutex
	hosts     map[string]*Host
	links     map[linkKey]*link
	overrides map[linkKey]LinkConfig
	cuts      map[linkKey]struct{}
	rng       *rand.Rand // network draws, made by the driver in canonical order
	pending   []*event   // sent since the driver's last step, unordered
	sched     eventHeap  // scheduled, by (time, order)
	stalled   []*event   // stream segments held by a partition or a down host
	free      []*event   // recycled events
	applied   []*event   // held-back events applied this step; driver only
	ord       uint64     // next canonical order number
	timerSeq  map[string]uint64
	digest    *xxhash.Digest
	scratch   []byte
	notes     []note
	rands     map[string]*rand.Rand
	running   bool
	events    int64 // deliveries
	steps     int64 // quiescent steps of the driver
	dropped   int64 // datagrams lost or undeliverable
	// wakeAt is when the blocked driver wakes by itself (math.MaxInt64:
	// only when poked); math.MinInt64 while it runs a step. An event that
	// cannot be due before wakeAt needs no poke: the driver schedules it
	// when it wakes, with the draws it would have made when it was sent
	// (see scheduleLocked). Two of every five driver steps were pokes that
	// only queued an event for later.
	wakeAt int64

	holds map[linkKey]struct{} // stalled directions (StallLink)
}

type note struct {
	at   time.Duration
	line string
}

type linkKey struct{ from, to string }

// link is one direction of a host pair. Its fields are guarded by Net.mu.
type link struct {
	from, to  *Host
	cfg       LinkConfig
	cut       bool  // partitioned
	hold      bool  // stalled (StallLink): every packet held, none lost
	maxDelay  int64 // longest send-to-delivery of a packet since MaxDelay
	busyUntil int64 // end of the last segment's serialisation, ns since epoch

	messages, bytes, dropped int64
}

func (l *link) blocked() bool { return l.cut || l.from.down || l.to.down }

// NewNet returns an empty network whose every random draw derives from seed.
// It must be called inside the synctest bubble that will run it. It panics
// if cfg fails Validate.
func NewNet(seed uint64, cfg NetConfig) *Net {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	n := &Net{
		cfg:       cfg,
		seed:      seed,
		epoch:     time.Now(),
		kick:      make(chan struct{}, 1),
		wakeAt:    math.MaxInt64,
		hosts:     map[string]*Host{},
		links:     map[linkKey]*link{},
		overrides: map[linkKey]LinkConfig{},
		cuts:      map[linkKey]struct{}{},
		holds:     map[linkKey]struct{}{},
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		timerSeq:  map[string]uint64{},
		digest:    xxhash.New(),
		rands:     map[string]*rand.Rand{},
	}
	for _, o := range cfg.Links {
		a, b := canonicalIP(o.A), canonicalIP(o.B)
		n.overrides[linkKey{a, b}] = o.Link
		n.overrides[linkKey{b, a}] = o.Link
	}
	return n
}

func canonicalIP(s string) string {
	ip := net.ParseIP(s)
	if ip == nil {
		panic(fmt.Sprintf("simnet: %q is not an IP address", s))
	}
	return ip.String()
}

// Host returns the host with address ip, creating it on first use. ip must
// be an IP address literal; the simulator has no resolver.
func (n *Net) Host(ip string) *Host {
	key := canonicalIP(ip)
	n.mu.Lock()
	defer n.mu.Unlock()
	if h := n.hosts[key]; h != nil {
		return h
	}
	h := &Host{
		n:         n,
		ip:        key,
		addr:      net.ParseIP(key),
		listeners: map[int]*Listener{},
		tcpPorts:  map[int]any{},
		udpPorts:  map[int]*PacketConn{},
		conns:     map[*Conn]struct{}{},
		picks:     map[string]uint64{},
	}
	n.hosts[key] = h
	return h
}

func (n *Net) lookupHost(ip net.IP) *Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hosts[ip.String()]
}

// linkLocked returns the link from a to b, creating it from the config.
func (n *Net) linkLocked(a, b *Host) *link {
	k := linkKey{a.ip, b.ip}
	if l := n.links[k]; l != nil {
		return l
	}
	l := &link{from: a, to: b, cfg: n.linkConfigLocked(k)}
	_, l.cut = n.cuts[k]
	_, l.hold = n.holds[k]
	n.links[k] = l
	return l
}

func (n *Net) linkConfigLocked(k linkKey) LinkConfig {
	if c, ok := n.overrides[k]; ok {
		return c
	}
	if k.from == k.to {
		return n.cfg.Loopback
	}
	return n.cfg.Link
}

// SetLink replaces the model of the path between hosts a and b, in both
// directions, from now on. Segments already scheduled keep their times.
func (n *Net) SetLink(a, b string, cfg LinkConfig) {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	a, b = canonicalIP(a), canonicalIP(b)
	n.mu.Lock()
	// Segments sent before now were drawn with the old model: draw them
	// before it changes (those sent at this instant get the new one, as
	// the driver's next step would give them).
	n.scheduleLocked(int64(time.Since(n.epoch)))
	for _, k := range []linkKey{{a, b}, {b, a}} {
		n.overrides[k] = cfg
		if l := n.links[k]; l != nil {
			l.cfg = cfg
		}
	}
	n.mu.Unlock()
	// Events of this instant that did not poke the driver may be due
	// sooner with the new model (a shorter latency).
	n.poke()
}

// Partition cuts every path between a host of groupA and a host of groupB
// (IPs), in both directions, until Heal. Datagrams crossing the cut vanish,
// SYNs and stream segments are held (TCP retransmits): connects time out and
// established streams stall, then resume in order after Heal. Partitions
// accumulate.
func (n *Net) Partition(groupA, groupB []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range groupA {
		for _, b := range groupB {
			a, b := canonicalIP(a), canonicalIP(b)
			for _, k := range []linkKey{{a, b}, {b, a}} {
				n.cuts[k] = struct{}{}
				if l := n.links[k]; l != nil {
					l.cut = true
				}
			}
		}
	}
}

// Heal removes every partition. Held stream segments are sent again, with
// new latencies drawn, and arrive in order.
func (n *Net) Heal() {
	n.mu.Lock()
	clear(n.cuts)
	for _, l := range n.links {
		l.cut = false
	}
	n.releaseStalledLocked()
	n.mu.Unlock()
	n.poke()
}

// releaseStalledLocked resends the held segments whose path is open again.
func (n *Net) releaseStalledLocked() {
	kept := n.stalled[:0]
	for _, e := range n.stalled {
		if e.link.blocked() || e.link.held() {
			kept = append(kept, e)
			continue
		}
		e.sent = int64(time.Since(n.epoch)) // sent again now
		n.pending = append(n.pending, e)
	}
	clear(n.stalled[len(kept):])
	n.stalled = kept
}

// Rand returns the random stream of the node called name, derived from the
// net's seed and name only: the same name gets the same stream in every run
// (and the same *rand.Rand within a run). It is safe for concurrent use and
// draws exactly what env.NewRand(StreamSeed(seed, name)) draws, so a
// caller may wrap it as an env.Rand (&env.Rand{Rand: r}) and the real-time
// load generator, which has no Net, can draw the same streams.
func (n *Net) Rand(name string) *rand.Rand {
	n.mu.Lock()
	defer n.mu.Unlock()
	if r := n.rands[name]; r != nil {
		return r
	}
	r := newLockedRand(StreamSeed(n.seed, name))
	n.rands[name] = r
	return r
}

// StreamSeed is the seed of the stream Net.Rand(name) gives on a net
// created with seed.
func StreamSeed(seed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return SplitMix64(seed ^ h.Sum64())
}

// newLockedRand is a PCG stream seeded as env.NewRand seeds it, behind a
// mutex. (This package does not import mailarray's env: a test in package
// sim checks that both give the same draws.)
func newLockedRand(seed uint64) *rand.Rand {
	return rand.New(&lockedSource{src: rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)})
}

type lockedSource struct {
	mu  sync.Mutex
	src *rand.PCG
}

func (s *lockedSource) Uint64() uint64 {
	s.mu.Lock()
	v := s.src.Uint64()
	s.mu.Unlock()
	return v
}

// SplitMix64 decorrelates nearby seeds.
func SplitMix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Note adds an application-level line to the digest, stamped with the
// virtual time. Notes recorded during one quiescent step of the driver are
// sorted before hashing: goroutines woken together (by one bbolt batch
// commit, by coinciding timers) run in varying order, and sorting makes what
// they record canonical. Note may be called from any goroutine.
func (n *Net) Note(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	at := time.Since(n.epoch)
	n.mu.Lock()
	n.notes = append(n.notes, note{at, line})
	n.mu.Unlock()
}

func (n *Net) flushNotesLocked() {
	if len(n.notes) == 0 {
		return
	}
	slices.SortFunc(n.notes, func(a, b note) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return strings.Compare(a.line, b.line)
	})
	for _, nt := range n.notes {
		b := binary.LittleEndian.AppendUint64(n.scratch[:0], uint64(nt.at))
		b = append(b, 'N')
		b = append(b, nt.line...)
		b = append(b, '\n')
		n.digest.Write(b)
		n.scratch = b
		if n.cfg.Trace != nil {
			fmt.Fprintf(n.cfg.Trace, "%v note %s\n", nt.at, nt.line)
		}
	}
	clear(n.notes)
	n.notes = n.notes[:0]
}

// Digest returns the hex xxHash64 of every network event delivered (time,
// stream, sequence, payload) and every note so far: a fingerprint to tell
// runs apart, not a defence against forgery, so the fast non-cryptographic
// hash (SHA-256 of every payload was 2% of a run). Call it after Run has
// returned: same scenario and seed give the same digest.
func (n *Net) Digest() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.flushNotesLocked()
	return hex.EncodeToString(n.digest.Sum(nil))
}

// Stats are the network's counters.
type Stats struct {
	Events  int64 // network events delivered (segments, datagrams, timers)
	Steps   int64 // quiescent steps of the driver
	Dropped int64 // datagrams lost or undeliverable
	Stalled int   // stream segments currently held by partitions
	// Links has one entry per directed host pair that carried traffic,
	// sorted by From then To.
	Links []LinkStats
}

// LinkStats are the counters of one direction of a host pair.
type LinkStats struct {
	From, To string // host IPs
	Messages int64  // segments and datagrams that crossed the link (SYN, FIN, RST included)
	Bytes    int64  // their payload bytes
	Dropped  int64  // datagrams lost on the link or refused by a full or missing socket
}

// Stats returns a snapshot of the counters.
func (n *Net) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := Stats{Events: n.events, Steps: n.steps, Dropped: n.dropped, Stalled: len(n.stalled)}
	for _, l := range n.links {
		if l.messages == 0 && l.dropped == 0 {
			continue
		}
		s.Links = append(s.Links, LinkStats{From: l.from.ip, To: l.to.ip, Messages: l.messages, Bytes: l.bytes, Dropped: l.dropped})
	}
	slices.SortFunc(s.Links, func(a, b LinkStats) int {
		if c := compareIP(a.From, b.From); c != 0 {
			return c
		}
		return compareIP(a.To, b.To)
	})
	return s
}

// compareIP orders addresses numerically (10.0.0.2 before 10.0.0.10).
func compareIP(a, b string) int {
	return slices.Compare(net.ParseIP(a).To16(), net.ParseIP(b).To16())
}

// Host is one machine of the simulated network. It implements env.Net for
// the node running on it.
type Host struct {
	n    *Net
	ip   string
	addr net.IP

	down bool // unreachable (SetDown); guarded by Net.mu
	// paused holds every packet to or from the host (Pause), and counts
	// what the host sent and received; guarded by Net.mu.
	paused         bool
	sent, received int64 // packets delivered from and to the host

	mu        sync.Mutex
	crashed   bool
	listeners map[int]*Listener
	tcpPorts  map[int]any // port -> *Listener or *Conn (dialed) owning it
	udpPorts  map[int]*PacketConn
	conns     map[*Conn]struct{} // open streams, reset by Crash
	// picks counts ephemeral port picks per purpose (a destination, or a
	// listen on port 0): the count numbers the stream or socket, keeping
	// keys unique when ports are reused, and seeds the port (ephemeral).
	picks map[string]uint64
}

// IP returns the host's address.
func (h *Host) IP() string { return h.ip }

// Crash kills the host's process: every listener, packet conn and stream
// closes at once (their calls return net.ErrClosed), and each stream's peer
// receives a reset after the link latency (ECONNRESET). SYNs reaching a
// crashed host are refused; its Listen and Dial fail with ENETDOWN until
// Restart.
func (h *Host) Crash() {
	h.mu.Lock()
	if h.crashed {
		h.mu.Unlock()
		return
	}
	h.crashed = true
	ls := make([]*Listener, 0, len(h.listeners))
	for _, l := range h.listeners {
		ls = append(ls, l)
	}
	pcs := make([]*PacketConn, 0, len(h.udpPorts))
	for _, pc := range h.udpPorts {
		pcs = append(pcs, pc)
	}
	cs := make([]*Conn, 0, len(h.conns))
	for c := range h.conns {
		cs = append(cs, c)
	}
	clear(h.listeners)
	clear(h.tcpPorts)
	clear(h.udpPorts)
	clear(h.conns)
	h.mu.Unlock()
	// Order does not matter: resets are sent through the driver, which
	// orders them canonically.
	for _, l := range ls {
		l.shutdown()
	}
	for _, pc := range pcs {
		pc.shutdown()
	}
	for _, c := range cs {
		c.abort()
	}
}

// Restart brings a crashed host back, with no listeners: the node restarts
// its servers.
func (h *Host) Restart() {
	h.mu.Lock()
	h.crashed = false
	h.mu.Unlock()
}

// SetDown makes the host unreachable (down) or reachable again: while down,
// every datagram to or from it vanishes and stream segments are held, as if
// its cable were pulled. Unlike Crash, nothing is closed or reset.
func (h *Host) SetDown(down bool) {
	n := h.n
	n.mu.Lock()
	h.down = down
	if !down {
		n.releaseStalledLocked()
	}
	n.mu.Unlock()
	n.poke()
}

// parseLocal parses a listen address: host empty, unspecified or the host's
// own IP.
func (h *Host) parseLocal(network, address string) (int, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return 0, err
	}
	if host != "" {
		ip := net.ParseIP(host)
		if ip == nil || !(ip.IsUnspecified() || ip.IsLoopback() || ip.Equal(h.addr)) {
			return 0, sysErr("bind", syscall.EADDRNOTAVAIL)
		}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return 0, &net.AddrError{Err: "invalid port", Addr: address}
	}
	return port, nil
}

// parseRemote parses a dial address, which must be an IP literal and a port.
func parseRemote(address string) (net.IP, int, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, 0, err
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, &net.DNSError{Err: "no such host (the simulator resolves only IP literals)", Name: host, IsNotFound: true}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, 0, &net.AddrError{Err: "invalid port", Addr: address}
	}
	return ip, port, nil
}

// ephemeralLocked picks a free port for the k-th pick of purpose
// ("tcp>10.0.0.2:7000", "tcp listen", ...) and returns it with k. The
// port is a hash of (purpose, k), probing upward past ports in use, not
// the next one after a per-host cursor: goroutines that dial different
// destinations at the same virtual instant run in an order the Go
// scheduler picks (and a preemption under load can change), and a shared
// cursor would hand them each other's ports, changing stream keys and
// so the whole run. Per purpose, picks come in the caller's own order.
// Two purposes collide only if their hashed ports meet while both are
// open and they race for it: about one chance in the range's size (28,232
// by default) per pair of simultaneous picks.
func (h *Host) ephemeralLocked(purpose string, used func(int) bool) (port int, k uint64, ok bool) {
	lo, hi := h.n.cfg.EphemeralPortMin, h.n.cfg.EphemeralPortMax
	span := uint64(hi - lo + 1)
	h.picks[purpose]++
	k = h.picks[purpose]
	start := xxhash.Sum64String(purpose+" #"+strconv.FormatUint(k, 10)) % span
	for i := range span {
		p := lo + int((start+i)%span)
		if !used(p) {
			return p, k, true
		}
	}
	return 0, k, false
}

func (h *Host) tcpUsed(p int) bool { _, ok := h.tcpPorts[p]; return ok }
func (h *Host) udpUsed(p int) bool { _, ok := h.udpPorts[p]; return ok }

// Listen opens a TCP listener on the host. address is "ip:port", ":port" or
// "0.0.0.0:port"; port 0 picks an ephemeral port. A loopback address binds
// the host's address too: the simulator has one interface per host, and
// dialing 127.0.0.1 reaches the dialing host.
func (h *Host) Listen(network, address string) (net.Listener, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, opError("listen", network, nil, nil, net.UnknownNetworkError(network))
	}
	port, err := h.parseLocal(network, address)
	if err != nil {
		return nil, opError("listen", network, nil, nil, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.crashed {
		return nil, opError("listen", network, nil, nil, sysErr("bind", syscall.ENETDOWN))
	}
	if port == 0 {
		p, _, ok := h.ephemeralLocked("tcp listen", h.tcpUsed)
		if !ok {
			return nil, opError("listen", network, nil, nil, sysErr("bind", syscall.EADDRINUSE))
		}
		port = p
	} else if h.tcpUsed(port) {
		return nil, opError("listen", network, nil, &net.TCPAddr{IP: h.addr, Port: port}, sysErr("bind", syscall.EADDRINUSE))
	}
	l := &Listener{
		host:  h,
		port:  port,
		addr:  &net.TCPAddr{IP: h.addr, Port: port},
		ready: make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	h.listeners[port] = l
	h.tcpPorts[port] = l
	return l, nil
}

// ListenPacket opens a UDP socket on the host; address as for Listen.
func (h *Host) ListenPacket(network, address string) (net.PacketConn, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, opError("listen", network, nil, nil, net.UnknownNetworkError(network))
	}
	port, err := h.parseLocal(network, address)
	if err != nil {
		return nil, opError("listen", network, nil, nil, err)
	}
	return h.bindUDP(network, port, "udp listen")
}

// bindUDP opens a packet socket on port, or on an ephemeral port picked
// for purpose (ephemeralLocked) if port is 0.
func (h *Host) bindUDP(network string, port int, purpose string) (*PacketConn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.crashed {
		return nil, opError("listen", network, nil, nil, sysErr("bind", syscall.ENETDOWN))
	}
	if port != 0 {
		if h.udpUsed(port) {
			return nil, opError("listen", network, nil, &net.UDPAddr{IP: h.addr, Port: port}, sysErr("bind", syscall.EADDRINUSE))
		}
		purpose += " :" + strconv.Itoa(port)
	}
	p, k, ok := h.ephemeralLocked(purpose, h.udpUsed)
	if port == 0 {
		if !ok {
			return nil, opError("listen", network, nil, nil, sysErr("bind", syscall.EADDRINUSE))
		}
		port = p
	}
	pc := newPacketConn(h, port, purpose, k)
	h.udpPorts[port] = pc
	return pc, nil
}

// DialContext connects to address ("ip:port") from an ephemeral port of the
// host. "tcp" completes a handshake through the driver (one round trip); a
// refused connect fails after a round trip with ECONNREFUSED; a SYN that
// never arrives (partition, host down) fails when ctx ends or after
// NetConfig.ConnectTimeout with a timeout error. "udp" returns a connected
// datagram conn at once.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var udp bool
	switch network {
	case "tcp", "tcp4", "tcp6":
	case "udp", "udp4", "udp6":
		udp = true
	default:
		return nil, opError("dial", network, nil, nil, net.UnknownNetworkError(network))
	}
	ip, port, err := parseRemote(address)
	if err != nil {
		return nil, opError("dial", network, nil, nil, err)
	}
	dst := h.n.lookupHost(ip)
	if ip.IsLoopback() {
		dst, ip = h, h.addr
	}
	if udp {
		return h.dialUDP(network, ip, port)
	}
	raddr := &net.TCPAddr{IP: ip, Port: port}
	if dst == nil {
		return nil, opError("dial", network, nil, raddr, sysErr("connect", syscall.EHOSTUNREACH))
	}
	return h.dialTCP(ctx, network, dst, port)
}
