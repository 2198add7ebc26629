package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"mailarray/node/fault"
	"mailarray/sim"
)

// baseScenario is the array every cell runs: four nodes, R=2 W=2, three
// virtual seconds of load with POP3 readers, then a long quiet drain.
// Timeline (virtual time since the load starts):
//
//	0-3 s    load (before-ack faults)
//	3 s      the load stops; during-rebuild cells crash n2
//	3-8 s    after-ack and during-rebuild faults
//	to 48 s  quiet: commits, anti-entropy, rebuild and pending resolution
//	         (node Tuning.PendingTimeout is 30 s) settle, then the checker
//
// DNS answers rotate (roundrobin) and senders re-resolve every second,
// which spreads the mail over every node, so that every node holds copies
// to rebuild. The load.query cells switch to p2c, which makes the nodes
// query each other's load. Detection is
// fast so that rebuild starts within the fault window.
const baseScenario = `
name: chaos
seed: 1
duration: 3s
drain: 45s
mailboxes: 60
replicas: 2
write_quorum: 2
dns_strategy: roundrobin
dns_ttl: 1s
membership: {detect_min: 500ms, detect_max: 1s, rejoin_min: 1s, rejoin_max: 2s}
nodes:
  - {name: n1}
  - {name: n2, disk_fsync: 2ms}
  - {name: n3}
  - {name: n4, cpu_cores: 1}
load:
  senders: 8
  arrival: poisson
  rate_per_sec: 80
  size: {dist: lognormal, median_bytes: 2048, sigma: 0.8, max_bytes: 65536}
  zipf_s: 1.2
  readers: 3
  read_interval: 1s
  read_max: 1
  smtp_timeout: 5s
`

// Phase is when a cell's faults are active, and the schedule that makes
// the phase happen.
type Phase struct {
	Name   string
	Doc    string
	Window Window
	// Faults are scenario fault lines (YAML flow mappings).
	Faults []string
}

// Phases lists the phases of the matrix, in order.
func Phases() []Phase {
	return []Phase{
		{Name: "before-ack", Doc: "while the load runs: faults hit transactions before their 250",
			Window: Window{0, 3 * time.Second}},
		{Name: "after-ack", Doc: "after the load stops: commits, pushes, anti-entropy and readers' deletions of acknowledged mail",
			Window: Window{3 * time.Second, 8 * time.Second}},
		{Name: "during-rebuild", Doc: "n2 crashes as the load stops (never restarts); faults hit the rebuild of its copies",
			Window: Window{3 * time.Second, 8 * time.Second},
			Faults: []string{"{at: 3s, action: crash, node: n2}"}},
	}
}

// Mixes are the mixed cells: several failpoints at once. The first two
// fail every failpoint but load.query at a low rate under a crash or a
// partition; commit-path fails the steps between a message's arrival and
// its commit often, where the acknowledgement protocol is decided.
// load.query needs a strategy that queries load, and runs that query load
// do not yet replay exactly from their seed (node Load().FreeDiskBytes
// reads the real filesystem); the mixes must replay.
func Mixes() []Cell {
	all := slices.DeleteFunc(failpointNames(), func(n string) bool { return n == string(fault.LoadQuery) })
	return []Cell{
		{Group: "mix", Name: "crash-restart", Doc: "n3 crashes under load and restarts with its data",
			Targets: all, Probability: mixProbability, Window: Window{0, 7 * time.Second},
			Faults: []string{"{at: 1s, action: crash, node: n3}", "{at: 4s, action: restart, node: n3}"}},
		{Group: "mix", Name: "partition", Doc: "n1 is cut off from nodes and clients under load, then healed",
			Targets: all, Probability: mixProbability, Window: Window{0, 7 * time.Second},
			Faults: []string{"{at: 1s, action: partition, nodes: [n1]}", "{at: 3s, action: heal}"}},
		{Group: "mix", Name: "commit-path", Doc: "no crash; the copy writes, their acknowledgements and the commits fail often",
			Targets:     names(fault.StoreWrite, fault.StoreSync, fault.MirrorSend, fault.MirrorAck, fault.CatalogApply),
			Probability: commitPathProbability, Window: Window{0, 3 * time.Second}},
	}
}

// names returns the points' names, as cells and plans take them.
func names(ps ...fault.Point) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}

// loadStrategy is the DNS strategy of cells that fail load.query: one
// that queries the nodes' load (strategy.Info.UsesLoad).
const loadStrategy = "p2c"

// Fault rates: a marker's first call in the window always fails, later
// ones with this probability.
const (
	cellProbability       = 0.2
	mixProbability        = 0.05
	commitPathProbability = 0.3
)

// Cell is one entry of the fault matrix: which failpoints fail, when, and
// under which schedule.
type Cell struct {
	// Group and Name name the cell: failpoint and phase, or "mix" and
	// schedule. Test names are TestSimChaos/<Group>/<Name>/seed=<N>.
	Group, Name string
	Doc         string
	Targets     []string // failpoints that fail
	Window      Window
	Probability float64
	Faults      []string // scenario fault lines
	// Drain and SMTPTimeout, when not zero, replace the base scenario's
	// (a cell whose faults last longer than its drain, or that must let a
	// slow 250 reach the client).
	Drain, SMTPTimeout time.Duration
	// Seeds, when not zero, is the cell's seed count in make chaos (cells
	// with long virtual runs); CHAOS_SEEDS (the soak) overrides it.
	Seeds int
	// Nodes, when not zero, keeps only the base scenario's first Nodes
	// nodes: a cell that must bring the array below R live storage nodes
	// with faults on all but one.
	Nodes int
	// Exposes names the bug the cell found on code without its fix (it
	// must pass now: a regression would show here first).
	Exposes string
}

// ID is "<group>/<name>".
func (c Cell) ID() string { return c.Group + "/" + c.Name }

// Scenario is the cell's scenario with seed.
func (c Cell) Scenario(seed uint64) (sim.Scenario, error) {
	y := baseScenario
	if len(c.Faults) > 0 {
		y += "faults:\n"
		for _, f := range c.Faults {
			y += "  - " + f + "\n"
		}
	}
	sc, err := sim.ParseScenario([]byte(y))
	if err != nil {
		return sc, fmt.Errorf("chaos: cell %s: %w", c.ID(), err)
	}
	sc.Name = "chaos-" + strings.NewReplacer("/", "-", ".", "-").Replace(c.ID())
	sc.Seed = seed
	if c.Drain > 0 {
		sc.Drain = sim.Duration(c.Drain)
	}
	if c.SMTPTimeout > 0 {
		sc.Load.SMTPTimeout = sim.Duration(c.SMTPTimeout)
	}
	if c.Nodes > 0 {
		if c.Nodes > len(sc.Nodes) {
			return sc, fmt.Errorf("chaos: cell %s: %d nodes, the base scenario has %d", c.ID(), c.Nodes, len(sc.Nodes))
		}
		sc.Nodes = sc.Nodes[:c.Nodes]
	}
	tweakScenario(c, &sc)
	if err := sc.Validate(); err != nil {
		return sc, fmt.Errorf("chaos: cell %s: %w", c.ID(), err)
	}
	if slices.Contains(c.Targets, string(fault.LoadQuery)) {
		sc.DNSStrategy = loadStrategy
	}
	return sc, nil
}

// Matrix lists every cell: each failpoint in each phase where it is
// reached, then the mixes.
func Matrix() []Cell {
	var out []Cell
	for _, fp := range Failpoints() {
		for _, ph := range Phases() {
			if _, no := fp.Unreached[ph.Name]; no {
				continue
			}
			out = append(out, Cell{Group: string(fp.Name), Name: ph.Name, Doc: ph.Doc, Targets: names(fp.Name),
				Window: ph.Window, Probability: cellProbability, Faults: ph.Faults})
		}
	}
	out = append(out, Mixes()...)
	out = append(out, TimeCells()...)
	out = append(out, DiskCells()...)
	out = append(out, RingCells()...)
	return out
}

// The bugs the disk cells found (issue 16), all fixed: each cell guards
// against its return.
const (
	bug1 = "issue 16 bug 1: 250, then deleted (stalled listener write outlives PendingTimeout)"
	bug2 = "issue 16 bug 2: phantom holders after a restored or empty disk"
	bug7 = "acknowledged mail deleted on a restored listener's word that it has no copy (make soak-real lost 6); and a lease of a node that restarted faster than failure detection"
)

// diskSeeds is the disk cells' seed count in make chaos: their runs are
// longer, and the soak (CHAOS_SEEDS) runs more.
const diskSeeds = 3

// DiskCells are the disk faults of the simulator (sim/disk.go): no
// failpoint, the fault schedule alone. Their Exposes says which bug of
// issue 16 each is expected to find on code without its fix.
func DiskCells() []Cell {
	return []Cell{
		{Group: "disk", Name: "stall-listener", Seeds: diskSeeds, Exposes: bug1,
			Doc:    "n2's disk stalls 40 s (longer than PendingTimeout, 30 s) under load; clients wait up to 90 s for the 250",
			Faults: []string{"{at: 1s, action: stall_disk, node: n2, for: 40s}"},
			Drain:  75 * time.Second, SMTPTimeout: 90 * time.Second},
		{Group: "disk", Name: "power-loss", Seeds: diskSeeds,
			Doc: "n3 (its disk slowed x20) loses power under load, losing its unsynced writes, and restarts",
			Faults: []string{"{at: 0s, action: slow_disk, node: n3, factor: 20}", "{at: 1500ms, action: power_loss, node: n3}",
				"{at: 4s, action: slow_disk, node: n3, factor: 1}", "{at: 4s, action: restart, node: n3}"}},
		{Group: "disk", Name: "restore-backup", Seeds: diskSeeds, Exposes: bug2,
			Doc: "n2 is backed up early in the load, crashes as the load stops and restarts from the backup before the others declare it failed",
			Faults: []string{"{at: 500ms, action: backup, node: n2}", "{at: 3s, action: crash, node: n2}",
				"{at: 3200ms, action: restart, node: n2, disk: backup}"}},
		{Group: "disk", Name: "restore-listener", Seeds: diskSeeds, Exposes: bug7,
			Doc: "n2 is backed up early, crashes under load right after acknowledging messages and restarts from the backup before the others declare it failed",
			Faults: []string{"{at: 0s, action: slow_disk, node: n2, factor: 20}", "{at: 500ms, action: backup, node: n2}",
				"{at: 2s, action: crash, node: n2}", "{at: 2050ms, action: slow_disk, node: n2, factor: 1}",
				"{at: 2050ms, action: restart, node: n2, disk: backup}"}},
		{Group: "disk", Name: "empty-disk", Seeds: diskSeeds, Exposes: bug2,
			Doc:    "n2 crashes under load and restarts with an empty disk before the others declare it failed",
			Faults: []string{"{at: 2s, action: crash, node: n2}", "{at: 2200ms, action: restart, node: n2, disk: empty}"}},
	}
}
