package sim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"mailarray/sim/simnet"
)

// CostProfile is a set of cost-model parameters measured on one machine
// (make calibrate, bench/cmd/calibrate), stored as
// scenarios/profiles/<name>.yaml beside the scenarios that name it
// (cost_profile: <name>). A scenario takes from it every node cost field
// the node leaves unset, and the link's latency and jitter when it sets no
// link, so that its predictions are about the machine that was measured.
//
// Each figure is the median over the calibration's repeats with the
// smallest and largest repeat beside it: a reader sees how far one
// measurement could be trusted. The read figures are not applied: the
// model charges a POP3 RETR with the same per-message and per-KiB CPU as
// an SMTP delivery and a peer copy (env.Cost.CPU), and the profile records
// what a read really costs so that the difference is visible.
type CostProfile struct {
	Name string `yaml:"name"`
	// Machine, Date and Commit say where, when and with which code the
	// figures were measured (the commit of the mailarray binary).
	Machine string `yaml:"machine"`
	Date    string `yaml:"date"`
	Commit  string `yaml:"commit"`
	// Repeats is how many times every measurement ran.
	Repeats int `yaml:"repeats"`

	// The node cost fields (NodeSpec): CPU per charge (one SMTP delivery,
	// one peer copy received, one POP3 RETR), and the disk's sync latency
	// and bandwidth.
	CPUPerMsg DurationFigure `yaml:"cpu_per_msg"`
	CPUPerKiB DurationFigure `yaml:"cpu_per_kib"`
	// CPUBackground is the share of a CPU each running node burns whatever
	// its load (NodeSpec.CPUBackground): with it, cpu_per_msg is the
	// marginal cost of a charge, not its average at one rate. Absent in
	// profiles written before it was measured.
	CPUBackground FractionFigure `yaml:"cpu_background,omitempty"`
	// CPUIdle is the share of a CPU each running node burns between
	// messages, which work preempts (NodeSpec.CPUIdle): the rest of the
	// load line's intercept once the idle process's background is taken
	// out. Absent in profiles written before it was measured.
	CPUIdle FractionFigure `yaml:"cpu_idle,omitempty"`
	// CPUPerMsgBusy is a charge's CPU on a node already at work
	// (NodeSpec.CPUPerMsgBusy): measured on nodes held at their quota,
	// where every message finds the runtime awake. Absent in profiles
	// written before it was measured.
	CPUPerMsgBusy DurationFigure `yaml:"cpu_per_msg_busy,omitempty"`
	// HostCPUPerMsg is the host's CPU per message outside the nodes' (the
	// load generator and the kernel: Scenario.HostCPUPerMsg), applied to
	// scenarios with host_cpus. Absent in profiles written before it was
	// measured.
	HostCPUPerMsg   DurationFigure `yaml:"host_cpu_per_msg,omitempty"`
	DiskFsync       DurationFigure `yaml:"disk_fsync"`
	DiskBytesPerSec RateFigure     `yaml:"disk_bytes_per_sec"`
	// LinkLatency and LinkJitter are the link's (LinkSpec): one-way latency
	// and the uniform jitter added to it, from the loopback round trip.
	LinkLatency DurationFigure `yaml:"link_latency"`
	LinkJitter  DurationFigure `yaml:"link_jitter"`

	// Read is what a POP3 RETR (with its share of the session's login,
	// LIST and DELE) cost per message and per KiB: recorded, not applied.
	ReadCPUPerMsg DurationFigure `yaml:"read_cpu_per_msg,omitempty"`
	ReadCPUPerKiB DurationFigure `yaml:"read_cpu_per_kib,omitempty"`
	// Fsync is the distribution of one small write+fdatasync, of which
	// disk_fsync is the median.
	FsyncP50 DurationFigure `yaml:"fsync_p50,omitempty"`
	FsyncP90 DurationFigure `yaml:"fsync_p90,omitempty"`
	FsyncP99 DurationFigure `yaml:"fsync_p99,omitempty"`
	// Method says how each figure was obtained, one line each.
	Method []string `yaml:"method,omitempty"`
}

// DurationFigure is a measured duration: the median of the repeats and
// their range.
type DurationFigure struct {
	Value Duration `yaml:"value"`
	Min   Duration `yaml:"min"`
	Max   Duration `yaml:"max"`
}

// FractionFigure is a measured share (of a CPU): the median of the
// repeats and their range.
type FractionFigure struct {
	Value float64 `yaml:"value"`
	Min   float64 `yaml:"min"`
	Max   float64 `yaml:"max"`
}

// RateFigure is a measured rate: the median of the repeats and their
// range.
type RateFigure struct {
	Value int64 `yaml:"value"`
	Min   int64 `yaml:"min"`
	Max   int64 `yaml:"max"`
}

// ProfilesDir is where a scenario file's profiles are: profiles/ beside it.
const ProfilesDir = "profiles"

// LoadProfile reads and validates a profile file.
func LoadProfile(path string) (CostProfile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return CostProfile{}, fmt.Errorf("sim: profile: %w", err)
	}
	p, err := ParseProfile(b)
	if err != nil {
		return CostProfile{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// ParseProfile parses a profile (unknown keys are errors) and validates
// it.
func ParseProfile(b []byte) (CostProfile, error) {
	var p CostProfile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return CostProfile{}, fmt.Errorf("sim: profile: %w", err)
	}
	if err := p.Validate(); err != nil {
		return CostProfile{}, err
	}
	return p, nil
}

// Marshal writes the profile as ParseProfile reads it.
func (p CostProfile) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("sim: profile: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("sim: profile: %w", err)
	}
	return b.Bytes(), nil
}

// Validate reports every problem, each naming its key. A figure the model
// applies must be measured (> 0, except the link's jitter, which may be
// 0) and lie within its range.
func (p CostProfile) Validate() error {
	var errs []error
	bad := func(key, f string, a ...any) {
		errs = append(errs, fmt.Errorf("sim: profile: %s: "+f, append([]any{key}, a...)...))
	}
	if !labelRE.MatchString(p.Name) {
		bad("name", "%q must be a lowercase label (a-z, 0-9, '-')", p.Name)
	}
	if p.Repeats < 1 {
		bad("repeats", "%d must be >= 1", p.Repeats)
	}
	for _, f := range []struct {
		key      string
		fig      DurationFigure
		zeroOK   bool
		optional bool
	}{
		{"cpu_per_msg", p.CPUPerMsg, false, false},
		// 0 would read as unset in a node: the default would replace it.
		{"cpu_per_kib", p.CPUPerKiB, false, false},
		{"disk_fsync", p.DiskFsync, false, false},
		{"link_latency", p.LinkLatency, false, false},
		{"link_jitter", p.LinkJitter, true, false},
		{"host_cpu_per_msg", p.HostCPUPerMsg, true, true},
		{"cpu_per_msg_busy", p.CPUPerMsgBusy, false, true},
		{"read_cpu_per_msg", p.ReadCPUPerMsg, true, true},
		{"read_cpu_per_kib", p.ReadCPUPerKiB, true, true},
		{"fsync_p50", p.FsyncP50, true, true},
		{"fsync_p90", p.FsyncP90, true, true},
		{"fsync_p99", p.FsyncP99, true, true},
	} {
		switch v := f.fig; {
		case f.optional && v == DurationFigure{}:
		case v.Value < 0 || (v.Value == 0 && !f.zeroOK):
			bad(f.key+".value", "%v must be > 0", v.Value)
		case v.Min > v.Value || v.Value > v.Max:
			bad(f.key, "value %v is not within min..max (%v..%v)", v.Value, v.Min, v.Max)
		}
	}
	for _, f := range []struct {
		key string
		v   FractionFigure
	}{{"cpu_background", p.CPUBackground}, {"cpu_idle", p.CPUIdle}} {
		if f.v == (FractionFigure{}) {
			continue
		}
		if !(f.v.Value >= 0 && f.v.Value < 1) {
			bad(f.key+".value", "%v must be in [0, 1)", f.v.Value)
		} else if f.v.Min > f.v.Value || f.v.Value > f.v.Max {
			bad(f.key, "value %v is not within min..max (%v..%v)", f.v.Value, f.v.Min, f.v.Max)
		}
	}
	if r := p.DiskBytesPerSec; r.Value < 1 {
		bad("disk_bytes_per_sec.value", "%d must be >= 1", r.Value)
	} else if r.Min > r.Value || r.Value > r.Max {
		bad("disk_bytes_per_sec", "value %d is not within min..max (%d..%d)", r.Value, r.Min, r.Max)
	}
	return errors.Join(errs...)
}

// UseProfile attaches p as the profile the scenario's cost_profile names;
// Validate then fills the scenario from it. LoadScenario calls it with the
// file's profiles/<name>.yaml; a caller building a scenario in code or
// parsing one with ParseScenario calls it before Validate.
func (sc *Scenario) UseProfile(p CostProfile) { sc.profile = &p }

// Profile is the attached cost profile, or nil.
func (sc *Scenario) Profile() *CostProfile { return sc.profile }

// loadProfileFor attaches the profile sc names from dir/profiles, if it
// names one. A missing file is left to Validate, which names the key.
func (sc *Scenario) loadProfileFor(dir string) error {
	if sc.CostProfile == "" || !labelRE.MatchString(sc.CostProfile) {
		return nil
	}
	p, err := LoadProfile(filepath.Join(dir, ProfilesDir, sc.CostProfile+".yaml"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	sc.UseProfile(p)
	return nil
}

// applyProfile fills from the attached profile the node cost fields each
// node leaves unset, and the link's latency and jitter when the scenario
// sets no link at all (its bandwidth stays the default: loopback's is not
// a network's). It runs before the defaults are filled, so a scenario
// naming no profile is exactly as before.
func (sc *Scenario) applyProfile(bad func(key, f string, a ...any)) {
	if sc.CostProfile == "" {
		return
	}
	p := sc.profile
	if p == nil || p.Name != sc.CostProfile {
		bad("cost_profile", "unknown profile %q: no %s/%s.yaml beside the scenario file (make calibrate writes one)", sc.CostProfile, ProfilesDir, sc.CostProfile)
		return
	}
	for i := range sc.Nodes {
		nd := &sc.Nodes[i]
		if nd.CPUPerMsg == 0 {
			nd.CPUPerMsg = p.CPUPerMsg.Value
		}
		if nd.CPUPerKiB == 0 {
			nd.CPUPerKiB = p.CPUPerKiB.Value
		}
		if nd.CPUBackground == 0 {
			nd.CPUBackground = p.CPUBackground.Value
		}
		if nd.CPUIdle == 0 {
			nd.CPUIdle = p.CPUIdle.Value
		}
		if nd.CPUPerMsgBusy == 0 {
			nd.CPUPerMsgBusy = p.CPUPerMsgBusy.Value
		}
		if nd.DiskFsync == 0 {
			nd.DiskFsync = p.DiskFsync.Value
		}
		if nd.DiskBytesPerSec == 0 {
			nd.DiskBytesPerSec = p.DiskBytesPerSec.Value
		}
	}
	if sc.HostCPUs > 0 && sc.HostCPUPerMsg == 0 {
		sc.HostCPUPerMsg = p.HostCPUPerMsg.Value
	}
	if l := &sc.Link; l.Latency == 0 && l.Jitter == 0 && l.BytesPerSec == 0 && l.Loss == 0 {
		l.Latency, l.Jitter = p.LinkLatency.Value, p.LinkJitter.Value
		l.BytesPerSec = simnet.DefaultNetConfig().Link.BandwidthBytesPerSec
	}
}
