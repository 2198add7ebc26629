package report

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// Options say where a rendered page puts its charts.
type Options struct {
	// ImgDir is the directory the PNG charts are written to.
	ImgDir string
	// ImgRel is how the markdown links to ImgDir (relative to the page).
	ImgRel string
}

// Limits of the unavailability table: windows closer than periodGapS are
// shown as one period, and at most maxPeriodRows periods are listed.
const (
	periodGapS    = 1.0
	maxPeriodRows = 12
)

// mergeWindows joins windows that start less than gap seconds after the
// previous one ended.
func mergeWindows(ws []Window, gap float64) []Window {
	var out []Window
	for _, w := range ws {
		if n := len(out); n > 0 && w.StartS-out[n-1].EndS < gap {
			out[n-1].EndS = max(out[n-1].EndS, w.EndS)
			out[n-1].Failed += w.Failed
			continue
		}
		out = append(out, w)
	}
	return out
}

// effectWindowS is how many seconds before and after a fault the page
// compares to describe the fault's effect.
const effectWindowS = 5

// chart names one chart of a page: file <scenario>-<suffix>.png.
type chart struct {
	suffix, title, alt string
	draw               func(*Report, string) error
}

var scenarioCharts = []chart{
	{"throughput", "Throughput over time", "messages per second over the run and the p99 latency of each second", throughputChart},
	{"nodes", "Per-node load", "each node's share of SMTP sessions, copies and bytes, and how busy its CPU and disk were", nodesChart},
	{"latency", "Latency CDF", "cumulative distribution of the latency of accepted messages", latencyChart},
}

// ChartFiles lists the PNG files RenderScenario writes for scenario name.
func ChartFiles(name string) []string {
	var out []string
	for _, c := range scenarioCharts {
		out = append(out, name+"-"+c.suffix+".png")
	}
	return out
}

// RenderScenario writes r's charts into o.ImgDir and returns its page:
// a summary, the figures, the per-node table, the charts, the faults and
// their effect, and the machine-dependent wall figures, in that order.
// The page is a function of the report alone.
func RenderScenario(r *Report, o Options) ([]byte, error) {
	for _, c := range scenarioCharts {
		if err := c.draw(r, filepath.Join(o.ImgDir, r.Scenario+"-"+c.suffix+".png")); err != nil {
			return nil, err
		}
	}
	var b strings.Builder
	mode := "simulator, virtual time"
	if r.Real() {
		mode = "real sockets, wall-clock time"
	}
	fmt.Fprintf(&b, "# Scenario %s (%s)\n\n", code(r.Scenario), mode)
	b.WriteString(summary(r) + "\n\n")
	b.WriteString("## Figures\n\n")
	figures(&b, r)
	b.WriteString("## Nodes\n\n")
	nodesTable(&b, r)
	b.WriteString("## Charts\n\n")
	for _, c := range scenarioCharts {
		fmt.Fprintf(&b, "### %s\n\n![%s: %s](%s)\n\n", c.title, r.Scenario, c.alt, filepath.ToSlash(filepath.Join(o.ImgRel, r.Scenario+"-"+c.suffix+".png")))
	}
	b.WriteString("## Faults and their effect\n\n")
	faultsSection(&b, r)
	b.WriteString("## Wall clock (machine-dependent)\n\n")
	wallSection(&b, r)
	b.WriteString("## Reproduce\n\n")
	if r.Real() {
		fmt.Fprintf(&b, "```sh\nmake bench-real SCENARIO=%s   # scenarios/%s.yaml against bin/mailarray on loopback\n```\n", r.Config.Name, r.Config.Name)
	} else {
		fmt.Fprintf(&b, "```sh\nmake bench SCENARIO=%s   # scenarios/%s.yaml -> results/%s.json and this page\n```\n", r.Scenario, r.Scenario, r.Scenario)
	}
	return []byte(b.String()), nil
}

// describeLoad is the load in a phrase.
func describeLoad(c Config) string {
	l := c.Load
	arrival := map[string]string{"poisson": "Poisson", "constant": "constant-rate", "bursty": "bursty Poisson"}[l.Arrival]
	if arrival == "" {
		arrival = l.Arrival
	}
	s := fmt.Sprintf("%s load at %s msgs/s offered", arrival, rate(l.RatePerSec))
	if l.Arrival == "bursty" {
		s += fmt.Sprintf(" (x%g in bursts)", l.BurstFactor)
	}
	sz := "fixed " + kib(float64(l.Size.MedianBytes))
	if l.Size.Dist == "lognormal" {
		sz = fmt.Sprintf("lognormal sizes, median %s, sigma %g", kib(float64(l.Size.MedianBytes)), l.Size.Sigma)
	}
	s += fmt.Sprintf(" (%s; %s senders", sz, num(l.Senders))
	if l.ZipfS > 1 {
		s += fmt.Sprintf("; Zipf(%g) recipients over %s mailboxes", l.ZipfS, num(c.Mailboxes))
	} else {
		s += fmt.Sprintf("; uniform recipients over %s mailboxes", num(c.Mailboxes))
	}
	if l.UrgentFraction > 0 {
		s += fmt.Sprintf("; %s urgent", pct(l.UrgentFraction))
	}
	if l.Readers > 0 {
		s += fmt.Sprintf("; %s", plural(l.Readers, "POP3 reader"))
	}
	return s + ")"
}

// nodeNames lists the config's initial nodes and its spares.
func nodeNames(c Config) (initial, spares []string) {
	for _, n := range c.Nodes {
		if n.Spare {
			spares = append(spares, n.Name)
		} else {
			initial = append(initial, n.Name)
		}
	}
	return initial, spares
}

// summary is the page's opening paragraph: what ran and the headline
// figures.
func summary(r *Report) string {
	c := r.Config
	initial, spares := nodeNames(c)
	var b strings.Builder
	fmt.Fprintf(&b, "%s ran %s (%s", code(r.Scenario), plural(len(initial), "node"), strings.Join(initial, ", "))
	if len(spares) > 0 {
		fmt.Fprintf(&b, ", spares %s", strings.Join(spares, ", "))
	}
	fmt.Fprintf(&b, "; R=%d, W=%d; DNS strategy %s, placement %s) under %s of %s, then a %s drain, seed %d",
		c.Replicas, c.WriteQuorum, code(c.DNSStrategy), code(c.PlacementStrategy), secs(r.LoadSeconds), describeLoad(c),
		secs(Dur(c.Drain).Seconds()), r.Seed)
	if r.Real() {
		b.WriteString(", against `mailarray serve` processes on loopback, timed by the wall clock.")
	} else {
		b.WriteString(", in the simulator (all times virtual).")
	}
	fmt.Fprintf(&b, " The array accepted %s of %s offered messages (%s msgs/s), rejected %s, failed %s",
		num(r.Accepted), num(r.Offered), rate(r.Throughput), num(r.Rejected), num(r.Failed))
	if r.ClientDropped > 0 || r.Unsent > 0 {
		fmt.Fprintf(&b, ", dropped %s at the client and left %s unsent", num(r.ClientDropped), num(r.Unsent))
	}
	if r.Lost == 0 {
		b.WriteString(", and lost none.")
	} else {
		fmt.Fprintf(&b, ", and **lost %s acknowledged messages**.", num(r.Lost))
	}
	if r.PendingAtEnd > 0 {
		fmt.Fprintf(&b, " %s acknowledged messages were durable but not yet committed when the run ended (an overloaded node's commit backlog; the holders commit them after the pending timeout).", num(r.PendingAtEnd))
	}
	fmt.Fprintf(&b, " Latency p50 %s, p99 %s, max %s", msf(r.Latency.P50), msf(r.Latency.P99), msf(r.Latency.Max))
	if r.TargetP99Ms > 0 {
		verdict := "met"
		if !r.TargetMet {
			verdict = "**missed**"
		}
		fmt.Fprintf(&b, " (target p99 %s: %s)", msf(r.TargetP99Ms), verdict)
	}
	b.WriteString(".")
	f := Derive(r)
	if f.Busiest != "" {
		when := "during the load"
		if r.Real() {
			when = "over the run, of this machine's cores"
		}
		fmt.Fprintf(&b, " The busiest node was %s (%s %s busy %s)", f.Busiest, f.BusiestWhat, pct(f.BusiestFrac), when)
		if !r.Real() && f.Slowest != "" && f.Slowest != f.Busiest && f.SlowBusyFrac > 0 {
			fmt.Fprintf(&b, "; the slowest, %s, was %s busy", f.Slowest, pct(f.SlowBusyFrac))
		}
		fmt.Fprintf(&b, "; live copies spread max/mean %s.", ratio(r.Imbalance.CopiesMaxOverMean))
	}
	if len(r.Faults) > 0 {
		var fs []string
		for _, x := range r.Faults {
			fs = append(fs, fmt.Sprintf("%s at %s", faultLabel(x), secs(x.AtS)))
		}
		fmt.Fprintf(&b, " Faults: %s;", fmtList(fs))
		if r.Unavailability.Seconds > 0 || len(r.Unavailability.Windows) > 0 {
			fmt.Fprintf(&b, " deliveries failed in %s totalling %s", plural(len(r.Unavailability.Windows), "window"), secs(r.Unavailability.Seconds))
		} else {
			b.WriteString(" no delivery failed")
		}
		if r.Rebuild.Copies > 0 || r.Rebuild.Seconds > 0 {
			fmt.Fprintf(&b, "; the array was under-replicated for %s and rebuilt %s (%s)", secs(r.Rebuild.Seconds), plural(int(r.Rebuild.Copies), "copy"), bytesSI(float64(r.Rebuild.Bytes)))
		}
		b.WriteString(".")
	}
	return b.String()
}

// byKey formats a count map as "451: 2, 550: 1" (sorted keys).
func byKey(m map[string]int) string {
	var keys []string
	for k, v := range m {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %s", k, num(m[k])))
	}
	return strings.Join(parts, ", ")
}

func figures(b *strings.Builder, r *Report) {
	unit := "msgs/s (virtual)"
	if r.Real() {
		unit = "msgs/s (wall)"
	}
	share := func(n int) string {
		if r.Offered == 0 {
			return num(n)
		}
		return fmt.Sprintf("%s (%s)", num(n), pct(float64(n)/float64(r.Offered)))
	}
	withBy := func(n int, m map[string]int) string {
		s := share(n)
		if by := byKey(m); by != "" {
			s += "; " + by
		}
		return s
	}
	target := "none"
	if r.TargetP99Ms > 0 {
		target = msf(r.TargetP99Ms) + ": met"
		if !r.TargetMet {
			target = msf(r.TargetP99Ms) + ": **missed**"
		}
	}
	rows := [][]string{
		{"offered (arrivals)", num(r.Offered)},
		{"accepted (250)", share(r.Accepted)},
		{"throughput", rate(r.Throughput) + " " + unit},
		{"accepted bytes", bytesSI(float64(r.AcceptedBytes))},
		{"rejected (4xx/5xx), by code", withBy(r.Rejected, r.RejectedByCode)},
		{"failed (no reply), by reason", withBy(r.Failed, r.FailedByReason)},
		{"dropped at the client / unsent at the end", num(r.ClientDropped) + " / " + num(r.Unsent)},
		{"lost (acknowledged, no readable copy)", num(r.Lost)},
		{"latency mean / p50 / p95", msf(r.Latency.Mean) + " / " + msf(r.Latency.P50) + " / " + msf(r.Latency.P95)},
		{"latency p99 / p99.9 / max", msf(r.Latency.P99) + " / " + msf(r.Latency.P999) + " / " + msf(r.Latency.Max)},
		{"target p99", target},
		{"imbalance, max/mean of copies / bytes / SMTP", ratio(r.Imbalance.CopiesMaxOverMean) + " / " + ratio(r.Imbalance.BytesMaxOverMean) + " / " + ratio(r.Imbalance.SMTPMaxOverMean)},
		{"rebuilt copies / bytes", num(r.Rebuild.Copies) + " / " + bytesSI(float64(r.Rebuild.Bytes))},
		{"under-replicated time (rebuild)", secs(r.Rebuild.Seconds)},
		{"unavailability (failed deliveries)", fmt.Sprintf("%s in %s", secs(r.Unavailability.Seconds), plural(len(r.Unavailability.Windows), "window"))},
	}
	if !r.Real() {
		rows = append(rows,
			[]string{"peer traffic per accepted message", bytesSI(r.Network.PeerBytesPerMsg)},
			[]string{"client / peer bytes on the network", bytesSI(float64(r.Network.ClientBytes)) + " / " + bytesSI(float64(r.Network.PeerBytes))},
			[]string{"catalog entries missing from a live node", num(r.CatalogMissing)},
		)
	}
	rd := r.Readers
	rs := fmt.Sprintf("%s sessions, %s retrieved, %s deleted, %s errors", num(rd.Sessions), num(rd.Retrieved), num(rd.Deleted), num(rd.Errors))
	if by := byKey(rd.ErrorsBy); by != "" {
		rs += " (" + by + ")"
	}
	rows = append(rows, []string{"POP3 readers", rs})
	table(b, []string{"figure", "value"}, "lr", rows)
}

func nodesTable(b *strings.Builder, r *Report) {
	var rows [][]string
	for i := range r.Nodes {
		n := &r.Nodes[i]
		hw := "real hardware"
		if ns, ok := spec(r.Config, n.Name); ok && !r.Real() {
			hw = hardware(ns)
		}
		cpu, bw, sync := pct(n.CPUUtilization), "n/a", "n/a"
		if !r.Real() {
			cpu = pct(n.CPUBusySeconds / (float64(max(coresOf(r, n.Name), 1)) * max(r.LoadSeconds, 1e-9)))
			if ns, ok := spec(r.Config, n.Name); ok && ns.DiskBytesPerSec > 0 && r.LoadSeconds > 0 {
				bw = pct(float64(n.DiskBytes) / (float64(ns.DiskBytesPerSec) * r.LoadSeconds))
			}
			sync = pct(DiskSyncing(r, n))
		}
		rows = append(rows, []string{
			n.Name, hw, n.State, num(n.SMTPAccepted),
			fmt.Sprintf("%s (%s)", num(n.Copies), pct(n.ShareCopies)),
			fmt.Sprintf("%s (%s)", bytesSI(float64(n.CopyBytes)), pct(n.ShareBytes)),
			num(n.CatalogEntries), cpu, bw, sync, num(n.RebuiltCopies),
		})
	}
	table(b, []string{"node", "hardware (modeled)", "state", "SMTP 250s", "copies (share)", "bytes (share)", "catalog entries", "CPU busy", "disk bandwidth used", "disk syncing", "rebuilt copies"}, "lllrrrrrrrr", rows)
	if r.Real() {
		b.WriteString("On real sockets the scenario's modeled costs (cores, CPU per message, fsync, disk bandwidth) cannot be imposed: every node runs on this machine's hardware. CPU busy is the node process's CPU time (from /proc and its exit status) over the run's wall time and the machine's cores; disk figures are not measured.\n\n")
	} else {
		b.WriteString("CPU busy is modeled CPU time over cores x the load period; disk bandwidth used is bytes written over the disk's bandwidth x the load period (both may include work done in the drain). Disk syncing is the share of the whole run the disk spent in syncs and writes: syncs are group commits, so a disk that is always syncing still takes more writes per sync, and only its bandwidth limits it. Shares are of the live nodes' copies at the end.\n\n")
	}
}

// coresOf is node name's modeled cores.
func coresOf(r *Report, name string) int {
	if ns, ok := spec(r.Config, name); ok {
		return ns.CPUCores
	}
	return 1
}

// windowStats sums the timeline over seconds [from, to).
func windowStats(r *Report, from, to int) (accepted, bad int, worstP99 float64, n int) {
	for _, s := range r.Timeline {
		if s.TS >= from && s.TS < to && float64(s.TS) < r.LoadSeconds {
			accepted += s.Accepted
			bad += s.Failed + s.Rejected
			worstP99 = max(worstP99, s.P99Ms)
			n++
		}
	}
	return accepted, bad, worstP99, n
}

func faultsSection(b *strings.Builder, r *Report) {
	if len(r.Faults) == 0 && len(r.Unavailability.Windows) == 0 && len(r.Rebuild.Episodes) == 0 {
		b.WriteString("No faults were injected, no delivery failed and no copy was missing.\n\n")
		return
	}
	if len(r.Faults) > 0 {
		var rows [][]string
		for _, f := range r.Faults {
			who := f.Node
			if f.Nodes != "" {
				who = strings.ReplaceAll(f.Nodes, "|", " from ")
			}
			e := "applied"
			if f.Error != "" {
				e = "error: " + f.Error
			}
			at := float64(int(f.AtS))
			before := max(0, int(at)-effectWindowS)
			a0, bad0, p0, n0 := windowStats(r, before, int(at))
			a1, bad1, p1, n1 := windowStats(r, int(at), int(at)+effectWindowS)
			eff := "after the load"
			if n1 > 0 {
				eff = fmt.Sprintf("accepted %s msgs/s, %s failed/rejected, worst p99 %s (before: %s msgs/s, %s, %s)",
					rate(float64(a1)/float64(n1)), num(bad1), msf(p1), rate(float64(a0)/float64(max(n0, 1))), num(bad0), msf(p0))
			}
			rows = append(rows, []string{secs(f.AtS), f.Action, who, e, eff})
		}
		fmt.Fprintf(b, "The effect column compares the %d s after each fault with the %d s before it (from the timeline).\n\n", effectWindowS, effectWindowS)
		table(b, []string{"at", "fault", "node(s)", "result", "effect"}, "rllll", rows)
	} else {
		b.WriteString("No faults were injected.\n\n")
	}
	if w := r.Unavailability.Windows; len(w) > 0 {
		fmt.Fprintf(b, "Deliveries failed or were rejected in %s, %s in all (a window runs from a failed delivery to the next accepted one).", plural(len(w), "window"), secs(r.Unavailability.Seconds))
		periods := mergeWindows(w, periodGapS)
		if len(periods) < len(w) {
			fmt.Fprintf(b, " Windows less than %s apart are merged below into %s.", secs(periodGapS), plural(len(periods), "period"))
		}
		b.WriteString("\n\n")
		var rows [][]string
		for i, x := range periods {
			if i == maxPeriodRows {
				rows = append(rows, []string{"...", "", "", fmt.Sprintf("%s more", plural(len(periods)-i, "period"))})
				break
			}
			rows = append(rows, []string{secs(x.StartS), secs(x.EndS), secs(x.EndS - x.StartS), num(x.Failed)})
		}
		table(b, []string{"from", "to", "length", "failed or rejected"}, "rrrr", rows)
	} else {
		b.WriteString("No delivery failed or was rejected.\n\n")
	}
	if e := r.Rebuild.Episodes; len(e) > 0 {
		fmt.Fprintf(b, "Some live node found entries short of R=%d copies during %s, %s in all; rebuild made %s (%s). Ends are sampled every 250 ms and lag the nodes' maintenance scans.\n\n",
			r.Config.Replicas, plural(len(e), "episode"), secs(r.Rebuild.Seconds), plural(int(r.Rebuild.Copies), "copy"), bytesSI(float64(r.Rebuild.Bytes)))
		var rows [][]string
		for _, x := range e {
			rows = append(rows, []string{secs(x.StartS), secs(x.EndS), secs(x.Seconds)})
		}
		table(b, []string{"under-replicated from", "to", "length"}, "rrr", rows)
	} else {
		b.WriteString("No entry was ever short of R copies on a live node.\n\n")
	}
}

func wallSection(b *strings.Builder, r *Report) {
	w := r.Wall
	if r.Real() {
		fmt.Fprintf(b, "Every figure on this page is a wall-clock measurement on the machine that ran it (%s of wall time; virtual_seconds in the JSON are wall seconds). They depend on that machine's CPU, disk and load: rerun `make bench-real SCENARIO=%s` to measure yours.\n", secs(w.Seconds), r.Config.Name)
		return
	}
	fmt.Fprintf(b, "Only this section depends on the machine: the simulation took %s of wall time (%s simulated msgs per wall second, %s network events per wall second, %s virtual seconds per wall second) on the machine that generated this page. Every other figure is in virtual time and is the same on any machine for the same scenario, seed and code (net digest `%.16s`).\n\n",
		secs(w.Seconds), rate(w.SimMsgsPerWallS), num(int64(w.EventsPerWallS)), ftoa(w.VirtualPerWallS), r.NetDigest)
}
