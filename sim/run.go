package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"

	"mailarray/node"
	"mailarray/node/env"
	"mailarray/sim/simnet"
)

// Options tune a run without changing its result: the report is the same
// whatever they say (except the wall section).
type Options struct {
	// DataDir holds the nodes' bbolt files, one directory per node.
	// Default: a fresh t.TempDir().
	DataDir string
	// Progress, when set, shows a progress bar in virtual time once the run
	// has taken more than progressAfter of wall time.
	Progress io.Writer
	// Log, when set, receives the nodes' logs at Warn and above.
	Log io.Writer
	// Trace, when set, receives the network trace (NetConfig.Trace): for
	// diffing two runs that should be identical. Slow.
	Trace io.Writer
}

// Phases of a run.
const (
	// warmup runs between the nodes' start and the load's: the nodes
	// settle (first load reports, membership gossip) before time 0 of the
	// report.
	warmup = time.Second
	// nodeStagger spaces the nodes' starts so their periodic timers never
	// coincide (timers of different nodes that fire at the same nanosecond
	// run in varying order).
	nodeStagger = 3 * time.Millisecond
	// sampleEvery is the period of the sampler (rebuild progress, progress
	// bar).
	sampleEvery = 250 * time.Millisecond
	// removeGrace bounds a graceful remove_node (drain of SMTP sessions
	// and push queues).
	removeGrace = 30 * time.Second
	// simGCPercent is the GC target of a run that does not collect at a
	// memory limit (gc.go).
	simGCPercent = 400
	// Port numbers of every node's listeners.
	portSMTP = "25"
	portPOP3 = "110"
	portDNS  = "53"
	portPeer = "7000"
)

// Run simulates sc and returns its report. It runs the whole scenario
// inside synctest.Test(t, ...): t must not be inside a bubble already.
func Run(t *testing.T, sc Scenario, opts Options) (*Report, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if opts.DataDir == "" {
		opts.DataDir = dataDir(t)
	}
	prog := newProgress(opts.Progress, sc)
	// One P: goroutines that one driver step wakes together (a goroutine
	// and the ones it signals) then run in the scheduler's order, which is
	// the same every run; on several Ps they race for the node's pooled
	// connections, ports and random stream. It is also the fastest
	// setting (docs/design.md).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	// Fewer garbage collections, traded for memory (see gc.go).
	defer setRunGC()()
	var (
		rep *Report
		err error
	)
	synctest.Test(t, func(t *testing.T) {
		rep, err = run(t, sc, opts, prog)
	})
	prog.finish()
	return rep, err
}

// dataDir is a fresh directory for the nodes' files, removed after the
// test: in memory (/dev/shm) when the machine has it, since file I/O takes
// no virtual time and the stores' writes are a large part of the wall time;
// else t.TempDir(). SIM_DATA_DIR overrides the parent directory.
func dataDir(t *testing.T) string {
	parent := os.Getenv("SIM_DATA_DIR")
	if parent == "" {
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			parent = "/dev/shm"
		}
	}
	if parent == "" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "mailarray-sim-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// simulation is the state of one run, inside its bubble.
type simulation struct {
	t    testing.TB
	sc   Scenario
	opts Options
	log  *slog.Logger

	net        *simnet.Net
	cluster    *Cluster
	nodes      []*simNode // scenario order
	byName     map[string]*simNode
	byIP       map[string]string
	dnsServers []string // initial nodes' DNS listeners, the "NS records"
	mailboxes  []string
	load       *loadGen
	prog       *progress
	ledger     *ledger  // durability of every copy (disk.go)
	host       *hostCPU // the machine the nodes share, if any (host.go)

	started   time.Time // virtual time of the net's start
	loadStart time.Time
	wall0     time.Duration

	faultc    chan FaultSpec
	faultDone chan struct{}
	evidence  map[string]int64 // of the fault being applied (timefaults.go)
	leases    *leaseLog

	mu      sync.Mutex // guards what the fault goroutine changes and the sampler reads
	faults  []FaultResult
	samples []sample
}

// simNode is one node of the scenario across its incarnations.
type simNode struct {
	spec NodeSpec
	ip   string
	host *simnet.Host
	cost *nodeCost
	dir  string
	rnd  *env.Rand

	// Guarded by simulation.mu.
	node  *node.Node // nil unless running
	state string     // alive, crashed, removed, spare
	// Counters of earlier incarnations (a restart starts from zero).
	rebuilt node.RebuildStatus

	// Time faults (timefaults.go), changed by the fault goroutine only.
	clock                *skewClock
	inc                  int // incarnation: starts so far
	paused               bool
	pausedAt             time.Time
	pauseSent, pauseRecv int64
}

// Node states in the report.
const (
	stateAlive   = "alive"
	stateCrashed = "crashed"
	stateRemoved = "removed"
	stateSpare   = "spare"
)

// sample is the cluster's rebuild progress at one instant.
type sample struct {
	at    time.Duration // since load start
	under int64         // entries short of R copies, summed over live nodes
}

func run(t *testing.T, sc Scenario, opts Options, prog *progress) (*Report, error) {
	s := &simulation{t: t, sc: sc, opts: opts, prog: prog, byName: map[string]*simNode{}, byIP: map[string]string{}, ledger: newLedger()}
	s.wall0 = WallNow()
	restore := seedDNSID(sc.Seed)
	defer restore()
	if opts.Log != nil {
		s.log = slog.New(slog.NewTextHandler(opts.Log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	} else {
		s.log = slog.New(slog.DiscardHandler)
	}

	ncfg := simnet.DefaultNetConfig()
	ncfg.Link = sc.Link.config()
	ncfg.Trace = opts.Trace
	s.net = simnet.NewNet(sc.Seed, ncfg)
	s.leases = newLeaseLog(s.net)
	s.started = time.Now()
	stopNet := s.net.Start()

	s.host = newHostCPU(s.net, sc.HostCPUs, sc.HostCPUPerMsg.D())
	s.mailboxes = MailboxLines(sc.Mailboxes, sc.Domain)
	var initial []env.Member
	for i, spec := range sc.Nodes {
		sn := &simNode{spec: spec, ip: fmt.Sprintf("10.0.0.%d", i+1), dir: filepath.Join(opts.DataDir, spec.Name), state: stateSpare}
		sn.host = s.net.Host(sn.ip)
		sn.cost = newNodeCost(s.net, spec, s.ledger)
		sn.cost.host = s.host
		sn.rnd = netRand(s.net, "node "+spec.Name)
		sn.clock = newSkewClock(spec.ClockOffset.D(), spec.ClockDriftPPM)
		s.nodes = append(s.nodes, sn)
		s.byName[spec.Name] = sn
		s.byIP[sn.ip] = spec.Name
		if !spec.Spare {
			s.dnsServers = append(s.dnsServers, net.JoinHostPort(sn.ip, portDNS))
			m, err := s.member(sn)
			if err != nil {
				stopNet()
				return nil, err
			}
			initial = append(initial, m)
		}
	}
	// The initial members know each other, tags included, from the start:
	// the array is formed before the load begins.
	mcfg := DefaultMembershipConfig()
	mcfg.DetectMin, mcfg.DetectMax = sc.Membership.DetectMin.D(), sc.Membership.DetectMax.D()
	mcfg.GossipMin, mcfg.GossipMax = sc.Membership.GossipMin.D(), sc.Membership.GossipMax.D()
	mcfg.RejoinMin, mcfg.RejoinMax = sc.Membership.RejoinMin.D(), sc.Membership.RejoinMax.D()
	s.cluster = NewCluster(s.net, mcfg, initial...)

	var startErr error
	for _, sn := range s.nodes {
		if sn.spec.Spare {
			continue
		}
		if err := s.startNode(sn); err != nil {
			startErr = err
			break
		}
		time.Sleep(nodeStagger)
	}
	s.load = newLoadGen(s)
	s.faultc = make(chan FaultSpec, len(sc.Faults)+countUndos(sc.Faults))
	s.faultDone = make(chan struct{})
	go s.faultLoop()
	if startErr == nil {
		time.Sleep(warmup)
		s.loadStart = time.Now()
		s.load.start()
		for _, f := range sc.Faults {
			s.net.AfterFunc(f.At.D(), "faults", func() { s.faultc <- f })
		}
		s.net.AfterFunc(0, "sampler", s.sampleTick)
		time.Sleep(sc.Duration.D() + sc.Drain.D())
	}

	// Freeze the world: after this driver step every goroutine but this
	// one is blocked until we block, so the report reads a consistent
	// state.
	var rep *Report
	if startErr == nil {
		quiet := make(chan struct{})
		s.net.AfterFunc(0, "report", func() { close(quiet) })
		<-quiet
		rep = s.report()
	}

	// Teardown, in the order that leaves no goroutine behind (doc.go).
	s.load.stop()
	close(s.faultc)
	<-s.faultDone
	s.resumeAll() // a paused node's parked goroutines must end too
	for _, sn := range s.nodes {
		// Background jobs re-arm forever: left on, the driver would
		// never run out of events to advance time to.
		sn.cost.setRunning(false)
	}
	s.mu.Lock()
	var running []*node.Node
	for _, sn := range s.nodes {
		if sn.node != nil {
			running = append(running, sn.node)
			sn.node = nil
		}
	}
	s.mu.Unlock()
	for _, nd := range running {
		nd.Close()
	}
	for _, m := range s.cluster.Members() {
		s.cluster.For(m.Name).Close()
	}
	stopNet()
	if startErr != nil {
		return nil, startErr
	}
	rep.Wall = s.wallFigures(rep)
	return rep, nil
}

// seedDNSID replaces miekg/dns's global message id source (crypto/rand by
// default) with a stream derived from seed, and returns the function that
// restores it. The simulator's only concession to package state: the ids
// go into packets, so they must repeat.
func seedDNSID(seed uint64) (restore func()) {
	old := dns.Id
	r := env.NewRand(simnet.SplitMix64(seed ^ 0xd15ea5e))
	dns.Id = func() uint16 { return uint16(r.Uint32()) }
	return func() { dns.Id = old }
}

// sinceLoad is the virtual time since the load started.
func (s *simulation) sinceLoad() time.Duration { return time.Since(s.loadStart) }

func (s *simulation) nodeByIP(ip string) string { return s.byIP[ip] }

// config is node sn's configuration.
func (s *simulation) config(sn *simNode) node.Config {
	sc := s.sc
	cfg := node.DefaultConfig()
	cfg.Name = sn.spec.Name
	cfg.DataDir = sn.dir
	cfg.Domains = []string{sc.Domain}
	cfg.Mailboxes = s.mailboxes
	cfg.Advertise = sn.ip
	cfg.SMTPAddr = net.JoinHostPort(sn.ip, portSMTP)
	cfg.POP3Addr = net.JoinHostPort(sn.ip, portPOP3)
	cfg.DNSAddr = net.JoinHostPort(sn.ip, portDNS)
	cfg.PeerAddr = net.JoinHostPort(sn.ip, portPeer)
	cfg.HTTPAddr = ""
	cfg.Replicas, cfg.WriteQuorum = sc.Replicas, sc.WriteQuorum
	cfg.DNSTTL = sc.DNSTTL.D()
	cfg.DNSRotateEvery = min(cfg.DNSRotateEvery, cfg.DNSTTL)
	cfg.DNSStrategy, cfg.PlacementStrategy = sc.DNSStrategy, sc.PlacementStrategy
	cfg.Weight = sn.spec.Weight
	cfg.MaxMessageBytes = max(cfg.MaxMessageBytes, 2*int64(sc.Load.Size.MaxBytes))
	cfg.NoSync = true // the disk's cost is modeled (nodeCost)
	if d := sc.RebalanceAfterReturn.D(); d > 0 {
		cfg.Tuning.RebalanceAfterReturn = d
	}
	return cfg
}

// member is sn as membership announces it: the tags the node itself
// advertises when it starts (node.advertise), known before it does.
func (s *simulation) member(sn *simNode) (env.Member, error) {
	cfg := s.config(sn)
	if err := cfg.Validate(); err != nil {
		return env.Member{}, fmt.Errorf("sim: node %s: %w", sn.spec.Name, err)
	}
	tags := map[string]string{
		env.TagRoles:  strings.Join(cfg.Roles, ","),
		env.TagWeight: strconv.Itoa(cfg.Weight),
		env.TagSMTP:   cfg.SMTPAddr,
		env.TagPOP3:   cfg.POP3Addr,
		env.TagDNS:    cfg.DNSAddr,
		env.TagPeer:   cfg.PeerAddr,
	}
	return env.Member{Name: sn.spec.Name, Addr: net.ParseIP(sn.ip).To4(), Tags: tags}, nil
}

// startNode starts a new incarnation of sn on its data directory. Its
// membership must already say it is alive (NewCluster, Add or Restart).
func (s *simulation) startNode(sn *simNode) error {
	sn.inc++
	e := &env.Env{
		Net:        sn.host,
		Rand:       sn.rnd,
		Membership: s.cluster.For(sn.spec.Name),
		DataDir:    sn.dir,
		Log:        s.log,
		Cost:       sn.cost,
		Clock:      sn.clock,
		Leases:     s.leaseObserver(sn),
	}
	nd, err := node.New(s.config(sn), e)
	if err != nil {
		return fmt.Errorf("sim: node %s: %w", sn.spec.Name, err)
	}
	if err := nd.Start(); err != nil {
		return fmt.Errorf("sim: node %s: %w", sn.spec.Name, err)
	}
	s.mu.Lock()
	sn.node, sn.state = nd, stateAlive
	s.mu.Unlock()
	sn.cost.setRunning(true)
	return nil
}

// stopNode detaches sn's running node (nil if none), keeping its counters.
func (s *simulation) stopNode(sn *simNode, state string) *node.Node {
	sn.cost.setRunning(false)
	s.mu.Lock()
	defer s.mu.Unlock()
	nd := sn.node
	s.leases.down(sn.spec.Name, sn.inc, time.Now())
	if nd != nil {
		r := nd.RebuildStatus()
		sn.rebuilt.RebuiltCopies += r.RebuiltCopies
		sn.rebuilt.RebuiltBytes += r.RebuiltBytes
		sn.rebuilt.MovedCopies += r.MovedCopies
		sn.rebuilt.TrimmedCopies += r.TrimmedCopies
		sn.rebuilt.AutoRebalances += r.AutoRebalances
	}
	sn.node, sn.state = nil, state
	return nd
}

// FaultResult is one applied fault, for the report.
type FaultResult struct {
	AtS    float64 `json:"at_s"`
	Action string  `json:"action"`
	Node   string  `json:"node,omitempty"`
	Nodes  string  `json:"nodes,omitempty"`
	// Evidence is what a time fault measurably did (timefaults.go). A
	// resume: paused_ms, the packets the node sent and received while
	// paused (0: the pause held), the packets held and the goroutines
	// parked. A restore_link: the packets held from or to its first node,
	// and the longest delay of a packet on its links since the slow_link
	// (max_delay_ms). A skew_clock: the clock's offset just after.
	Evidence map[string]int64 `json:"evidence,omitempty"`
	// Disk is a restart's disk (backup, empty); For a stall's length.
	Disk  string  `json:"disk,omitempty"`
	ForS  float64 `json:"for_s,omitempty"`
	Error string  `json:"error"`
}

// faultLoop applies the faults the schedule's driver callbacks hand it, one
// at a time: crashes and restarts wait for goroutines, which a driver
// callback must not.
func (s *simulation) faultLoop() {
	defer close(s.faultDone)
	for f := range s.faultc {
		err := s.apply(f)
		r := FaultResult{AtS: roundTo(s.sinceLoad().Seconds(), 3), Action: f.Action, Node: f.Node, Disk: f.Disk, ForS: roundTo(f.For.D().Seconds(), 3)}
		if len(f.Nodes) > 0 {
			r.Nodes = strings.Join(f.Nodes, ",")
			if len(f.From) > 0 {
				r.Nodes += "|" + strings.Join(f.From, ",")
			}
		}
		if err != nil {
			r.Error = err.Error()
		}
		r.Evidence, s.evidence = s.evidence, nil
		s.net.Note("fault %s %s %s: %v", f.Action, f.Node, r.Nodes, err)
		s.mu.Lock()
		s.faults = append(s.faults, r)
		s.mu.Unlock()
	}
}

func (s *simulation) ips(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = s.byName[n].ip
	}
	return out
}

// apply performs one fault.
func (s *simulation) apply(f FaultSpec) error {
	sn := s.byName[f.Node]
	switch f.Action {
	case FaultCrash:
		if sn.state != stateAlive {
			return fmt.Errorf("sim: crash %s: node is %s", f.Node, sn.state)
		}
		s.unpauseToCrash(sn)
		// The process dies at once: its sockets reset, membership starts
		// detecting; then its goroutines are reaped.
		sn.host.Crash()
		s.cluster.Crash(sn.spec.Name)
		if nd := s.stopNode(sn, stateCrashed); nd != nil {
			nd.Close()
		}
	case FaultRestart:
		if sn.state != stateCrashed {
			return fmt.Errorf("sim: restart %s: node is %s", f.Node, sn.state)
		}
		if err := s.replaceDisk(sn, f.Disk); err != nil {
			return err
		}
		sn.host.Restart()
		s.cluster.Restart(sn.spec.Name)
		return s.startNode(sn)
	case FaultAddNode:
		if sn.state != stateSpare && sn.state != stateRemoved {
			return fmt.Errorf("sim: add %s: node is %s", f.Node, sn.state)
		}
		m, err := s.member(sn)
		if err != nil {
			return err
		}
		s.cluster.Add(m)
		return s.startNode(sn)
	case FaultRemoveNode:
		if sn.state != stateAlive || sn.paused {
			return fmt.Errorf("sim: remove %s: node is %s", f.Node, s.stateOf(sn)) // a stopped process cannot leave
		}
		s.mu.Lock()
		nd := sn.node
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), removeGrace)
		err := nd.Shutdown(ctx) // leaves membership, then closes
		cancel()
		s.stopNode(sn, stateRemoved)
		return err
	case FaultPartition:
		// The network is cut, and membership on each side declares the
		// other side failed after its detection delay (serf would).
		from := f.From
		if len(from) == 0 {
			for _, other := range s.nodes {
				if !containsStr(f.Nodes, other.spec.Name) {
					from = append(from, other.spec.Name)
				}
			}
		}
		b := s.ips(from)
		if len(f.From) == 0 {
			b = append(b, s.load.clientIPs()...) // isolated from everyone
		}
		s.net.Partition(s.ips(f.Nodes), b)
		s.cluster.Partition(f.Nodes, from)
	case FaultHeal:
		s.net.Heal()
		s.cluster.Heal()
	case FaultSlowDisk:
		sn.cost.setSlow(f.Factor)
	case FaultStallDisk:
		sn.cost.stall(f.For.D())
	case FaultPowerLoss:
		return s.powerLoss(sn)
	case FaultBackup:
		return s.backup(sn)
	case FaultLossyLink:
		link := s.sc.Link.config()
		link.LossRate = f.Loss
		a := s.byName[f.Nodes[0]].ip
		if len(f.Nodes) == 2 {
			s.net.SetLink(a, s.byName[f.Nodes[1]].ip, link)
			break
		}
		var others []string
		for _, other := range s.nodes {
			if other.ip != a {
				others = append(others, other.ip)
			}
		}
		for _, b := range append(others, s.load.clientIPs()...) {
			s.net.SetLink(a, b, link)
		}
	case FaultSkewClock, FaultPause, FaultResume, FaultSlowLink, FaultStallLink, FaultRestoreLink:
		return s.applyTimeFault(f)
	default:
		return errors.New("sim: unknown fault " + f.Action)
	}
	return nil
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sampleTick runs on the driver every sampleEvery: it records how many
// entries live nodes find under-replicated (rebuild progress) and moves
// the progress bar.
func (s *simulation) sampleTick() {
	at := s.sinceLoad()
	if at > s.sc.Duration.D()+s.sc.Drain.D() {
		return
	}
	s.mu.Lock()
	var under int64
	for _, sn := range s.nodes {
		if sn.node != nil {
			under += sn.node.UnderReplicated()
		}
	}
	s.samples = append(s.samples, sample{at: at, under: under})
	s.mu.Unlock()
	s.prog.update(at, s)
	s.net.AfterFunc(sampleEvery, "sampler", s.sampleTick)
}

// accepted counts the 250s so far (for the progress bar).
func (s *simulation) accepted() int {
	g := s.load
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.accepted
}
