package sim

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"mailarray/node/strategy"
	"mailarray/sim/simnet"
)

// Scenario is one simulated run, read from scenarios/<name>.yaml: the
// cluster (nodes and their hardware), the network, the load and the fault
// schedule. Keys are snake_case with units last; durations are Go duration
// strings. docs/bench.md ("The scenario file") documents every key; Validate fills the
// defaults and names the key at fault.
type Scenario struct {
	Name     string   `yaml:"name" json:"name"`
	Seed     uint64   `yaml:"seed" json:"seed"`
	Duration Duration `yaml:"duration" json:"duration"`
	// Drain runs after the load stops, so that commits, pushes and rebuild
	// finish before the end state is judged.
	Drain Duration `yaml:"drain" json:"drain"`

	Domain    string `yaml:"domain" json:"domain"`
	Mailboxes int    `yaml:"mailboxes" json:"mailboxes"`

	Replicas          int      `yaml:"replicas" json:"replicas"`
	WriteQuorum       int      `yaml:"write_quorum" json:"write_quorum"`
	DNSStrategy       string   `yaml:"dns_strategy" json:"dns_strategy"`
	PlacementStrategy string   `yaml:"placement_strategy" json:"placement_strategy"`
	DNSTTL            Duration `yaml:"dns_ttl" json:"dns_ttl"`
	// TargetP99 is the latency objective a saturation search holds the
	// load to; the report says whether the run met it. 0: none.
	TargetP99 Duration `yaml:"target_p99" json:"target_p99"`
	// RebalanceAfterReturn sets the nodes' tuning of the same name (the
	// rebalance after a failed node returns). 0: the node's default (5
	// minutes: in a run of a few minutes, never).
	RebalanceAfterReturn Duration `yaml:"rebalance_after_return" json:"rebalance_after_return,omitempty"`

	Membership MembershipSpec `yaml:"membership" json:"membership"`
	Link       LinkSpec       `yaml:"link" json:"link"`
	// HostCPUs, when set, is the one machine every node runs on (the
	// truth array's containers): its cores bound the nodes' CPUs together,
	// and HostCPUPerMsg of their time goes, for each message offered, to
	// what no node pays for: the load generator and the kernel's work
	// between the containers (sim/host.go). 0: each node's hardware is
	// its own, and the load generator costs nothing.
	HostCPUs      int         `yaml:"host_cpus,omitempty" json:"host_cpus,omitempty"`
	HostCPUPerMsg Duration    `yaml:"host_cpu_per_msg,omitempty" json:"host_cpu_per_msg,omitempty"`
	Nodes         []NodeSpec  `yaml:"nodes" json:"nodes"`
	Load          LoadSpec    `yaml:"load" json:"load"`
	Faults        []FaultSpec `yaml:"faults" json:"faults"`

	// CostProfile names a measured cost profile (profiles/<name>.yaml
	// beside the scenario file, written by make calibrate): it fills the
	// node cost fields a node leaves unset and the link when none is set
	// (profile.go). Empty: the modeled defaults.
	CostProfile string `yaml:"cost_profile" json:"cost_profile,omitempty"`
	// profile is the one CostProfile names, once attached (UseProfile).
	profile *CostProfile
}

// MembershipSpec overrides the modeled membership's delays (defaults:
// DefaultMembershipConfig, calibrated against real serf).
type MembershipSpec struct {
	DetectMin Duration `yaml:"detect_min" json:"detect_min"`
	DetectMax Duration `yaml:"detect_max" json:"detect_max"`
	GossipMin Duration `yaml:"gossip_min" json:"gossip_min"`
	GossipMax Duration `yaml:"gossip_max" json:"gossip_max"`
	RejoinMin Duration `yaml:"rejoin_min" json:"rejoin_min"`
	RejoinMax Duration `yaml:"rejoin_max" json:"rejoin_max"`
}

// LinkSpec is the model of every path between two hosts.
type LinkSpec struct {
	Latency     Duration `yaml:"latency" json:"latency"`
	Jitter      Duration `yaml:"jitter" json:"jitter"`
	BytesPerSec int64    `yaml:"bytes_per_sec" json:"bytes_per_sec"`
	Loss        float64  `yaml:"loss" json:"loss"`
}

// NodeSpec is one node and its hardware. Nodes get the addresses
// 10.0.0.1, 10.0.0.2, ... in list order.
type NodeSpec struct {
	Name string `yaml:"name" json:"name"`
	// CPUCores is how many messages the node processes at once.
	CPUCores int `yaml:"cpu_cores" json:"cpu_cores"`
	// CPUQuota, when set, is the node's CPU as a bandwidth quota in cores,
	// as a container's (docker --cpus 0.4: a CFS quota of 40 ms of CPU per
	// 100 ms period, spread over whichever host cores run its threads).
	// The node then runs on max(2, ceil(quota)) CPUs unless cpu_cores
	// says otherwise (at least ceil(quota)): Go's GOMAXPROCS in a container
	// follows the quota the same way, so that even a 0.2 node runs two
	// messages at once, both spending its budget; each CPU runs at full speed
	// until the period's quota is spent and then throttled until the next
	// period (sim/quota.go). 0: cpu_cores whole CPUs, never throttled.
	CPUQuota float64 `yaml:"cpu_quota" json:"cpu_quota,omitempty"`
	// CPUPerMsg and CPUPerKiB make the CPU time of handling one message
	// (an SMTP delivery, a peer copy, a POP3 RETR): per_msg + size/KiB *
	// per_kib.
	CPUPerMsg Duration `yaml:"cpu_per_msg" json:"cpu_per_msg"`
	CPUPerKiB Duration `yaml:"cpu_per_kib" json:"cpu_per_kib"`
	// CPUPerMsgBusy, when set, replaces CPUPerMsg for a message that
	// arrives while the node's CPUs are already at work (a job running,
	// throttled or queued): its runtime is awake, no thread is woken for
	// it, and its commits and pushes ride with others (sim/cost.go).
	// CPUPerMsg is then what a message costs a node that was idle. 0 (the
	// default): CPUPerMsg whatever the node is doing.
	CPUPerMsgBusy Duration `yaml:"cpu_per_msg_busy,omitempty" json:"cpu_per_msg_busy,omitempty"`
	// CPUBackground is the share of one CPU the running node burns
	// whatever its load (the runtime, timers, gossip: sim/background.go),
	// served by the node's CPUs before the messages queued behind it.
	// 0 (the default): none, every CPU-second is a message's.
	CPUBackground float64 `yaml:"cpu_background" json:"cpu_background,omitempty"`
	// CPUIdle is the share of one CPU the running node burns between
	// messages (the runtime waking, spinning for work and parking its
	// threads: sim/background.go), out of the capacity its messages leave
	// unused: a busy node burns none, and no message waits for it.
	// 0 (the default): none.
	CPUIdle float64 `yaml:"cpu_idle,omitempty" json:"cpu_idle,omitempty"`
	// DiskFsync is the latency of one sync; DiskBytesPerSec the write
	// bandwidth. Writes that arrive during a sync share the next one.
	DiskFsync       Duration `yaml:"disk_fsync" json:"disk_fsync"`
	DiskBytesPerSec int64    `yaml:"disk_bytes_per_sec" json:"disk_bytes_per_sec"`
	// Weight is the node's capacity weight tag (weighted, size and content
	// strategies read it).
	Weight int `yaml:"weight" json:"weight"`
	// Spare nodes are not started; an add_node fault starts them.
	Spare bool `yaml:"spare" json:"spare"`
	// ClockOffset and ClockDriftPPM skew the node's wall clock from the
	// start, as a skew_clock fault at time 0 would: the clock reads
	// ClockOffset ahead of true time and gains ClockDriftPPM microseconds
	// per second. Monotonic time (durations, timeouts) is never skewed.
	ClockOffset   Duration `yaml:"clock_offset" json:"clock_offset,omitempty"`
	ClockDriftPPM float64  `yaml:"clock_drift_ppm" json:"clock_drift_ppm,omitempty"`
}

// goMinProcs is the fewest threads Go runs a quota-limited process on:
// GOMAXPROCS defaults to max(2, ceil(quota)), capped by the host's CPUs
// (runtime/cgroup_linux.go, Go 1.25 on). A node with a cpu_quota of 0.2
// still runs two messages at once, both spending its quota.
const goMinProcs = 2

// minCPUQuota is the smallest cpu_quota (docker --cpus accepts 0.01).
const minCPUQuota = 0.01

// CPUCapacity is the CPU-seconds per second the node can do: its quota,
// or its whole cores.
func (nd NodeSpec) CPUCapacity() float64 {
	if nd.CPUQuota > 0 {
		return nd.CPUQuota
	}
	return float64(nd.CPUCores)
}

// Arrival processes of the load.
const (
	ArrivalConstant = "constant"
	ArrivalPoisson  = "poisson"
	ArrivalBursty   = "bursty"
)

// Size distributions of the load.
const (
	SizeFixed     = "fixed"
	SizeLognormal = "lognormal"
)

// LoadSpec is the load generator: SMTP senders and POP3 readers.
type LoadSpec struct {
	// Senders is the number of concurrent SMTP clients (each its own host).
	Senders int `yaml:"senders" json:"senders"`
	// Arrival is constant, poisson or bursty (Poisson whose rate is
	// RatePerSec*BurstFactor during BurstOn, then RatePerSec during
	// BurstOff, repeating).
	Arrival     string   `yaml:"arrival" json:"arrival"`
	RatePerSec  float64  `yaml:"rate_per_sec" json:"rate_per_sec"`
	BurstFactor float64  `yaml:"burst_factor" json:"burst_factor"`
	BurstOn     Duration `yaml:"burst_on" json:"burst_on"`
	BurstOff    Duration `yaml:"burst_off" json:"burst_off"`
	// MessagesPerConnection is how many transactions a sender runs on one
	// SMTP connection (when it has that many queued) before QUIT.
	MessagesPerConnection int `yaml:"messages_per_connection" json:"messages_per_connection"`
	// MaxBacklog bounds arrivals waiting for a sender; beyond it they are
	// counted as client_dropped.
	MaxBacklog int `yaml:"max_backlog" json:"max_backlog"`
	// SMTPTimeout bounds each SMTP command and the connect.
	SMTPTimeout Duration `yaml:"smtp_timeout" json:"smtp_timeout"`
	Size        SizeSpec `yaml:"size" json:"size"`
	// ZipfS is the exponent of recipient popularity, in (1, 10]; negative
	// means uniform; 0 takes the default.
	ZipfS          float64 `yaml:"zipf_s" json:"zipf_s"`
	UrgentFraction float64 `yaml:"urgent_fraction" json:"urgent_fraction"`
	// Readers POP3 clients each log in every ~ReadInterval (exponential),
	// to a mailbox drawn like recipients, and RETR+DELE up to ReadMax
	// messages.
	Readers      int      `yaml:"readers" json:"readers"`
	ReadInterval Duration `yaml:"read_interval" json:"read_interval"`
	ReadMax      int      `yaml:"read_max" json:"read_max"`
}

// SizeSpec is the distribution of message sizes (whole message, headers
// included).
type SizeSpec struct {
	Dist        string  `yaml:"dist" json:"dist"`
	MedianBytes int     `yaml:"median_bytes" json:"median_bytes"`
	Sigma       float64 `yaml:"sigma" json:"sigma"`
	MinBytes    int     `yaml:"min_bytes" json:"min_bytes"`
	MaxBytes    int     `yaml:"max_bytes" json:"max_bytes"`
}

// Fault actions.
const (
	FaultCrash      = "crash"
	FaultRestart    = "restart"
	FaultPartition  = "partition"
	FaultHeal       = "heal"
	FaultSlowDisk   = "slow_disk"
	FaultLossyLink  = "lossy_link"
	FaultAddNode    = "add_node"
	FaultRemoveNode = "remove_node"
	// Disk faults (disk.go).
	FaultStallDisk = "stall_disk"
	FaultPowerLoss = "power_loss"
	FaultBackup    = "backup"
)

// FaultActions lists the fault actions, in documentation order.
var FaultActions = append([]string{FaultCrash, FaultRestart, FaultPartition, FaultHeal, FaultSlowDisk, FaultLossyLink, FaultAddNode, FaultRemoveNode,
	FaultStallDisk, FaultPowerLoss, FaultBackup},
	timeFaultActions...)

// FaultSpec is one fault, applied at virtual time At. Faults at the same
// time apply in list order.
type FaultSpec struct {
	At     Duration `yaml:"at" json:"at"`
	Action string   `yaml:"action" json:"action"`
	// Node names the node of crash, restart, slow_disk, add_node,
	// remove_node, stall_disk, power_loss, backup.
	Node string `yaml:"node,omitempty" json:"node,omitempty"`
	// Nodes and From are the two sides of a partition (From empty: every
	// other node and client), or the one or two ends of a lossy_link.
	Nodes []string `yaml:"nodes,omitempty" json:"nodes,omitempty"`
	From  []string `yaml:"from,omitempty" json:"from,omitempty"`
	// Factor slows a disk (fsync x factor, bandwidth / factor; 1 restores).
	Factor float64 `yaml:"factor,omitempty" json:"factor,omitempty"`
	// Loss is the lossy link's loss probability (0 restores).
	Loss float64 `yaml:"loss,omitempty" json:"loss,omitempty"`
	// Time faults (timefaults.go). Offset and DriftPPM set a skew_clock:
	// from the fault on, the node's wall clock reads Offset ahead of the
	// true time (negative: behind) and gains DriftPPM microseconds per
	// second (negative: loses).
	Offset   Duration `yaml:"offset,omitempty" json:"offset,omitempty"`
	DriftPPM float64  `yaml:"drift_ppm,omitempty" json:"drift_ppm,omitempty"`
	// Latency is a slow_link's one-way latency (jitter and bandwidth stay
	// the scenario's).
	Latency Duration `yaml:"latency,omitempty" json:"latency,omitempty"`
	// Oneway limits a slow_link, stall_link or restore_link to the
	// direction from Nodes[0] (to Nodes[1], or to every other host).
	Oneway bool `yaml:"oneway,omitempty" json:"oneway,omitempty"`
	// For ends a pause (resume) or a slow_link or stall_link
	// (restore_link) this long after it starts; 0: a later resume or
	// restore_link ends it. For a stall_disk it is how long the node's
	// disk freezes: no sync completes until it ends (up to maxStall).
	For Duration `yaml:"for,omitempty" json:"for,omitempty"`
	// Disk is what a restart boots from: empty (the node's own disk as the
	// crash left it), "backup" (the copy the node's last earlier backup
	// fault took) or "empty" (a new disk).
	Disk string `yaml:"disk,omitempty" json:"disk,omitempty"`
}

// maxStall bounds a stall_disk.
const maxStall = Duration(time.Hour)

// Limits of a scenario.
const (
	maxNodes         = 250 // 10.0.0.1 .. 10.0.0.250
	maxSenders       = 4096
	maxReaders       = 250
	maxMailboxes     = 1_000_000
	maxMessageBytes  = 64 << 20
	maxRatePerSec    = 1e6
	defaultSeed      = 1
	defaultDrain     = 10 * time.Second
	defaultDomain    = "example.com"
	defaultMailboxes = 100
)

var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// LoadScenario reads and validates a scenario file.
func LoadScenario(path string) (Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Scenario{}, fmt.Errorf("sim: scenario: %w", err)
	}
	sc, err := parseScenario(b, filepath.Dir(path))
	if err != nil {
		return Scenario{}, fmt.Errorf("%s: %w", path, err)
	}
	return sc, nil
}

// ParseScenario parses YAML (unknown keys are errors) and validates it. It
// reads no files: a scenario that names a cost profile fails validation
// (LoadScenario finds the profile beside the file; or parse without
// validating, UseProfile, Validate).
func ParseScenario(b []byte) (Scenario, error) { return parseScenario(b, "") }

// parseScenario parses and validates b, with the cost profile it names
// from dir/profiles ("": none).
func parseScenario(b []byte, dir string) (Scenario, error) {
	var sc Scenario
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&sc); err != nil {
		return Scenario{}, fmt.Errorf("sim: scenario: %w", err)
	}
	if dir != "" {
		if err := sc.loadProfileFor(dir); err != nil {
			return Scenario{}, err
		}
	}
	if err := sc.Validate(); err != nil {
		return Scenario{}, err
	}
	return sc, nil
}

// Validate fills defaults and reports every problem, each naming its key.
func (sc *Scenario) Validate() error {
	var errs []error
	bad := func(key, f string, a ...any) {
		errs = append(errs, fmt.Errorf("sim: scenario: %s: "+f, append([]any{key}, a...)...))
	}
	if !labelRE.MatchString(sc.Name) {
		bad("name", "%q must be a lowercase label (a-z, 0-9, '-')", sc.Name)
	}
	if sc.Seed == 0 {
		sc.Seed = defaultSeed
	}
	if sc.Duration <= 0 {
		bad("duration", "must be > 0")
	}
	if sc.Drain == 0 {
		sc.Drain = Duration(defaultDrain)
	}
	if sc.Drain < 0 {
		bad("drain", "must be >= 0")
	}
	if sc.Domain == "" {
		sc.Domain = defaultDomain
	}
	sc.Domain = strings.ToLower(strings.TrimSuffix(sc.Domain, "."))
	if !strings.Contains(sc.Domain, ".") {
		bad("domain", "%q is not a domain name", sc.Domain)
	}
	if sc.Mailboxes == 0 {
		sc.Mailboxes = defaultMailboxes
	}
	if sc.Mailboxes < 1 || sc.Mailboxes > maxMailboxes {
		bad("mailboxes", "%d must be 1..%d", sc.Mailboxes, maxMailboxes)
	}
	if sc.Replicas == 0 {
		sc.Replicas = 2
	}
	if sc.WriteQuorum == 0 {
		sc.WriteQuorum = sc.Replicas
	}
	if sc.Replicas < 1 || sc.Replicas > 16 {
		bad("replicas", "%d must be 1..16", sc.Replicas)
	}
	if sc.WriteQuorum < 1 || sc.WriteQuorum > sc.Replicas {
		bad("write_quorum", "%d must be 1..replicas (%d)", sc.WriteQuorum, sc.Replicas)
	}
	if sc.DNSStrategy == "" {
		sc.DNSStrategy = "roundrobin"
	}
	if s, err := strategy.Lookup(sc.DNSStrategy); err != nil || !s.DNS {
		bad("dns_strategy", "%q is not a DNS strategy of node/strategy", sc.DNSStrategy)
	}
	if sc.PlacementStrategy == "" {
		sc.PlacementStrategy = "local"
	}
	if s, err := strategy.Lookup(sc.PlacementStrategy); err != nil || !s.Placement {
		bad("placement_strategy", "%q is not a placement strategy of node/strategy", sc.PlacementStrategy)
	}
	if sc.DNSTTL == 0 {
		sc.DNSTTL = Duration(5 * time.Second)
	}
	if sc.DNSTTL < Duration(time.Second) {
		bad("dns_ttl", "%v must be >= 1s", sc.DNSTTL)
	}
	if sc.RebalanceAfterReturn < 0 {
		bad("rebalance_after_return", "must be >= 0")
	}
	if sc.TargetP99 < 0 {
		bad("target_p99", "must be >= 0")
	}
	if sc.CostProfile != "" && !labelRE.MatchString(sc.CostProfile) {
		bad("cost_profile", "%q must be a lowercase label (a-z, 0-9, '-')", sc.CostProfile)
	} else {
		// Before the defaults: they fill only what the profile leaves.
		sc.applyProfile(bad)
	}
	sc.Membership.validate(bad)
	sc.Link.validate(bad)
	sc.validateNodes(bad)
	switch {
	case sc.HostCPUs < 0 || sc.HostCPUs > 1024:
		bad("host_cpus", "%d must be 0 (no shared host) or 1..1024", sc.HostCPUs)
	case sc.HostCPUPerMsg < 0:
		bad("host_cpu_per_msg", "must be >= 0")
	case sc.HostCPUPerMsg > 0 && sc.HostCPUs == 0:
		bad("host_cpu_per_msg", "needs host_cpus: without a host nothing runs it")
	}
	sc.Load.validate(bad, sc.Mailboxes)
	sc.validateFaults(bad)
	return errors.Join(errs...)
}

func (m *MembershipSpec) validate(bad func(key, f string, a ...any)) {
	d := DefaultMembershipConfig()
	fill := func(v *Duration, def time.Duration) {
		if *v == 0 {
			*v = Duration(def)
		}
	}
	fill(&m.DetectMin, d.DetectMin)
	fill(&m.DetectMax, d.DetectMax)
	fill(&m.GossipMin, d.GossipMin)
	fill(&m.GossipMax, d.GossipMax)
	fill(&m.RejoinMin, d.RejoinMin)
	fill(&m.RejoinMax, d.RejoinMax)
	if m.DetectMin < 0 || m.DetectMax < m.DetectMin {
		bad("membership.detect_min", "[%v, %v] is not a range >= 0", m.DetectMin, m.DetectMax)
	}
	if m.GossipMin < 0 || m.GossipMax < m.GossipMin {
		bad("membership.gossip_min", "[%v, %v] is not a range >= 0", m.GossipMin, m.GossipMax)
	}
	if m.RejoinMin < 0 || m.RejoinMax < m.RejoinMin {
		bad("membership.rejoin_min", "[%v, %v] is not a range >= 0", m.RejoinMin, m.RejoinMax)
	}
}

func (l *LinkSpec) validate(bad func(key, f string, a ...any)) {
	d := simnet.DefaultNetConfig().Link
	if l.Latency == 0 && l.Jitter == 0 && l.BytesPerSec == 0 {
		l.Latency, l.Jitter, l.BytesPerSec = Duration(d.Latency), Duration(d.Jitter), d.BandwidthBytesPerSec
	}
	if err := l.config().Validate(); err != nil {
		bad("link", "%v", err)
	}
}

func (l LinkSpec) config() simnet.LinkConfig {
	return simnet.LinkConfig{Latency: time.Duration(l.Latency), Jitter: time.Duration(l.Jitter), BandwidthBytesPerSec: l.BytesPerSec, LossRate: l.Loss}
}

func (sc *Scenario) validateNodes(bad func(key, f string, a ...any)) {
	if len(sc.Nodes) == 0 || len(sc.Nodes) > maxNodes {
		bad("nodes", "%d nodes, want 1..%d", len(sc.Nodes), maxNodes)
	}
	seen := map[string]bool{}
	initial := 0
	for i := range sc.Nodes {
		nd := &sc.Nodes[i]
		key := fmt.Sprintf("nodes[%d]", i)
		if !labelRE.MatchString(nd.Name) {
			bad(key+".name", "%q must be a lowercase DNS label", nd.Name)
		}
		if seen[nd.Name] {
			bad(key+".name", "%q listed twice", nd.Name)
		}
		seen[nd.Name] = true
		if !nd.Spare {
			initial++
		}
		if nd.CPUQuota > 0 {
			whole := int(math.Ceil(nd.CPUQuota))
			switch {
			case nd.CPUCores == 0:
				nd.CPUCores = max(whole, goMinProcs)
			case nd.CPUCores < whole:
				bad(key+".cpu_cores", "%d: a cpu_quota of %v needs at least ceil(quota) = %d CPUs", nd.CPUCores, nd.CPUQuota, whole)
			}
		}
		if nd.CPUCores == 0 {
			nd.CPUCores = 2
		}
		if nd.CPUPerMsg == 0 {
			nd.CPUPerMsg = Duration(100 * time.Microsecond)
		}
		if nd.CPUPerKiB == 0 {
			nd.CPUPerKiB = Duration(5 * time.Microsecond)
		}
		if nd.DiskFsync == 0 {
			nd.DiskFsync = Duration(time.Millisecond)
		}
		if nd.DiskBytesPerSec == 0 {
			nd.DiskBytesPerSec = 200_000_000
		}
		if nd.Weight == 0 {
			nd.Weight = 1
		}
		switch {
		case nd.CPUCores < 1 || nd.CPUCores > 1024:
			bad(key+".cpu_cores", "%d must be 1..1024", nd.CPUCores)
		case nd.CPUQuota < 0 || nd.CPUQuota > 1024 || math.IsNaN(nd.CPUQuota):
			bad(key+".cpu_quota", "%v must be 0 (whole cores) or in (0, 1024]", nd.CPUQuota)
		case nd.CPUQuota > 0 && nd.CPUQuota < minCPUQuota:
			bad(key+".cpu_quota", "%v is below %v (docker's smallest --cpus is 0.01)", nd.CPUQuota, minCPUQuota)
		case nd.CPUPerMsg < 0:
			bad(key+".cpu_per_msg", "must be >= 0")
		case nd.CPUPerKiB < 0:
			bad(key+".cpu_per_kib", "must be >= 0")
		case nd.CPUPerMsgBusy < 0:
			bad(key+".cpu_per_msg_busy", "must be >= 0 (0: cpu_per_msg)")
		case !(nd.CPUBackground >= 0 && nd.CPUBackground < 0.9*nd.CPUCapacity()):
			bad(key+".cpu_background", "%v must be in [0, 0.9 x the node's CPU capacity %v)", nd.CPUBackground, nd.CPUCapacity())
		case !(nd.CPUIdle >= 0 && nd.CPUIdle <= nd.CPUCapacity()):
			bad(key+".cpu_idle", "%v must be in [0, the node's CPU capacity %v]", nd.CPUIdle, nd.CPUCapacity())
		case nd.DiskFsync < 0:
			bad(key+".disk_fsync", "must be >= 0")
		case nd.DiskBytesPerSec < 1:
			bad(key+".disk_bytes_per_sec", "must be >= 1")
		case nd.Weight < 1 || nd.Weight > 1000:
			bad(key+".weight", "%d must be 1..1000", nd.Weight)
		}
		validateSkew(key+".clock_offset", nd.ClockOffset, nd.ClockDriftPPM, bad)
	}
	if len(sc.Nodes) > 0 && initial == 0 {
		bad("nodes", "every node is a spare: nothing would start")
	}
}

func (l *LoadSpec) validate(bad func(key, f string, a ...any), mailboxes int) {
	if l.Senders == 0 {
		l.Senders = 16
	}
	if l.Senders < 1 || l.Senders > maxSenders {
		bad("load.senders", "%d must be 1..%d", l.Senders, maxSenders)
	}
	if l.Arrival == "" {
		l.Arrival = ArrivalPoisson
	}
	switch l.Arrival {
	case ArrivalConstant, ArrivalPoisson:
	case ArrivalBursty:
		if l.BurstFactor == 0 {
			l.BurstFactor = 4
		}
		if l.BurstOn == 0 {
			l.BurstOn = Duration(2 * time.Second)
		}
		if l.BurstOff == 0 {
			l.BurstOff = Duration(8 * time.Second)
		}
		if !(l.BurstFactor > 0) || l.BurstOn <= 0 || l.BurstOff <= 0 {
			bad("load.burst_factor", "bursty needs burst_factor > 0, burst_on and burst_off > 0")
		}
	default:
		bad("load.arrival", "%q must be constant, poisson or bursty", l.Arrival)
	}
	if !(l.RatePerSec > 0 && l.RatePerSec <= maxRatePerSec) {
		bad("load.rate_per_sec", "%v must be in (0, %v]", l.RatePerSec, maxRatePerSec)
	}
	if l.MessagesPerConnection == 0 {
		l.MessagesPerConnection = 1
	}
	if l.MessagesPerConnection < 1 || l.MessagesPerConnection > 10000 {
		bad("load.messages_per_connection", "%d must be 1..10000", l.MessagesPerConnection)
	}
	if l.MaxBacklog == 0 {
		l.MaxBacklog = 10000
	}
	if l.MaxBacklog < 1 {
		bad("load.max_backlog", "must be >= 1")
	}
	if l.SMTPTimeout == 0 {
		l.SMTPTimeout = Duration(30 * time.Second)
	}
	if l.SMTPTimeout < Duration(time.Millisecond) {
		bad("load.smtp_timeout", "must be >= 1ms")
	}
	s := &l.Size
	if s.Dist == "" {
		s.Dist = SizeLognormal
	}
	if s.MedianBytes == 0 {
		s.MedianBytes = 4096
	}
	if s.Sigma == 0 && s.Dist == SizeLognormal {
		s.Sigma = 1
	}
	if s.MinBytes == 0 {
		s.MinBytes = min(512, s.MedianBytes)
	}
	if s.MaxBytes == 0 {
		s.MaxBytes = max(1<<20, s.MedianBytes)
	}
	switch {
	case s.Dist != SizeFixed && s.Dist != SizeLognormal:
		bad("load.size.dist", "%q must be fixed or lognormal", s.Dist)
	case s.MinBytes < minMessageBytes:
		bad("load.size.min_bytes", "%d must be >= %d (room for the headers)", s.MinBytes, minMessageBytes)
	case s.MaxBytes > maxMessageBytes:
		bad("load.size.max_bytes", "%d must be <= %d", s.MaxBytes, maxMessageBytes)
	case s.MedianBytes < s.MinBytes || s.MedianBytes > s.MaxBytes:
		bad("load.size.median_bytes", "%d must be within min_bytes..max_bytes (%d..%d)", s.MedianBytes, s.MinBytes, s.MaxBytes)
	case s.Sigma < 0 || math.IsNaN(s.Sigma) || s.Sigma > 5:
		bad("load.size.sigma", "%v must be 0..5", s.Sigma)
	}
	if l.ZipfS == 0 {
		l.ZipfS = 1.1
	}
	if (l.ZipfS > 0 && l.ZipfS <= 1) || l.ZipfS > 10 || math.IsNaN(l.ZipfS) {
		bad("load.zipf_s", "%v must be in (1, 10], or negative for uniform recipients", l.ZipfS)
	}
	if !(l.UrgentFraction >= 0 && l.UrgentFraction <= 1) {
		bad("load.urgent_fraction", "%v must be 0..1", l.UrgentFraction)
	}
	if l.Readers < 0 || l.Readers > maxReaders {
		bad("load.readers", "%d must be 0..%d", l.Readers, maxReaders)
	}
	if l.ReadInterval == 0 {
		l.ReadInterval = Duration(5 * time.Second)
	}
	if l.ReadInterval < Duration(time.Millisecond) {
		bad("load.read_interval", "must be >= 1ms")
	}
	if l.ReadMax == 0 {
		l.ReadMax = 20
	}
	if l.ReadMax < 1 {
		bad("load.read_max", "must be >= 1")
	}
	_ = mailboxes
}

func (sc *Scenario) validateFaults(bad func(key, f string, a ...any)) {
	names := map[string]bool{}
	for _, nd := range sc.Nodes {
		names[nd.Name] = true
	}
	node := func(key, name string) {
		if !names[name] {
			bad(key, "unknown node %q", name)
		}
	}
	for i := range sc.Faults {
		f := &sc.Faults[i]
		key := fmt.Sprintf("faults[%d]", i)
		if f.At < 0 {
			bad(key+".at", "must be >= 0")
		}
		if f.At > sc.Duration+sc.Drain {
			bad(key+".at", "%v is after the end of the run (%v)", f.At, sc.Duration+sc.Drain)
		}
		if f.For != 0 && f.Action != FaultStallDisk && !slices.Contains(timeFaultActions, f.Action) {
			bad(key+".for", "only a stall_disk, pause, slow_link or stall_link lasts for a time")
		}
		if f.Disk != DiskKeep && f.Action != FaultRestart {
			bad(key+".disk", "only a restart takes a disk")
		}
		switch f.Action {
		case FaultCrash, FaultAddNode, FaultRemoveNode, FaultPowerLoss, FaultBackup:
			node(key+".node", f.Node)
		case FaultRestart:
			node(key+".node", f.Node)
			if f.Disk != DiskKeep && f.Disk != DiskBackup && f.Disk != DiskEmpty {
				bad(key+".disk", "%q must be backup or empty (or absent: the node's own disk)", f.Disk)
			}
		case FaultStallDisk:
			node(key+".node", f.Node)
			if f.For <= 0 || f.For > maxStall {
				bad(key+".for", "%v must be in (0, %v]", f.For, maxStall)
			}
		case FaultSlowDisk:
			node(key+".node", f.Node)
			if !(f.Factor > 0) || f.Factor > 1e6 {
				bad(key+".factor", "%v must be in (0, 1e6]", f.Factor)
			}
		case FaultPartition:
			if len(f.Nodes) == 0 {
				bad(key+".nodes", "a partition needs at least one node")
			}
			for _, n := range append(slices.Clone(f.Nodes), f.From...) {
				node(key+".nodes", n)
			}
		case FaultHeal:
		case FaultSkewClock, FaultPause, FaultResume, FaultSlowLink, FaultStallLink, FaultRestoreLink:
			sc.validateTimeFault(key, f, node, bad)
		case FaultLossyLink:
			if len(f.Nodes) < 1 || len(f.Nodes) > 2 {
				bad(key+".nodes", "a lossy link names one or two nodes")
			}
			for _, n := range f.Nodes {
				node(key+".nodes", n)
			}
			if !(f.Loss >= 0 && f.Loss < 1) {
				bad(key+".loss", "%v must be in [0, 1)", f.Loss)
			}
		default:
			bad(key+".action", "%q is not one of %s", f.Action, strings.Join(FaultActions, ", "))
		}
	}
	// Stable by time: faults at the same time keep their list order.
	slices.SortStableFunc(sc.Faults, func(a, b FaultSpec) int {
		switch {
		case a.At < b.At:
			return -1
		case a.At > b.At:
			return 1
		}
		return 0
	})
	// A restart from a backup needs an earlier backup of that node.
	backedUp := map[string]bool{}
	for i, f := range sc.Faults {
		switch {
		case f.Action == FaultBackup:
			backedUp[f.Node] = true
		case f.Action == FaultRestart && f.Disk == DiskBackup && !backedUp[f.Node]:
			bad(fmt.Sprintf("faults[%d].disk", i), "no earlier backup of %s to restart from", f.Node)
		}
	}
}

// Duration is a time.Duration written as a Go duration string in YAML and
// JSON ("250ms").
type Duration time.Duration

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts a duration string ("1m30s").
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (like 250ms, 1m30s)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }
