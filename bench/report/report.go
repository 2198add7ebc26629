package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"mailarray/sim"
)

// Report is a scenario report as the simulator writes it
// (results/<name>.json, fields in docs/bench.md), or as bench-real writes
// it (Mode "real"): the simulator's own report type, its config read as
// written (Config: durations stay strings), and the mode. Unknown fields
// are ignored. sim.Report's methods (JSON) do not see Mode and Config.
type Report struct {
	// Mode is "real" for bench-real reports (wall-clock figures over real
	// sockets); empty for the simulator's.
	Mode string `json:"mode"`
	// Config stands in for sim.Report's (encoding/json takes the shallower
	// of two fields of one name).
	Config Config `json:"config"`
	sim.Report
}

// Real reports whether the report comes from bench-real.
func (r *Report) Real() bool { return r.Mode == ModeReal }

// ModeReal marks reports measured on real sockets in wall-clock time.
const ModeReal = "real"

// Config is the scenario as run (defaults filled). Durations stay strings
// ("60s"); Dur parses them.
type Config struct {
	Name              string      `json:"name"`
	Seed              uint64      `json:"seed"`
	Duration          string      `json:"duration"`
	Drain             string      `json:"drain"`
	Domain            string      `json:"domain"`
	Mailboxes         int         `json:"mailboxes"`
	Replicas          int         `json:"replicas"`
	WriteQuorum       int         `json:"write_quorum"`
	DNSStrategy       string      `json:"dns_strategy"`
	PlacementStrategy string      `json:"placement_strategy"`
	DNSTTL            string      `json:"dns_ttl"`
	TargetP99         string      `json:"target_p99"`
	Nodes             []NodeSpec  `json:"nodes"`
	Load              Load        `json:"load"`
	Faults            []FaultSpec `json:"faults"`
}

// NodeSpec is one node's modeled hardware.
type NodeSpec struct {
	Name            string `json:"name"`
	CPUCores        int    `json:"cpu_cores"`
	CPUPerMsg       string `json:"cpu_per_msg"`
	CPUPerKiB       string `json:"cpu_per_kib"`
	DiskFsync       string `json:"disk_fsync"`
	DiskBytesPerSec int64  `json:"disk_bytes_per_sec"`
	Weight          int    `json:"weight"`
	Spare           bool   `json:"spare"`
}

// Load is the scenario's load generator.
type Load struct {
	Senders               int     `json:"senders"`
	Arrival               string  `json:"arrival"`
	RatePerSec            float64 `json:"rate_per_sec"`
	BurstFactor           float64 `json:"burst_factor"`
	MessagesPerConnection int     `json:"messages_per_connection"`
	Size                  Size    `json:"size"`
	ZipfS                 float64 `json:"zipf_s"`
	UrgentFraction        float64 `json:"urgent_fraction"`
	Readers               int     `json:"readers"`
	ReadInterval          string  `json:"read_interval"`
	ReadMax               int     `json:"read_max"`
}

// Size is the message size distribution.
type Size struct {
	Dist        string  `json:"dist"`
	MedianBytes int     `json:"median_bytes"`
	Sigma       float64 `json:"sigma"`
	MinBytes    int     `json:"min_bytes"`
	MaxBytes    int     `json:"max_bytes"`
}

// FaultSpec is one scheduled fault.
type FaultSpec struct {
	At     string   `json:"at"`
	Action string   `json:"action"`
	Node   string   `json:"node"`
	Nodes  []string `json:"nodes"`
	From   []string `json:"from"`
	Factor float64  `json:"factor"`
	Loss   float64  `json:"loss"`
}

// The report's sections are the simulator's own types: one definition of
// the JSON both the simulator and bench-real write and the renderer reads.
// Fields the renderer does not use are decoded with the rest.
type (
	// Latency summarises accepted messages' latency, in milliseconds.
	Latency = sim.LatencySummary
	// CDFPoint: a fraction P of accepted messages took at most Ms.
	CDFPoint = sim.CDFPoint
	// Node is one node at the end of the run.
	Node = sim.NodeReport
	// Imbalance: max over mean across live nodes (1 is perfect).
	Imbalance = sim.Imbalance
	// Rebuild is the rebuild work and the under-replicated episodes.
	Rebuild = sim.RebuildReport
	// Episode is an interval with some entry short of R copies.
	Episode = sim.Episode
	// Unavailability is the time during which deliveries failed.
	Unavailability = sim.Unavailability
	// Window runs from a failed delivery to the next accepted one.
	Window = sim.Window
	// Second is one second of the timeline.
	Second = sim.TimelinePoint
	// Network is the traffic the simulated network carried.
	Network = sim.NetworkReport
	// Readers is the POP3 readers' work.
	Readers = sim.ReaderStats
	// Fault is one applied fault.
	Fault = sim.FaultResult
	// Wall holds the machine-dependent figures.
	Wall = sim.WallReport
)

// LoadFile reads a report file.
func LoadFile(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	r, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	return r, nil
}

// Decode parses a report.
func Decode(b []byte) (*Report, error) {
	var r Report
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&r); err != nil {
		return nil, fmt.Errorf("report: decode: %w", err)
	}
	if r.Scenario == "" {
		return nil, fmt.Errorf("report: decode: no scenario name: not a scenario report")
	}
	return &r, nil
}

// Dur parses a duration string of the config ("" is 0).
func Dur(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0
	}
	return d
}

// live reports whether a node state counts as live.
func live(state string) bool { return state == "alive" }
