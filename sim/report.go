package sim

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"

	"mailarray/node/catalog"
)

// Report is the outcome of a run. Its JSON (JSON) is a function of the
// scenario, the seed and the code only, except the Wall section. Field
// order is the JSON's; docs/bench.md ("The report") documents the fields.
type Report struct {
	Scenario       string   `json:"scenario"`
	Seed           uint64   `json:"seed"`
	Config         Scenario `json:"config"`
	VirtualSeconds float64  `json:"virtual_seconds"`
	LoadSeconds    float64  `json:"load_seconds"`

	Offered        int            `json:"offered"`
	Accepted       int            `json:"accepted"`
	Rejected       int            `json:"rejected"`
	Failed         int            `json:"failed"`
	ClientDropped  int            `json:"client_dropped"`
	Unsent         int            `json:"unsent"`
	RejectedByCode map[string]int `json:"rejected_by_code"`
	FailedByReason map[string]int `json:"failed_by_reason"`
	AcceptedBytes  int64          `json:"accepted_bytes"`
	Throughput     float64        `json:"throughput_msgs_per_sec"`

	Lost           int      `json:"lost"`
	LostIDs        []string `json:"lost_ids"`
	CatalogMissing int      `json:"catalog_missing"`
	// PendingAtEnd counts acknowledged messages whose copies were durable
	// but whose commit had not been applied when the run ended (a drain
	// shorter than an overloaded node's backlog); not lost, not yet
	// visible to readers.
	PendingAtEnd int `json:"pending_at_end,omitempty"`

	Latency     LatencySummary `json:"latency_ms"`
	TargetP99Ms float64        `json:"target_p99_ms"`
	TargetMet   bool           `json:"target_met"`
	LatencyCDF  []CDFPoint     `json:"latency_cdf"`

	Nodes []NodeReport `json:"nodes"`
	// Host is the shared machine's CPU (Scenario.HostCPUs); absent
	// without one.
	Host           *HostReport     `json:"host,omitempty"`
	Imbalance      Imbalance       `json:"imbalance"`
	Rebuild        RebuildReport   `json:"rebuild"`
	Unavailability Unavailability  `json:"unavailability"`
	Timeline       []TimelinePoint `json:"timeline"`
	Network        NetworkReport   `json:"network"`
	Readers        ReaderStats     `json:"readers"`
	Faults         []FaultResult   `json:"faults"`
	NetDigest      string          `json:"net_digest"`

	// LeaseRefusals are the mailbox leases refused on behalf of a holder
	// whose node was down (crashed, removed or paused) at the time
	// (leases.go), at most maxLeaseRefusals; LeaseRefusalsMore counts the
	// rest.
	LeaseRefusals     []LeaseRefusal `json:"lease_refusals,omitempty"`
	LeaseRefusalsMore int            `json:"lease_refusals_more,omitempty"`

	// Wall holds the only figures that depend on the machine.
	Wall WallReport `json:"wall"`

	// Records are every offered message, in arrival order (not in the
	// JSON): what the chaos checker compares with the stores.
	Records []Record `json:"-"`
	// Ledger is every message copy's durability (not in the JSON): by
	// copy id, the intervals during which each node held it durably
	// (disk.go). The chaos checker asks it whether W copies were durable
	// when each 250 went out.
	Ledger map[string][]CopyLife `json:"-"`
	// DroppedCopies counts, by node, the copies power losses dropped
	// before they were synced (not in the JSON).
	DroppedCopies map[string]int `json:"-"`
}

// LatencySummary is over accepted messages, arrival to 250, in ms.
type LatencySummary struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// CDFPoint: a fraction P of accepted messages took at most Ms.
type CDFPoint struct {
	P  float64 `json:"p"`
	Ms float64 `json:"ms"`
}

// NodeReport is one node at the end of the run.
type NodeReport struct {
	Name           string  `json:"name"`
	IP             string  `json:"ip"`
	State          string  `json:"state"`
	SMTPAccepted   int     `json:"smtp_accepted"`
	Copies         int     `json:"copies"`
	CopyBytes      int64   `json:"copy_bytes"`
	Primaries      int     `json:"primaries"`
	ShareCopies    float64 `json:"share_copies"`
	ShareBytes     float64 `json:"share_bytes"`
	CatalogEntries int     `json:"catalog_entries"`
	CatalogBytes   int64   `json:"catalog_bytes"`
	RebuiltCopies  int64   `json:"rebuilt_copies"`
	RebuiltBytes   int64   `json:"rebuilt_bytes"`
	MovedCopies    int64   `json:"moved_copies"`
	// TrimmedCopies: copies the node deleted once a rebuild or rebalance
	// listed them elsewhere; AutoRebalances: rebalances it drove after a
	// node returned (omitted when 0: reports of runs without either stay
	// as they were).
	TrimmedCopies   int64   `json:"trimmed_copies,omitempty"`
	AutoRebalances  int64   `json:"auto_rebalances,omitempty"`
	CPUBusySeconds  float64 `json:"cpu_busy_seconds"`
	CPUUtilization  float64 `json:"cpu_utilization"`
	DiskSyncs       int64   `json:"disk_syncs"`
	DiskBytes       int64   `json:"disk_bytes"`
	DiskBusySeconds float64 `json:"disk_busy_seconds"`
}

// HostReport is the shared host's CPU over the run: busy core-seconds
// (the nodes' work and OutsideNodesSeconds, the load generator's and the
// kernel's share) and their share of its CPUs.
type HostReport struct {
	CPUs                int     `json:"cpus"`
	BusySeconds         float64 `json:"busy_seconds"`
	Utilization         float64 `json:"utilization"`
	OutsideNodesSeconds float64 `json:"outside_nodes_seconds"`
}

// Imbalance compares the live nodes: max over mean (1 is perfect).
type Imbalance struct {
	CopiesMaxOverMean float64 `json:"copies_max_over_mean"`
	BytesMaxOverMean  float64 `json:"bytes_max_over_mean"`
	SMTPMaxOverMean   float64 `json:"smtp_max_over_mean"`
}

// RebuildReport: copies rebuilt after failures and how long the array was
// under-replicated.
type RebuildReport struct {
	Copies   int64     `json:"copies"`
	Bytes    int64     `json:"bytes"`
	Seconds  float64   `json:"seconds"`
	Episodes []Episode `json:"episodes"`
}

// Episode is an interval during which some live node found entries short
// of R copies (sampled every sampleEvery; nodes scan every
// Tuning.MaintainEvery, so ends are late by up to that).
type Episode struct {
	StartS  float64 `json:"start_s"`
	EndS    float64 `json:"end_s"`
	Seconds float64 `json:"seconds"`
}

// Unavailability: intervals during which deliveries failed.
type Unavailability struct {
	Seconds float64  `json:"seconds"`
	Windows []Window `json:"windows"`
}

// Window runs from a failed delivery to the next accepted one.
type Window struct {
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
	Failed int     `json:"failed"`
}

// TimelinePoint is one virtual second (by completion time).
type TimelinePoint struct {
	TS       int     `json:"t_s"`
	Offered  int     `json:"offered"`
	Accepted int     `json:"accepted"`
	Rejected int     `json:"rejected"`
	Failed   int     `json:"failed"`
	P99Ms    float64 `json:"p99_ms"`
}

// NetworkReport is SimNet's traffic.
type NetworkReport struct {
	Events           int64   `json:"events"`
	ClientBytes      int64   `json:"client_bytes"`
	PeerBytes        int64   `json:"peer_bytes"`
	PeerBytesPerMsg  float64 `json:"peer_bytes_per_msg"`
	DroppedDatagrams int64   `json:"dropped_datagrams"`
}

// WallReport: how fast the simulator ran on this machine.
type WallReport struct {
	Seconds         float64 `json:"seconds"`
	SimMsgsPerWallS float64 `json:"sim_msgs_per_wall_s"`
	EventsPerWallS  float64 `json:"events_per_wall_s"`
	VirtualPerWallS float64 `json:"virtual_s_per_wall_s"`
}

// JSON is the report, indented, with a final newline.
func (r *Report) JSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Limits of the report.
const (
	lostIDsMax = 20
)

func roundTo(x float64, digits int) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	p := math.Pow10(digits)
	return math.Round(x*p) / p
}

func ms(d time.Duration) float64 { return roundTo(float64(d)/float64(time.Millisecond), 3) }

// quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// newReport is the report of a run of sc that ended at end, before the
// figures: the simulated and the real-time runs' alike.
func newReport(sc Scenario, end time.Duration) *Report {
	return &Report{
		Scenario: sc.Name, Seed: sc.Seed, Config: sc,
		VirtualSeconds: roundTo(end.Seconds(), 3),
		LoadSeconds:    roundTo(sc.Duration.D().Seconds(), 3),
		RejectedByCode: map[string]int{}, FailedByReason: map[string]int{},
		LostIDs: []string{},
	}
}

// report gathers the report while the world is frozen (see run).
func (s *simulation) report() *Report {
	sc := s.sc
	g := s.load
	end := sc.Duration.D() + sc.Drain.D()
	r := newReport(sc, end)
	g.mu.Lock()
	r.Records = g.snapshot(g.records)
	r.Readers = g.rstats
	g.mu.Unlock()

	smtpBy := map[string]int{}
	r.summarize(sc, func(rec *Record) { smtpBy[rec.Node]++ })

	s.checkLost(r)
	s.nodeReports(r, smtpBy)
	r.Rebuild = s.rebuildReport(r)
	r.Unavailability = unavailability(r.Records)
	r.Timeline = timeline(r.Records, end)
	r.Network = s.networkReport(r.Accepted)
	s.mu.Lock()
	r.Faults = append([]FaultResult{}, s.faults...)
	s.mu.Unlock()
	r.LeaseRefusals, r.LeaseRefusalsMore = s.leases.report(s.loadStart)
	r.NetDigest = s.net.Digest()
	r.Ledger, r.DroppedCopies = s.ledger.export(s.loadStart)
	return r
}

// checkLost verifies that every accepted message no reader deleted is
// committed in some live node's catalog with a readable copy (checksum
// verified) on a live node it lists; and counts live catalogs that lack it.
func (s *simulation) checkLost(r *Report) {
	s.mu.Lock()
	live := map[string]*simNode{}
	var order []*simNode
	for _, sn := range s.nodes {
		if sn.node != nil {
			live[sn.spec.Name] = sn
			order = append(order, sn)
		}
	}
	s.mu.Unlock()
	for i := range r.Records {
		rec := &r.Records[i]
		if rec.Outcome != Accepted || rec.Deleted || rec.MaybeDeleted {
			continue
		}
		id := rec.CopyID()
		var entry, pending *catalog.Entry
		for _, sn := range order {
			e, ok := sn.node.Catalog().Get(id)
			if !ok || e.State != catalog.Committed {
				r.CatalogMissing++
				if ok && e.State == catalog.Pending && pending == nil {
					pending = &e
				}
				continue
			}
			if entry == nil {
				entry = &e
			}
		}
		readableOn := func(e *catalog.Entry) bool {
			for _, loc := range e.Locations {
				sn := live[loc]
				if sn == nil {
					continue
				}
				if sn.node.Store().Verify(id, e.Sum) == nil {
					return true
				}
			}
			return false
		}
		readable := entry != nil && readableOn(entry)
		if entry == nil && pending != nil && readableOn(pending) {
			// Acknowledged, its copies durable, but the run ended before
			// its commit was applied (an overloaded node's commit queue):
			// the holders commit it themselves (resolvePending), so it is
			// not lost, only not yet visible.
			r.PendingAtEnd++
			continue
		}
		if !readable {
			r.Lost++
			if len(r.LostIDs) < lostIDsMax {
				r.LostIDs = append(r.LostIDs, id)
			}
		}
	}
}

// nodeReports fills the per-node figures and the imbalance.
func (s *simulation) nodeReports(r *Report, smtpBy map[string]int) {
	end := (s.sc.Duration.D() + s.sc.Drain.D()).Seconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	// Primaries are counted from one live catalog (they agree once
	// converged; catalog_missing says if they do not).
	var ref *catalog.Catalog
	for _, sn := range s.nodes {
		if sn.node != nil {
			ref = sn.node.Catalog()
			break
		}
	}
	primaries := map[string]int{}
	if ref != nil {
		ref.ForEach(func(e *catalog.Entry) bool {
			if e.State == catalog.Committed && len(e.Locations) > 0 {
				primaries[e.Locations[0]]++
			}
			return true
		})
	}
	var totalCopies int
	var totalBytes int64
	var liveCopies, liveBytes, liveSMTP []float64
	for _, sn := range s.nodes {
		nr := NodeReport{Name: sn.spec.Name, IP: sn.ip, State: sn.state, SMTPAccepted: smtpBy[sn.spec.Name], Primaries: primaries[sn.spec.Name]}
		rb := sn.rebuilt
		if nd := sn.node; nd != nil {
			if st, err := nd.Store().Stats(); err == nil {
				nr.Copies, nr.CopyBytes = st.Copies, st.CopyBytes
			}
			nr.CatalogEntries = nd.Catalog().Len()
			nd.Store().Records(func(id string, v []byte) error {
				nr.CatalogBytes += int64(len(id) + len(v))
				return nil
			})
			cur := nd.RebuildStatus()
			rb.RebuiltCopies += cur.RebuiltCopies
			rb.RebuiltBytes += cur.RebuiltBytes
			rb.MovedCopies += cur.MovedCopies
			rb.TrimmedCopies += cur.TrimmedCopies
			rb.AutoRebalances += cur.AutoRebalances
			totalCopies += nr.Copies
			totalBytes += nr.CopyBytes
			liveCopies = append(liveCopies, float64(nr.Copies))
			liveBytes = append(liveBytes, float64(nr.CopyBytes))
			liveSMTP = append(liveSMTP, float64(nr.SMTPAccepted))
		}
		nr.RebuiltCopies, nr.RebuiltBytes, nr.MovedCopies = rb.RebuiltCopies, rb.RebuiltBytes, rb.MovedCopies
		nr.TrimmedCopies, nr.AutoRebalances = rb.TrimmedCopies, rb.AutoRebalances
		cs := sn.cost.stats()
		nr.CPUBusySeconds = roundTo(cs.CPUTime.Seconds(), 3)
		nr.CPUUtilization = roundTo(cs.CPUTime.Seconds()/(sn.spec.CPUCapacity()*end), 4)
		nr.DiskSyncs, nr.DiskBytes = cs.DiskSyncs, cs.DiskBytes
		nr.DiskBusySeconds = roundTo(cs.DiskTime.Seconds(), 3)
		r.Nodes = append(r.Nodes, nr)
	}
	if hs := s.host.stats(); hs.Cores > 0 && end > 0 {
		r.Host = &HostReport{CPUs: hs.Cores, BusySeconds: roundTo(hs.BusyTime.Seconds(), 3),
			Utilization: roundTo(hs.BusyTime.Seconds()/(float64(hs.Cores)*end), 4), OutsideNodesSeconds: roundTo(hs.ClientJob.Seconds(), 3)}
	}
	for i := range r.Nodes {
		nr := &r.Nodes[i]
		if nr.State != stateAlive {
			continue
		}
		if totalCopies > 0 {
			nr.ShareCopies = roundTo(float64(nr.Copies)/float64(totalCopies), 4)
		}
		if totalBytes > 0 {
			nr.ShareBytes = roundTo(float64(nr.CopyBytes)/float64(totalBytes), 4)
		}
	}
	r.Imbalance = NewImbalance(liveCopies, liveBytes, liveSMTP)
}

// NewImbalance is the imbalance of the live nodes' copies, bytes and SMTP
// sessions (one value per node each), for the simulated and the real
// reports alike.
func NewImbalance(copies, bytes, smtp []float64) Imbalance {
	return Imbalance{
		CopiesMaxOverMean: maxOverMean(copies),
		BytesMaxOverMean:  maxOverMean(bytes),
		SMTPMaxOverMean:   maxOverMean(smtp),
	}
}

func maxOverMean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var sum, mx float64
	for _, x := range xs {
		sum += x
		mx = max(mx, x)
	}
	if sum == 0 {
		return 0
	}
	return roundTo(mx/(sum/float64(len(xs))), 4)
}

// rebuildReport turns the sampler's series into episodes.
func (s *simulation) rebuildReport(r *Report) RebuildReport {
	out := RebuildReport{Episodes: []Episode{}}
	for _, nr := range r.Nodes {
		out.Copies += nr.RebuiltCopies
		out.Bytes += nr.RebuiltBytes
	}
	s.mu.Lock()
	samples := slices.Clone(s.samples)
	s.mu.Unlock()
	ep := episodes(samples)
	out.Episodes, out.Seconds = ep.Episodes, ep.Seconds
	return out
}

// unavailability finds the windows from a failed or rejected delivery to
// the next accepted one, by completion time.
func unavailability(recs []Record) Unavailability {
	type done struct {
		at time.Duration
		ok bool
	}
	var ds []done
	for i := range recs {
		switch recs[i].Outcome {
		case Accepted:
			ds = append(ds, done{recs[i].Done, true})
		case Rejected, Failed:
			ds = append(ds, done{recs[i].Done, false})
		}
	}
	slices.SortStableFunc(ds, func(a, b done) int {
		switch {
		case a.at < b.at:
			return -1
		case a.at > b.at:
			return 1
		}
		return 0
	})
	out := Unavailability{Windows: []Window{}}
	var cur *Window
	var last time.Duration
	for _, d := range ds {
		switch {
		case !d.ok && cur == nil:
			cur = &Window{StartS: roundTo(d.at.Seconds(), 3), Failed: 1}
			last = d.at
		case !d.ok:
			cur.Failed++
			last = d.at
		case cur != nil:
			cur.EndS = roundTo(d.at.Seconds(), 3)
			out.Windows = append(out.Windows, *cur)
			cur = nil
		}
	}
	if cur != nil {
		cur.EndS = roundTo(last.Seconds(), 3)
		out.Windows = append(out.Windows, *cur)
	}
	var total float64
	for _, w := range out.Windows {
		total += w.EndS - w.StartS
	}
	out.Seconds = roundTo(total, 3)
	return out
}

// timeline buckets outcomes by virtual second of completion (offered by
// arrival).
func timeline(recs []Record, end time.Duration) []TimelinePoint {
	n := int(math.Ceil(end.Seconds()))
	pts := make([]TimelinePoint, n)
	lats := make([][]time.Duration, n)
	for i := range pts {
		pts[i].TS = i
	}
	bucket := func(d time.Duration) int { return min(max(int(d/time.Second), 0), n-1) }
	for i := range recs {
		rec := &recs[i]
		pts[bucket(rec.Arrive)].Offered++
		b := bucket(rec.Done)
		switch rec.Outcome {
		case Accepted:
			pts[b].Accepted++
			lats[b] = append(lats[b], rec.Latency())
		case Rejected:
			pts[b].Rejected++
		case Failed:
			pts[b].Failed++
		}
	}
	for i := range pts {
		slices.Sort(lats[i])
		pts[i].P99Ms = ms(quantile(lats[i], 0.99))
	}
	return pts
}

// networkReport splits SimNet's traffic into client and peer bytes.
func (s *simulation) networkReport(accepted int) NetworkReport {
	st := s.net.Stats()
	out := NetworkReport{Events: st.Events, DroppedDatagrams: st.Dropped}
	isNode := func(ip string) bool { _, ok := s.byIP[ip]; return ok }
	for _, l := range st.Links {
		switch {
		case isNode(l.From) && isNode(l.To):
			if l.From != l.To {
				out.PeerBytes += l.Bytes
			}
		default:
			out.ClientBytes += l.Bytes
		}
	}
	if accepted > 0 {
		out.PeerBytesPerMsg = roundTo(float64(out.PeerBytes)/float64(accepted), 1)
	}
	return out
}

// wallFigures are the machine-dependent figures.
func (s *simulation) wallFigures(r *Report) WallReport {
	w := WallSince(s.wall0).Seconds()
	if w <= 0 {
		return WallReport{}
	}
	return WallReport{
		Seconds:         roundTo(w, 3),
		SimMsgsPerWallS: roundTo(float64(r.Accepted)/w, 1),
		EventsPerWallS:  roundTo(float64(r.Network.Events)/w, 1),
		VirtualPerWallS: roundTo(r.VirtualSeconds/w, 3),
	}
}

// StableJSON is the JSON with the wall section zeroed: what two runs of
// the same scenario and seed must agree on byte for byte.
func (r *Report) StableJSON() ([]byte, error) {
	c := *r
	c.Wall = WallReport{}
	return c.JSON()
}

// summarize counts r.Records by outcome and fills the throughput, latency
// summary and CDF, and whether the scenario's p99 target was met.
// onAccepted, if set, sees each accepted record.
func (r *Report) summarize(sc Scenario, onAccepted func(*Record)) {
	var lat []time.Duration
	var sum time.Duration
	for i := range r.Records {
		rec := &r.Records[i]
		r.Offered++
		switch rec.Outcome {
		case Accepted:
			r.Accepted++
			r.AcceptedBytes += int64(rec.Size)
			lat = append(lat, rec.Latency())
			sum += rec.Latency()
			if onAccepted != nil {
				onAccepted(rec)
			}
		case Rejected:
			r.Rejected++
			r.RejectedByCode[strconv.Itoa(rec.Code)]++
		case Failed:
			r.Failed++
			r.FailedByReason[rec.Reason]++
		case Dropped:
			r.ClientDropped++
		case Unsent:
			r.Unsent++
		}
	}
	r.Throughput = roundTo(float64(r.Accepted)/sc.Duration.D().Seconds(), 3)
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		r.Latency = LatencySummary{
			Mean: ms(sum / time.Duration(n)), P50: ms(quantile(lat, 0.5)), P95: ms(quantile(lat, 0.95)),
			P99: ms(quantile(lat, 0.99)), P999: ms(quantile(lat, 0.999)), Max: ms(lat[n-1]),
		}
		for p := 1; p <= 99; p++ {
			r.LatencyCDF = append(r.LatencyCDF, CDFPoint{P: float64(p) / 100, Ms: ms(quantile(lat, float64(p)/100))})
		}
		for _, q := range []float64{0.995, 0.999, 1} {
			r.LatencyCDF = append(r.LatencyCDF, CDFPoint{P: q, Ms: ms(quantile(lat, q))})
		}
	}
	r.TargetP99Ms = ms(sc.TargetP99.D())
	r.TargetMet = sc.TargetP99 == 0 || (r.Accepted > 0 && r.Latency.P99 <= r.TargetP99Ms)
}
