package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// Kinds of result files other than scenario reports, in their "kind" key.
const (
	KindSaturation = "saturation"
	KindScale      = "scale"
)

// Saturation is results/saturation.json: for each strategy, the highest
// offered load it sustained. Field order is the file's.
type Saturation struct {
	Kind string `json:"kind"`
	// LoadSeconds and DrainSeconds are each probe's run (virtual).
	LoadSeconds  float64 `json:"load_seconds"`
	DrainSeconds float64 `json:"drain_seconds"`
	// Criterion says what a probe must do to pass.
	Criterion  string               `json:"criterion"`
	Strategies []StrategySaturation `json:"strategies"`
	Wall       SweepWall            `json:"wall"`
}

// StrategySaturation is one strategy's search.
type StrategySaturation struct {
	Strategy          string  `json:"strategy"`
	DNSStrategy       string  `json:"dns_strategy"`
	PlacementStrategy string  `json:"placement_strategy"`
	TargetP99Ms       float64 `json:"target_p99_ms"`
	// SaturationMsgsPerSec is the highest offered rate that passed (0:
	// none did); FirstFailMsgsPerSec the lowest that failed (0: none did,
	// the search stopped at its cap).
	SaturationMsgsPerSec float64 `json:"saturation_msgs_per_sec"`
	FirstFailMsgsPerSec  float64 `json:"first_fail_msgs_per_sec"`
	// Probes are the runs in the order the search made them.
	Probes []Probe `json:"probes"`
}

// Probe is one short run at one offered rate.
type Probe struct {
	OfferedRate float64 `json:"offered_msgs_per_sec"`
	Senders     int     `json:"senders"`
	Offered     int     `json:"offered"`
	Accepted    int     `json:"accepted"`
	// NotAccepted counts rejected, failed, dropped and unsent messages.
	NotAccepted int     `json:"not_accepted"`
	Lost        int     `json:"lost"`
	Throughput  float64 `json:"throughput_msgs_per_sec"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	Pass        bool    `json:"pass"`
	// Why says why a probe failed ("" when it passed).
	Why string `json:"why"`
	// Busiest is the busiest live node and its busy fraction (the larger
	// of CPU utilisation and disk busy time over the run).
	Busiest     string  `json:"busiest_node"`
	BusiestWhat string  `json:"busiest_resource"`
	BusiestFrac float64 `json:"busiest_fraction"`
	// SlowCopyShare is the slowest node's share of the live copies.
	SlowCopyShare float64 `json:"slow_node_copy_share"`
	// HostUtil is the shared host's busy share of its CPUs over the run:
	// the model's (a scenario with host_cpus) or the machine's under a
	// real array (/proc/stat). Absent otherwise.
	HostUtil float64 `json:"host_cpu_utilization,omitempty"`
}

// SweepWall holds a sweep's machine-dependent figures.
type SweepWall struct {
	Seconds float64 `json:"seconds"`
}

// Scale is results/scale.json: the growth sweep.
type Scale struct {
	Kind     string `json:"kind"`
	Scenario string `json:"scenario"`
	// LoadSeconds and DrainSeconds are each point's run (virtual).
	LoadSeconds  float64 `json:"load_seconds"`
	DrainSeconds float64 `json:"drain_seconds"`
	// RatePerNode is the offered load per node (msgs/s).
	RatePerNode float64      `json:"rate_per_node_msgs_per_sec"`
	Replicas    int          `json:"replicas"`
	Points      []ScalePoint `json:"points"`
	Wall        SweepWall    `json:"wall"`
}

// ScalePoint is one cluster size of the sweep. Per-message figures are
// per accepted message.
type ScalePoint struct {
	Nodes       int     `json:"nodes"`
	OfferedRate float64 `json:"offered_msgs_per_sec"`
	Senders     int     `json:"senders"`
	Mailboxes   int     `json:"mailboxes"`
	Offered     int     `json:"offered"`
	Accepted    int     `json:"accepted"`
	NotAccepted int     `json:"not_accepted"`
	Lost        int     `json:"lost"`
	Throughput  float64 `json:"throughput_msgs_per_sec"`
	// ThroughputPerNode is Throughput / Nodes.
	ThroughputPerNode float64 `json:"throughput_per_node_msgs_per_sec"`
	P50Ms             float64 `json:"p50_ms"`
	P99Ms             float64 `json:"p99_ms"`
	// CatalogBytesPerNode and CatalogEntriesPerNode are means over live
	// nodes at the end: every node holds the whole catalog.
	CatalogBytesPerNode   float64 `json:"catalog_bytes_per_node"`
	CatalogEntriesPerNode float64 `json:"catalog_entries_per_node"`
	// CopyBytesPerNode is the mean of the live nodes' message copies.
	CopyBytesPerNode float64 `json:"copy_bytes_per_node"`
	// PeerBytesPerMsg is all node-to-node traffic (mirroring, catalog
	// pushes, anti-entropy, load polls, locks) per accepted message.
	PeerBytesPerMsg float64 `json:"peer_bytes_per_msg"`
	// MirrorPayloadBytesPerMsg is the part that is the messages' own
	// bytes sent to their R-1 mirrors: x mean accepted size.
	MirrorPayloadBytesPerMsg float64 `json:"mirror_payload_bytes_per_msg"`
	// OtherPeerBytesPerMsg is the rest: catalog replication, anti-entropy,
	// protocol overhead, load polls.
	OtherPeerBytesPerMsg float64 `json:"other_peer_bytes_per_msg"`
	// CPUMsPerMsg is the modeled CPU time of all nodes per message.
	CPUMsPerMsg float64 `json:"cpu_ms_per_msg"`
	// EventsPerMsg is network events per accepted message (the simulator's
	// own cost driver).
	EventsPerMsg    float64 `json:"events_per_msg"`
	CopiesImbalance float64 `json:"copies_max_over_mean"`
}

// kindProbe reads only a result file's kind.
type kindProbe struct {
	Kind     string `json:"kind"`
	Scenario string `json:"scenario"`
}

// Kind returns a result file's kind: KindSaturation, KindScale, or "" for
// a scenario report.
func Kind(b []byte) (string, error) {
	var k kindProbe
	if err := json.Unmarshal(b, &k); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	return k.Kind, nil
}

// EncodeJSON is v indented with a final newline, as every result file is.
func EncodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("report: encode: %w", err)
	}
	return b.Bytes(), nil
}

// LoadSaturation reads results/saturation.json.
func LoadSaturation(path string) (*Saturation, error) {
	var s Saturation
	if err := loadKind(path, KindSaturation, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// LoadScale reads results/scale.json.
func LoadScale(path string) (*Scale, error) {
	var s Scale
	if err := loadKind(path, KindScale, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func loadKind(path, kind string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	k, err := Kind(b)
	if err != nil {
		return fmt.Errorf("report: %s: %w", path, err)
	}
	if k != kind {
		return fmt.Errorf("report: %s: kind %q, want %q", path, k, kind)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("report: %s: %w", path, err)
	}
	return nil
}
