package report

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// KindTruth marks results/truth.json: the simulator's predictions for a
// real heterogeneous array against measurements of it (make truth).
const KindTruth = "truth"

// The bounds (issue 20) for a prediction to count as right.
const (
	TruthSaturationBoundPct = 25.0
	TruthP50BoundPct        = 30.0
	TruthShareBoundPP       = 5.0
)

// Truth is make truth's result: per strategy, what the simulator predicted
// for the array and what the containers did.
type Truth struct {
	Kind string `json:"kind"`
	// Quick: a smoke run (TRUTH_QUICK): short runs, few probes; its figures
	// say that the tooling works, nothing about the model.
	Quick bool `json:"quick"`
	// Profile names the cost profile the predictions used, and its
	// machine and date.
	Profile        string `json:"profile"`
	ProfileMachine string `json:"profile_machine"`
	ProfileDate    string `json:"profile_date"`
	// NominalRate is the offered rate of the nominal run, NominalSeconds
	// its load (the saturation probes run the search's own durations).
	NominalRate    float64 `json:"nominal_rate_msgs_per_sec"`
	NominalSeconds float64 `json:"nominal_seconds"`
	// Criterion is the saturation search's pass criterion, the same on
	// both sides.
	Criterion string      `json:"criterion"`
	Array     []TruthNode `json:"array"`
	// HostCPUs is the machine's CPU count, which the quotas share with the
	// load generator.
	HostCPUs int `json:"host_cpus"`
	// HostCPUPerMsgMs is the scenario's host_cpu_per_msg: what a message
	// costs the modeled host beyond the nodes (the load generator, the
	// kernel); 0 in runs before the model had a host.
	HostCPUPerMsgMs float64         `json:"host_cpu_per_msg_ms,omitempty"`
	Strategies      []TruthStrategy `json:"strategies"`
	// Ranking by saturation, best first, from each side; Concordant of
	// Pairs strategy pairs are ordered alike by both.
	RankingPredicted []string `json:"ranking_predicted"`
	RankingMeasured  []string `json:"ranking_measured"`
	RankAgree        bool     `json:"rank_agree"`
	Concordant       int      `json:"rank_concordant_pairs"`
	Pairs            int      `json:"rank_pairs"`
	// Core is the same for TruthCoreStrategies alone, in a run that
	// compares more; nil otherwise.
	Core        *TruthCore `json:"core,omitempty"`
	WallSeconds float64    `json:"wall_seconds"`
	// HostBusyBefore is the machine's busy share of its CPUs over a few
	// seconds before the run started (/proc/stat): other work on the
	// machine, which the measured side shares the CPUs with. Absent where
	// it could not be read.
	HostBusyBefore float64 `json:"host_busy_before,omitempty"`
}

// LoadTruth reads results/truth.json.
func LoadTruth(path string) (*Truth, error) {
	var t Truth
	if err := loadKind(path, KindTruth, &t); err != nil {
		return nil, err
	}
	// The rankings derive from the strategies: a file written before the
	// core ranking existed gets it on re-rendering.
	t.Rank()
	return &t, nil
}

// TruthNode is one node of the array as both sides run it.
type TruthNode struct {
	Name string `json:"name"`
	// CPUQuota is docker --cpus and the scenario's cpu_quota.
	CPUQuota float64 `json:"cpu_quota"`
	// SyncDelayMs is the emulated slow disk: --test-fault store.sync on the
	// container, added to disk_fsync in the scenario.
	SyncDelayMs float64 `json:"sync_delay_ms"`
	// DiskFsyncMs is the scenario's sync latency for the node (the
	// profile's, plus the delay).
	DiskFsyncMs float64 `json:"disk_fsync_ms"`
	Weight      int     `json:"weight"`
	// The scenario's CPU costs for the node (the profile's): a charge of
	// the nominal load's median size, the background share of a CPU, and
	// the idle CPU that work preempts.
	ChargeMs float64 `json:"charge_ms,omitempty"`
	// BusyChargeMs is the same charge on a node already at work
	// (cpu_per_msg_busy); 0: the model charges ChargeMs at any load.
	BusyChargeMs  float64 `json:"busy_charge_ms,omitempty"`
	CPUBackground float64 `json:"cpu_background,omitempty"`
	CPUIdle       float64 `json:"cpu_idle,omitempty"`
	// Cores is the scenario's cpu_cores: the threads Go runs the
	// container's process on (GOMAXPROCS).
	Cores int `json:"cpu_cores,omitempty"`
}

// TruthSide is one side's figures for one strategy.
type TruthSide struct {
	SaturationMsgsPerSec float64 `json:"saturation_msgs_per_sec"`
	FirstFailMsgsPerSec  float64 `json:"first_fail_msgs_per_sec"`
	// The nominal run's latency (arrival to 250) and copy shares.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// MeanMs is the nominal run's mean latency: where the latencies have
	// two modes (an even strategy on an array with one slow disk) the
	// median jumps between them with a point of copy share, the mean
	// moves with it smoothly. 0 in runs before it was recorded.
	MeanMs    float64            `json:"mean_ms,omitempty"`
	Accepted  int                `json:"accepted"`
	Offered   int                `json:"offered"`
	Lost      int                `json:"lost"`
	CopyShare map[string]float64 `json:"copy_share"`
	// NodeCPU is each node's CPU utilisation of its quota in the nominal
	// run.
	NodeCPU map[string]float64 `json:"node_cpu_utilization,omitempty"`
	// LoadGenCPUCores is the load generator's CPU (cores) over the nominal
	// run, LoadGenCPUCoresMax the largest over the probes: measured side
	// only, so that a run limited by its own client shows.
	LoadGenCPUCores    float64 `json:"load_generator_cpu_cores,omitempty"`
	LoadGenCPUCoresMax float64 `json:"load_generator_cpu_cores_max,omitempty"`
	Probes             []Probe `json:"probes"`
}

// TruthStrategy is one strategy's prediction against its measurement, in
// the shape issue 20 asks for (predicted_/measured_ pairs).
type TruthStrategy struct {
	Strategy              string             `json:"strategy"`
	PredictedSaturation   float64            `json:"predicted_saturation_msgs_per_sec"`
	MeasuredSaturation    float64            `json:"measured_saturation_msgs_per_sec"`
	SaturationErrorPct    float64            `json:"saturation_error_pct"`
	PredictedP50Ms        float64            `json:"predicted_p50_ms"`
	MeasuredP50Ms         float64            `json:"measured_p50_ms"`
	P50ErrorPct           float64            `json:"p50_error_pct"`
	PredictedMeanMs       float64            `json:"predicted_mean_ms,omitempty"`
	MeasuredMeanMs        float64            `json:"measured_mean_ms,omitempty"`
	MeanErrorPct          float64            `json:"mean_error_pct,omitempty"`
	PredictedP99Ms        float64            `json:"predicted_p99_ms"`
	MeasuredP99Ms         float64            `json:"measured_p99_ms"`
	PredictedCopyShare    map[string]float64 `json:"predicted_copy_share"`
	MeasuredCopyShare     map[string]float64 `json:"measured_copy_share"`
	CopyShareMaxDiffPP    float64            `json:"copy_share_max_diff_pp"`
	SaturationWithinBound bool               `json:"saturation_within_bound"`
	P50WithinBound        bool               `json:"p50_within_bound"`
	CopyShareWithinBound  bool               `json:"copy_share_within_bound"`
	Predicted             TruthSide          `json:"predicted"`
	Measured              TruthSide          `json:"measured"`
}

// errPct is (predicted - measured) / measured in percent; NaN-free: a
// measured 0 gives 0 when both are 0 and 100 otherwise.
func errPct(pred, meas float64) float64 {
	if meas == 0 {
		if pred == 0 {
			return 0
		}
		return 100
	}
	return round4((pred-meas)/meas*100*100) / 100
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// NewTruthStrategy compares the two sides of one strategy.
func NewTruthStrategy(name string, pred, meas TruthSide) TruthStrategy {
	s := TruthStrategy{Strategy: name, Predicted: pred, Measured: meas,
		PredictedSaturation: pred.SaturationMsgsPerSec, MeasuredSaturation: meas.SaturationMsgsPerSec,
		PredictedP50Ms: pred.P50Ms, MeasuredP50Ms: meas.P50Ms, PredictedP99Ms: pred.P99Ms, MeasuredP99Ms: meas.P99Ms,
		PredictedCopyShare: pred.CopyShare, MeasuredCopyShare: meas.CopyShare,
		PredictedMeanMs: pred.MeanMs, MeasuredMeanMs: meas.MeanMs}
	s.SaturationErrorPct = errPct(pred.SaturationMsgsPerSec, meas.SaturationMsgsPerSec)
	if pred.MeanMs > 0 && meas.MeanMs > 0 {
		s.MeanErrorPct = errPct(pred.MeanMs, meas.MeanMs)
	}
	s.P50ErrorPct = errPct(pred.P50Ms, meas.P50Ms)
	for n, m := range meas.CopyShare {
		s.CopyShareMaxDiffPP = max(s.CopyShareMaxDiffPP, round4(math.Abs(pred.CopyShare[n]-m)*100))
	}
	for n, p := range pred.CopyShare {
		s.CopyShareMaxDiffPP = max(s.CopyShareMaxDiffPP, round4(math.Abs(p-meas.CopyShare[n])*100))
	}
	s.SaturationWithinBound = math.Abs(s.SaturationErrorPct) <= TruthSaturationBoundPct
	s.P50WithinBound = math.Abs(s.P50ErrorPct) <= TruthP50BoundPct
	s.CopyShareWithinBound = s.CopyShareMaxDiffPP <= TruthShareBoundPP
	return s
}

// Rank fills the rankings by saturation (best first; ties keep the table
// order) and their agreement: the orders are the same, and how many
// strategy pairs both sides order alike (a tie on one side and not the
// other is a disagreement); and the same for the three strategies
// (TruthCoreStrategies) where the run has them all.
func (t *Truth) Rank() {
	r := rankOf(t.Strategies)
	t.RankingPredicted, t.RankingMeasured, t.Concordant, t.Pairs, t.RankAgree = r.predicted, r.measured, r.concordant, r.pairs, r.agree
	t.Core = nil
	var core []TruthStrategy
	for _, name := range TruthCoreStrategies {
		if i := slices.IndexFunc(t.Strategies, func(s TruthStrategy) bool { return s.Strategy == name }); i >= 0 {
			core = append(core, t.Strategies[i])
		}
	}
	if len(core) < len(TruthCoreStrategies) || len(core) == len(t.Strategies) {
		return
	}
	c := rankOf(core)
	t.Core = &TruthCore{Strategies: TruthCoreStrategies, RankingPredicted: c.predicted, RankingMeasured: c.measured,
		RankAgree: c.agree, Concordant: c.concordant, Pairs: c.pairs, WithinBounds: true}
	for _, s := range core {
		t.Core.WithinBounds = t.Core.WithinBounds && s.SaturationWithinBound && s.P50WithinBound && s.CopyShareWithinBound
	}
}

// TruthCoreStrategies are the strategies issue 20 requires at least.
var TruthCoreStrategies = []string{"roundrobin", "leastload", "weighted"}

// TruthCore is the ranking among TruthCoreStrategies alone, and whether
// each of them is within every bound.
type TruthCore struct {
	Strategies       []string `json:"strategies"`
	RankingPredicted []string `json:"ranking_predicted"`
	RankingMeasured  []string `json:"ranking_measured"`
	RankAgree        bool     `json:"rank_agree"`
	Concordant       int      `json:"rank_concordant_pairs"`
	Pairs            int      `json:"rank_pairs"`
	// WithinBounds: each of them has saturation, p50 and copy shares
	// within the bounds.
	WithinBounds bool `json:"within_bounds"`
}

// ranking is one set of strategies ranked by both sides.
type ranking struct {
	predicted, measured []string
	concordant, pairs   int
	agree               bool
}

func rankOf(strategies []TruthStrategy) ranking {
	order := func(sat func(TruthStrategy) float64) []string {
		ss := slices.Clone(strategies)
		slices.SortStableFunc(ss, func(a, b TruthStrategy) int {
			switch x, y := sat(a), sat(b); {
			case x > y:
				return -1
			case x < y:
				return 1
			}
			return 0
		})
		var out []string
		for _, s := range ss {
			out = append(out, s.Strategy)
		}
		return out
	}
	sign := func(x float64) int {
		switch {
		case x > 0:
			return 1
		case x < 0:
			return -1
		}
		return 0
	}
	r := ranking{predicted: order(func(s TruthStrategy) float64 { return s.PredictedSaturation }),
		measured: order(func(s TruthStrategy) float64 { return s.MeasuredSaturation })}
	for i := range strategies {
		for j := i + 1; j < len(strategies); j++ {
			a, b := strategies[i], strategies[j]
			r.pairs++
			if sign(a.PredictedSaturation-b.PredictedSaturation) == sign(a.MeasuredSaturation-b.MeasuredSaturation) {
				r.concordant++
			}
		}
	}
	r.agree = r.concordant == r.pairs
	return r
}

// busyCharge is a node's charge at work, or "-" where the model has none.
func busyCharge(n TruthNode) string {
	if n.BusyChargeMs <= 0 {
		return "-"
	}
	return strconv.FormatFloat(n.BusyChargeMs, 'f', 2, 64) + " ms"
}

// RenderTruth renders results/truth.md and its chart.
func RenderTruth(t *Truth, o Options) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# The simulator against a real heterogeneous array (make truth)\n\n")
	b.WriteString("Generated by `make truth` (bench/cmd/truth); docs/bench.md \"Truth run\" says how. ")
	b.WriteString("Four `mailarray serve` containers with unequal CPU quotas and one emulated slow disk, driven by the real load generator; ")
	fmt.Fprintf(&b, "the same array as a scenario with the costs of profile `%s` (measured on %s, %s) predicts the same figures.\n\n", t.Profile, t.ProfileMachine, t.ProfileDate)
	if t.Quick {
		b.WriteString("**Smoke run (TRUTH_QUICK):** short runs and few probes, to check that the tooling works end to end. These figures say nothing about the model.\n\n")
	}
	b.WriteString("## The array\n\n")
	var rows [][]string
	for _, n := range t.Array {
		rows = append(rows, []string{n.Name, ftoa(n.CPUQuota), strconv.Itoa(n.Cores), msFig(n.SyncDelayMs), msFig(n.DiskFsyncMs),
			strconv.FormatFloat(n.ChargeMs, 'f', 2, 64) + " ms", busyCharge(n), strconv.FormatFloat(n.CPUBackground, 'f', 3, 64), strconv.FormatFloat(n.CPUIdle, 'f', 3, 64), strconv.Itoa(n.Weight)})
	}
	table(&b, []string{"node", "CPU quota (cores: docker --cpus, cpu_quota)", "threads (GOMAXPROCS, cpu_cores)", "emulated sync delay (--test-fault store.sync)", "modeled disk_fsync", "modeled CPU per charge (median size)", "the same on a node at work (cpu_per_msg_busy)", "modeled background (CPUs)", "modeled idle CPU (CPUs)", "weight"}, "lrrrrrrrrr", rows)
	fmt.Fprintf(&b, "\nThe host has %d CPUs; the quotas leave the rest to the load generator. ", t.HostCPUs)
	if t.HostCPUPerMsgMs > 0 {
		fmt.Fprintf(&b, "The scenario shares the host's %d CPUs among the nodes and %.3f ms of host CPU per message offered beyond them (`host_cpu_per_msg`: the load generator and the kernel, from make calibrate). ", t.HostCPUs, t.HostCPUPerMsgMs)
	}
	fmt.Fprintf(&b, "Nominal run: %s msgs/s offered for %s s. Saturation probe: %s.\n\n",
		rate(t.NominalRate), ftoa(t.NominalSeconds), t.Criterion)

	b.WriteString("## Prediction against measurement\n\n")
	fmt.Fprintf(&b, "Error is (predicted - measured) / measured. Bounds (issue 20): saturation within ±%.0f%%, p50 within ±%.0f%%, every node's copy share within %.0f percentage points.\n\n",
		TruthSaturationBoundPct, TruthP50BoundPct, TruthShareBoundPP)
	rows = nil
	means := slices.ContainsFunc(t.Strategies, func(s TruthStrategy) bool { return s.MeasuredMeanMs > 0 })
	for _, s := range t.Strategies {
		row := []string{s.Strategy,
			rate(s.PredictedSaturation), rate(s.MeasuredSaturation), signedPct(s.SaturationErrorPct) + mark(s.SaturationWithinBound),
			msFig(s.PredictedP50Ms), msFig(s.MeasuredP50Ms), signedPct(s.P50ErrorPct) + mark(s.P50WithinBound)}
		if means {
			row = append(row, msFig(s.PredictedMeanMs), msFig(s.MeasuredMeanMs), signedPct(s.MeanErrorPct))
		}
		rows = append(rows, append(row, msFig(s.PredictedP99Ms), msFig(s.MeasuredP99Ms),
			strconv.FormatFloat(s.CopyShareMaxDiffPP, 'f', 1, 64)+" pp"+mark(s.CopyShareWithinBound)))
	}
	head := []string{"strategy", "saturation predicted (msgs/s)", "measured", "error", "p50 predicted", "measured", "error"}
	if means {
		head = append(head, "mean predicted", "measured", "error")
	}
	head = append(head, "p99 predicted", "measured", "copy share: largest gap")
	table(&b, head, "l"+strings.Repeat("r", len(head)-1), rows)
	fmt.Fprintf(&b, "\nRanking by saturation, best first: predicted %s; measured %s. ", strings.Join(t.RankingPredicted, " > "), strings.Join(t.RankingMeasured, " > "))
	if t.Pairs > 0 {
		fmt.Fprintf(&b, "%d of %d strategy pairs are ordered alike (%s).\n\n", t.Concordant, t.Pairs, map[bool]string{true: "the rankings agree", false: "the rankings differ"}[t.RankAgree])
		if c := t.Core; c != nil {
			fmt.Fprintf(&b, "Among the three strategies issue 20 requires (%s): predicted %s; measured %s: %d of %d pairs alike (%s), and %s.\n\n",
				strings.Join(c.Strategies, ", "), strings.Join(c.RankingPredicted, " > "), strings.Join(c.RankingMeasured, " > "), c.Concordant, c.Pairs,
				map[bool]string{true: "the rankings agree", false: "the rankings differ"}[c.RankAgree],
				map[bool]string{true: "each of the three is within every bound", false: "not every one of them is within every bound"}[c.WithinBounds])
		}
	} else {
		b.WriteString("One strategy: no ranking to compare.\n\n")
	}
	if o.ImgDir != "" {
		if err := truthChart(t, filepath.Join(o.ImgDir, "truth.png")); err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "![prediction against measurement](%s/truth.png)\n\n", o.ImgRel)
	}

	truthModel(&b, t)

	b.WriteString("## Copy share per node (nominal run)\n\n")
	for _, s := range t.Strategies {
		fmt.Fprintf(&b, "### %s\n\n", s.Strategy)
		rows = nil
		for _, n := range t.Array {
			rows = append(rows, []string{n.Name, pct(s.PredictedCopyShare[n.Name]), pct(s.MeasuredCopyShare[n.Name]),
				strconv.FormatFloat((s.PredictedCopyShare[n.Name]-s.MeasuredCopyShare[n.Name])*100, 'f', 1, 64) + " pp",
				pct(s.Predicted.NodeCPU[n.Name]), pct(s.Measured.NodeCPU[n.Name])})
		}
		table(&b, []string{"node", "predicted share", "measured share", "gap", "CPU of quota, predicted", "measured"}, "lrrrrr", rows)
		fmt.Fprintf(&b, "\nLoad generator: %.2f cores over the nominal run, at most %.2f over a probe (of %d). Nominal run: predicted %d of %d accepted, measured %d of %d, %d lost.\n\n",
			s.Measured.LoadGenCPUCores, s.Measured.LoadGenCPUCoresMax, t.HostCPUs, s.Predicted.Accepted, s.Predicted.Offered, s.Measured.Accepted, s.Measured.Offered, s.Measured.Lost)
	}

	b.WriteString("## Probes\n\n")
	for _, s := range t.Strategies {
		for _, side := range []struct {
			name string
			ts   TruthSide
		}{{"predicted", s.Predicted}, {"measured", s.Measured}} {
			fmt.Fprintf(&b, "%s, %s: sustains %s msgs/s (first failure %s).\n\n", s.Strategy, side.name, rate(side.ts.SaturationMsgsPerSec), rate(side.ts.FirstFailMsgsPerSec))
			rows = nil
			for _, p := range side.ts.Probes {
				v := "pass"
				if !p.Pass {
					v = "fail: " + p.Why
				}
				host := "-"
				if p.HostUtil > 0 {
					host = pct(p.HostUtil)
				}
				rows = append(rows, []string{rate(p.OfferedRate), strconv.Itoa(p.Senders), strconv.Itoa(p.Accepted) + " / " + strconv.Itoa(p.Offered),
					msFig(p.P50Ms), msFig(p.P99Ms), host, v})
			}
			table(&b, []string{"offered (msgs/s)", "senders", "accepted", "p50", "p99", "host CPU busy", "verdict"}, "rrrrrrl", rows)
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "Wall time of the run: %s.", secs(t.WallSeconds))
	if t.HostBusyBefore > 0 {
		fmt.Fprintf(&b, " Before it started the machine was %s busy with other work", pct(t.HostBusyBefore))
		if t.HostBusyBefore > TruthQuietHostBusy {
			b.WriteString(" (more than a quiet machine: the measured side shared the CPUs with it)")
		}
		b.WriteString(".")
	}
	b.WriteString("\n")
	return []byte(b.String()), nil
}

// TruthQuietHostBusy is the most of its CPUs a machine may be busy with
// other work before a truth run and still count as quiet.
const TruthQuietHostBusy = 0.10

func mark(ok bool) string {
	if ok {
		return " ✓"
	}
	return " ✗"
}

func msFig(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + " ms" }

func signedPct(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + "%" }

// truthChart draws predicted against measured saturation and p50, per
// strategy.
func truthChart(t *Truth, path string) error {
	var names []string
	var satP, satM, p50P, p50M plotter.Values
	for _, s := range t.Strategies {
		names = append(names, s.Strategy)
		satP, satM = append(satP, s.PredictedSaturation), append(satM, s.MeasuredSaturation)
		p50P, p50M = append(p50P, s.PredictedP50Ms), append(p50M, s.MeasuredP50Ms)
	}
	w := vg.Points(22)
	panel := func(title, y string, pred, meas plotter.Values) (*plot.Plot, error) {
		p := newPlot(title, "strategy", y)
		for i, v := range []struct {
			label string
			v     plotter.Values
		}{{"predicted (simulator)", pred}, {"measured (containers)", meas}} {
			bar, err := plotter.NewBarChart(v.v, w)
			if err != nil {
				return nil, fmt.Errorf("report: truth chart: %w", err)
			}
			bar.Color, bar.LineStyle.Width = colorAt(i), 0
			bar.Offset = w * vg.Length(float64(i)-0.5)
			p.Add(bar)
			p.Legend.Add(v.label, bar)
		}
		p.Y.Min, p.Y.Max = 0, max(slices.Max(pred), slices.Max(meas), 1)*1.35
		p.NominalX(names...)
		p.Legend.Left = true
		return p, nil
	}
	top, err := panel("Saturation: highest offered rate sustained", "msgs/s offered", satP, satM)
	if err != nil {
		return err
	}
	bot, err := panel(fmt.Sprintf("p50 latency at the nominal load (%s msgs/s)", rate(t.NominalRate)), "ms", p50P, p50M)
	if err != nil {
		return err
	}
	return writePNG(path, chartWidth, chartTallHeight, top, bot)
}

// truth is the comparison page's summary of make truth: one row per
// strategy, the ranking agreement, and the link to truth.md.
func (c *Comparison) truth(b *strings.Builder) {
	t := c.Truth
	if t == nil {
		return
	}
	b.WriteString("## The simulator against real containers (machine-dependent)\n\n")
	fmt.Fprintf(b, "[truth.md](truth.md): `make truth` ran the strategies on four `mailarray serve` containers with CPU quotas and one emulated slow disk, and the same array as a scenario with the costs of profile `%s`. Error is (predicted - measured) / measured; ✓ within the bounds of issue 20 (saturation ±%.0f%%, p50 ±%.0f%%, copy shares %.0f points).",
		t.Profile, TruthSaturationBoundPct, TruthP50BoundPct, TruthShareBoundPP)
	if t.Quick {
		b.WriteString(" **A smoke run: these figures say nothing about the model.**")
	}
	b.WriteString("\n\n")
	var rows [][]string
	for _, s := range t.Strategies {
		rows = append(rows, []string{s.Strategy, rate(s.PredictedSaturation), rate(s.MeasuredSaturation), signedPct(s.SaturationErrorPct) + mark(s.SaturationWithinBound),
			msFig(s.PredictedP50Ms), msFig(s.MeasuredP50Ms), signedPct(s.P50ErrorPct) + mark(s.P50WithinBound),
			strconv.FormatFloat(s.CopyShareMaxDiffPP, 'f', 1, 64) + " pp" + mark(s.CopyShareWithinBound)})
	}
	table(b, []string{"strategy", "saturation predicted (msgs/s)", "measured", "error", "p50 predicted", "measured", "error", "copy share: largest gap"}, "lrrrrrrr", rows)
	if t.Pairs > 0 {
		fmt.Fprintf(b, "\nRanking by saturation: predicted %s, measured %s (%d of %d pairs alike).\n", strings.Join(t.RankingPredicted, " > "), strings.Join(t.RankingMeasured, " > "), t.Concordant, t.Pairs)
	}
	b.WriteString("\n")
	truthTrust(b, t)
}
