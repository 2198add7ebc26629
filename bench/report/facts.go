package report

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Facts are figures derived from one report that the text quotes: which
// node was busiest, how much of the work the slowest node took. Every
// sentence of a rendered page that makes a claim about the run takes its
// numbers from here, so the text cannot disagree with the table.
type Facts struct {
	// Busiest is the live node with the highest busy fraction (Busy), and
	// BusiestWhat the resource: "CPU" or "disk bandwidth".
	Busiest     string
	BusiestFrac float64
	BusiestWhat string
	// Slowest is the node with the least declared capacity (lowest weight,
	// then slowest fsync); Fastest the one with the most.
	Slowest, Fastest string
	// SlowCopyShare and SlowSMTPShare are the slowest node's share of the
	// live copies and of the SMTP sessions that ended in 250.
	SlowCopyShare, SlowSMTPShare float64
	// SlowWeightShare is the slowest node's share of the declared weights
	// of the initial nodes: what a capacity-proportional strategy gives it.
	SlowWeightShare float64
	// SlowBusyFrac is the slowest node's busy fraction.
	SlowBusyFrac float64
	// FastCopyShare is the fastest node's share of the live copies.
	FastCopyShare float64
}

// Busy is how busy a node was during the load period (not the drain): the
// larger of its CPU time over cores x load seconds and its disk bytes over
// disk bandwidth x load seconds, capped at 1, and which of the two it is.
// The disk's sync time is not counted: syncs are group commits, so a disk
// that is always syncing still takes more writes per sync, and only its
// bandwidth is a capacity limit. On real sockets it is the process's CPU
// time over the machine's cores (the JSON's cpu_utilization).
func Busy(r *Report, n *Node) (frac float64, what string) {
	if r.Real() {
		return n.CPUUtilization, "CPU"
	}
	ns, ok := spec(r.Config, n.Name)
	if !ok || r.LoadSeconds <= 0 {
		return n.CPUUtilization, "CPU"
	}
	cpu := n.CPUBusySeconds / (float64(max(ns.CPUCores, 1)) * r.LoadSeconds)
	disk := 0.0
	if ns.DiskBytesPerSec > 0 {
		disk = float64(n.DiskBytes) / (float64(ns.DiskBytesPerSec) * r.LoadSeconds)
	}
	if disk > cpu {
		return min(disk, 1), "disk bandwidth"
	}
	return min(cpu, 1), "CPU"
}

// DiskSyncing is the fraction of the whole run the node's disk spent
// syncing or writing (the JSON's disk_busy_seconds over virtual seconds).
func DiskSyncing(r *Report, n *Node) float64 {
	if r.VirtualSeconds <= 0 {
		return 0
	}
	return n.DiskBusySeconds / r.VirtualSeconds
}

// Derive computes the facts of r.
func Derive(r *Report) Facts {
	var f Facts
	for i := range r.Nodes {
		n := &r.Nodes[i]
		if !live(n.State) {
			continue
		}
		b, what := Busy(r, n)
		if f.Busiest == "" || b > f.BusiestFrac {
			f.Busiest, f.BusiestFrac, f.BusiestWhat = n.Name, b, what
		}
	}
	f.Slowest, f.Fastest = slowestFastest(r.Config.Nodes)
	var smtpTotal int
	for _, n := range r.Nodes {
		smtpTotal += n.SMTPAccepted
	}
	var wsum int
	for _, ns := range r.Config.Nodes {
		if !ns.Spare {
			wsum += ns.Weight
		}
	}
	for i := range r.Nodes {
		n := &r.Nodes[i]
		switch n.Name {
		case f.Slowest:
			f.SlowCopyShare = n.ShareCopies
			if smtpTotal > 0 {
				f.SlowSMTPShare = float64(n.SMTPAccepted) / float64(smtpTotal)
			}
			f.SlowBusyFrac, _ = Busy(r, n)
		case f.Fastest:
			f.FastCopyShare = n.ShareCopies
		}
	}
	for _, ns := range r.Config.Nodes {
		if ns.Name == f.Slowest && wsum > 0 {
			f.SlowWeightShare = float64(ns.Weight) / float64(wsum)
		}
	}
	return f
}

// slowestFastest picks the nodes with the least and the most declared
// capacity among the initial nodes: by weight, ties broken by fsync
// latency, then by name.
func slowestFastest(nodes []NodeSpec) (slow, fast string) {
	var init []NodeSpec
	for _, n := range nodes {
		if !n.Spare {
			init = append(init, n)
		}
	}
	if len(init) == 0 {
		return "", ""
	}
	byCap := func(a, b NodeSpec) int {
		if c := cmp.Compare(a.Weight, b.Weight); c != 0 {
			return c
		}
		if c := cmp.Compare(Dur(b.DiskFsync), Dur(a.DiskFsync)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	}
	slices.SortStableFunc(init, byCap)
	return init[0].Name, init[len(init)-1].Name
}

// hardware describes a node's modeled hardware in a few words.
func hardware(ns NodeSpec) string {
	return fmt.Sprintf("%d cores, %s/msg CPU, %s fsync, %s/s disk, weight %d",
		ns.CPUCores, ns.CPUPerMsg, ns.DiskFsync, bytesSI(float64(ns.DiskBytesPerSec)), ns.Weight)
}

// spec returns the config of node name.
func spec(cfg Config, name string) (NodeSpec, bool) {
	for _, n := range cfg.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeSpec{}, false
}

// largeFraction is the probability that a message of the load is at least
// limit bytes: what the size strategy acts on.
func largeFraction(s Size, limit float64) float64 {
	switch {
	case float64(s.MaxBytes) < limit:
		return 0
	case s.Dist == "fixed":
		if float64(s.MedianBytes) >= limit {
			return 1
		}
		return 0
	case s.Sigma <= 0 || s.MedianBytes <= 0:
		return 0
	}
	z := math.Log(limit/float64(s.MedianBytes)) / s.Sigma
	return 0.5 * math.Erfc(z/math.Sqrt2)
}

// meanSize is the mean message size of the load (lognormal mean, ignoring
// the clamps).
func meanSize(s Size) float64 {
	if s.Dist == "fixed" || s.Sigma <= 0 {
		return float64(s.MedianBytes)
	}
	return float64(s.MedianBytes) * math.Exp(s.Sigma*s.Sigma/2)
}
