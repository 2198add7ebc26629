package bench

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"mailarray/bench/report"
	"mailarray/sim"
)

// ScaleNodeCounts are the cluster sizes of the growth sweep.
var ScaleNodeCounts = []int{3, 4, 6, 8, 12, 16, 24, 32}

// maxScaleNodes is the largest sweep point the simulator's addressing
// allows with room to spare.
const maxScaleNodes = 200

// ScaleScenario builds the sweep's run for n nodes from base
// (scenarios/scale.yaml): node i is a copy of base.Nodes[i mod len] named
// n<i+1>, and the offered rate, senders, readers and mailboxes grow by
// n / len(base.Nodes), so that every node carries the same work at every
// size. Everything else (seed, durations, strategies, R, W, sizes) is
// base's.
func ScaleScenario(base sim.Scenario, n int) (sim.Scenario, error) {
	k := len(base.Nodes)
	switch {
	case k == 0:
		return sim.Scenario{}, errors.New("bench: scale: the base scenario has no nodes")
	case n < 1 || n > maxScaleNodes:
		return sim.Scenario{}, fmt.Errorf("bench: scale: %d nodes, want 1..%d", n, maxScaleNodes)
	case len(base.Faults) > 0:
		return sim.Scenario{}, errors.New("bench: scale: the base scenario must have no faults")
	}
	for _, nd := range base.Nodes {
		if nd.Spare {
			return sim.Scenario{}, fmt.Errorf("bench: scale: node %s is a spare; the sweep's template nodes must all start", nd.Name)
		}
	}
	f := float64(n) / float64(k)
	sc := base
	sc.Nodes = make([]sim.NodeSpec, n)
	for i := range n {
		nd := base.Nodes[i%k]
		nd.Name = "n" + strconv.Itoa(i+1)
		sc.Nodes[i] = nd
	}
	sc.Load.RatePerSec = base.Load.RatePerSec * f
	sc.Load.Senders = scaleInt(base.Load.Senders, f)
	sc.Load.Readers = scaleInt(base.Load.Readers, f)
	sc.Mailboxes = scaleInt(base.Mailboxes, f)
	return sc, nil
}

// scaleInt is v x f rounded up, and at least 1 when v is.
func scaleInt(v int, f float64) int {
	if v == 0 {
		return 0
	}
	return max(1, int(math.Ceil(float64(v)*f)))
}

// ScalePoint reduces one sweep run's report to its point.
func ScalePoint(rep *sim.Report, sc sim.Scenario) (report.ScalePoint, error) {
	js, err := rep.StableJSON()
	if err != nil {
		return report.ScalePoint{}, fmt.Errorf("bench: scale report: %w", err)
	}
	r, err := report.Decode(js)
	if err != nil {
		return report.ScalePoint{}, err
	}
	return PointOf(r, sc.Load.RatePerSec, sc.Load.Senders, sc.Mailboxes), nil
}

// PointOf computes a sweep point from a report.
func PointOf(r *report.Report, rate float64, senders, mailboxes int) report.ScalePoint {
	n := len(r.Config.Nodes)
	p := report.ScalePoint{
		Nodes: n, OfferedRate: rate, Senders: senders, Mailboxes: mailboxes,
		Offered: r.Offered, Accepted: r.Accepted,
		NotAccepted: r.Rejected + r.Failed + r.ClientDropped + r.Unsent,
		Lost:        r.Lost, Throughput: r.Throughput,
		P50Ms: r.Latency.P50, P99Ms: r.Latency.P99,
		PeerBytesPerMsg: r.Network.PeerBytesPerMsg,
		CopiesImbalance: r.Imbalance.CopiesMaxOverMean,
	}
	if n > 0 {
		p.ThroughputPerNode = round(r.Throughput/float64(n), 3)
	}
	var live int
	var cat, entries, copies, cpu float64
	for _, nd := range r.Nodes {
		cpu += nd.CPUBusySeconds
		if nd.State != "alive" {
			continue
		}
		live++
		cat += float64(nd.CatalogBytes)
		entries += float64(nd.CatalogEntries)
		copies += float64(nd.CopyBytes)
	}
	if live > 0 {
		p.CatalogBytesPerNode = round(cat/float64(live), 1)
		p.CatalogEntriesPerNode = round(entries/float64(live), 1)
		p.CopyBytesPerNode = round(copies/float64(live), 1)
	}
	if r.Accepted > 0 {
		a := float64(r.Accepted)
		mean := float64(r.AcceptedBytes) / a
		p.MirrorPayloadBytesPerMsg = round(float64(max(r.Config.Replicas-1, 0))*mean, 1)
		p.OtherPeerBytesPerMsg = round(max(r.Network.PeerBytesPerMsg-p.MirrorPayloadBytesPerMsg, 0), 1)
		p.CPUMsPerMsg = round(cpu*1000/a, 4)
		p.EventsPerMsg = round(float64(r.Network.Events)/a, 1)
	}
	return p
}

func round(x float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(x*p) / p
}
