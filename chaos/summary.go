package chaos

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"time"
)

// RunResult is one run of one cell: the faults, the load's outcome and
// the checker's findings.
type RunResult struct {
	Cell     string // Cell.ID
	Seed     uint64
	Counts   map[string]Count // by failpoint
	NotFired []string         // targeted failpoints that never fired
	// FaultErrors are scheduled faults that failed to apply (or never did).
	FaultErrors []string
	// Unproven are time faults not proven to have fired (ProveFaults).
	Unproven []string
	Offered  int
	Accepted int
	Rejected int
	Failed   int
	SimLost  int            // the simulator's own loss count, for comparison
	Dropped  map[string]int // by node: unsynced copies power losses dropped
	Nodes    string         // per node: state, SMTP 250s, copies, rebuilt copies (for logs)
	Err      string         // the run did not finish (the simulator failed or panicked)
	Check    *Result
}

// Summary gathers the runs of a suite and renders results/chaos.md.
type Summary struct {
	Seeds       int      // seeds per cell
	Regressions []string // extra seeds that once found a bug, and the bug
	Runs        []RunResult
}

// Add records one run.
func (s *Summary) Add(r RunResult) { s.Runs = append(s.Runs, r) }

// cellTotals sums the runs of one cell.
type cellTotals struct {
	runs, fired, accepted, rejected, failed                       int64
	lost, dup, diverging, under, pending, phantom, missing, resur int64
	unacked, notFired, checked, unfinished                        int64
	underQuorum, deletedUnasked, phantomHolder                    int64
	underListed, unlistedCopy                                     int64
}

func (s *Summary) totals() (map[string]*cellTotals, map[string]int64) {
	cells := map[string]*cellTotals{}
	firedBy := map[string]int64{}
	for _, r := range s.Runs {
		c := cells[r.Cell]
		if c == nil {
			c = &cellTotals{}
			cells[r.Cell] = c
		}
		c.runs++
		for name, k := range r.Counts {
			c.fired += k.Fired
			firedBy[name] += k.Fired
		}
		c.accepted += int64(r.Accepted)
		c.rejected += int64(r.Rejected)
		c.failed += int64(r.Failed)
		c.notFired += int64(len(r.NotFired) + len(r.Unproven) + len(r.FaultErrors))
		if r.Err != "" {
			c.unfinished++
		}
		if r.Check != nil {
			c.lost += int64(r.Check.Lost.Count)
			c.dup += int64(r.Check.Duplicated.Count)
			c.diverging += int64(r.Check.Diverging)
			c.under += int64(r.Check.UnderReplicated.Count)
			c.pending += int64(r.Check.Pending.Count)
			c.phantom += int64(r.Check.Phantom.Count)
			c.missing += int64(r.Check.Missing.Count)
			c.resur += int64(r.Check.Resurrected.Count)
			c.unacked += int64(r.Check.Unacked)
			c.checked += int64(r.Check.Checked)
			c.underQuorum += int64(r.Check.UnderQuorum.Count)
			c.deletedUnasked += int64(r.Check.DeletedUnasked.Count)
			c.phantomHolder += int64(r.Check.PhantomHolder.Count)
			c.underListed += int64(r.Check.UnderListed.Count)
			c.unlistedCopy += int64(r.Check.UnlistedCopy.Count)
		}
	}
	return cells, firedBy
}

// Markdown renders the summary. Everything but the line that starts with
// "Wall time" is a function of the commit and the seeds.
func (s *Summary) Markdown(wall time.Duration) []byte {
	var b bytes.Buffer
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	cells, firedBy := s.totals()
	var all cellTotals
	for _, c := range cells {
		all.runs += c.runs
		all.fired += c.fired
		all.accepted += c.accepted
		all.lost += c.lost
		all.dup += c.dup
		all.diverging += c.diverging
		all.under += c.under
		all.pending += c.pending
		all.phantom += c.phantom
		all.missing += c.missing
		all.resur += c.resur
		all.notFired += c.notFired
		all.checked += c.checked
		all.unfinished += c.unfinished
		all.underQuorum += c.underQuorum
		all.deletedUnasked += c.deletedUnasked
		all.phantomHolder += c.phantomHolder
		all.underListed += c.underListed
		all.unlistedCopy += c.unlistedCopy
	}
	p("# Chaos suites\n\n")
	p("Written by `make chaos` (chaos/run.sh, TestSimChaos in chaos/sim_chaos_test.go); do not edit.\n")
	p("Each cell runs the scenario of chaos/matrix.go (4 nodes, 3 in the ring cells, R=2 W=2, 3 virtual seconds of load,\n")
	p("POP3 readers, 45 s of quiet drain) under one fault plan, for %d seeds; after each run the\n", s.Seeds)
	p("checker (chaos/checker.go) opens every live node's store and catalog and compares them with the\n")
	p("load generator's record of acknowledged messages. A failpoint that never fires fails the suite.\n")
	p("Same commit and seeds give the same file, except the wall time line.\n\n")
	if len(s.Regressions) > 0 {
		p("Regression seeds, run in their cells besides seeds 1-%d (each once found a bug):\n\n", s.Seeds)
		for _, r := range s.Regressions {
			p("- %s\n", r)
		}
		p("\n")
	}

	p("## Totals\n\n")
	p("| runs | runs that did not finish | faults injected | messages acknowledged | of which not deleted by readers | lost | duplicated | catalogs diverging after quiescence | other violations | targeted failpoints that never fired |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	other := all.under + all.pending + all.phantom + all.missing + all.resur + all.underQuorum + all.deletedUnasked + all.phantomHolder + all.underListed + all.unlistedCopy
	p("| %d | %d | %d | %d | %d | %d | %d | %d | %d | %d |\n\n", all.runs, all.unfinished, all.fired, all.accepted, all.checked, all.lost, all.dup, all.diverging, other, all.notFired)
	p("Lost: acknowledged, not deleted by a reader, and no copy with the right bytes on any live node. Other violations:\n")
	p("acknowledged but not committed in some live catalog (counted per node), under-replicated or pending after\n")
	p("quiescence, phantom, resurrected, under-quorum at the 250, deleted unasked, phantom holders, under-listed\n")
	p("messages and unlisted copies (chaos/checker.go).\n")
	p("\"Never fired\" also counts scheduled faults that did not apply.\n\n")

	p("## Failpoints\n\n")
	p("Node code names each point once (node/fault); `fault.Inject` asks the node's fault hook and the point's failpoint, whose one marker ordinary builds compile to nothing.\n\n")
	p("| failpoint | marker | effect of a fault | faults injected |\n|---|---|---|---:|\n")
	for _, fp := range Failpoints() {
		p("| `%s` | %s | %s | %d |\n", fp.Name, fp.Where, fp.Effect, firedBy[string(fp.Name)])
	}

	p("\n## Fault matrix: faults injected per cell (all seeds)\n\n")
	phases := Phases()
	p("| failpoint |")
	for _, ph := range phases {
		p(" %s |", ph.Name)
	}
	p("\n|---|")
	for range phases {
		p("---:|")
	}
	p("\n")
	type na struct{ fp, phase, why string }
	var unreached []na
	for _, fp := range Failpoints() {
		p("| `%s` |", fp.Name)
		for _, ph := range phases {
			if why, no := fp.Unreached[ph.Name]; no {
				p(" n/a |")
				unreached = append(unreached, na{string(fp.Name), ph.Name, why})
				continue
			}
			var fired int64
			for _, r := range s.Runs {
				if r.Cell == string(fp.Name)+"/"+ph.Name {
					fired += r.Counts[string(fp.Name)].Fired
				}
			}
			p(" %d |", fired)
		}
		p("\n")
	}
	p("\nPhases:\n\n")
	for _, ph := range phases {
		p("- `%s` %v: %s\n", ph.Name, ph.Window, ph.Doc)
	}
	p("\nNot applicable (the marker is not reached in that phase):\n\n")
	for _, u := range unreached {
		p("- `%s` %s: %s\n", u.fp, u.phase, u.why)
	}
	p("\nMixes (several failpoints at once):\n\n")
	for _, c := range Mixes() {
		p("- `%s` %v, rate %.2f: %s; fails %s\n", c.ID(), c.Window, c.Probability, c.Doc, strings.Join(c.Targets, ", "))
	}

	p("\nTime faults (no failpoint; ProveFaults proves from the report that each fired):\n\n")
	for _, c := range TimeCells() {
		p("- `%s`: %s; %s\n", c.ID(), c.Doc, strings.Join(c.Faults, ", "))
	}
	p("\nDisk cells (scheduled faults of sim/disk.go, no failpoint; fewer seeds unless CHAOS_SEEDS is set):\n\n")
	for _, c := range DiskCells() {
		p("- `%s`: %s", c.ID(), c.Doc)
		if c.Exposes != "" {
			p(". Found, on code without its fix: %s", c.Exposes)
		}
		p("\n")
	}
	p("\nRing cells (three nodes brought down to one live storage node; scheduled faults, no failpoint):\n\n")
	for _, c := range RingCells() {
		p("- `%s`: %s", c.ID(), c.Doc)
		if c.Exposes != "" {
			p(". Found, on code without its fix: %s", c.Exposes)
		}
		p("\n")
	}

	p("\n## Cells\n\n")
	p("| cell | runs | faults injected | acknowledged | refused | no reply | lost | duplicated | diverging | under-replicated | pending | phantom | visible without reply | under-quorum | deleted unasked | phantom holder | under-listed | unlisted copy |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, cell := range Matrix() {
		c := cells[cell.ID()]
		if c == nil {
			continue
		}
		p("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d |\n", cell.ID(), c.runs, c.fired, c.accepted,
			c.rejected, c.failed, c.lost, c.dup, c.diverging, c.under, c.pending, c.phantom, c.unacked, c.underQuorum, c.deletedUnasked, c.phantomHolder,
			c.underListed, c.unlistedCopy)
	}
	p("\n\"Visible without reply\": messages whose SMTP transaction got no reply (timeout, reset) but were stored;\n")
	p("the client cannot tell, so this is allowed (an MTA would retry). \"Refused\": 4xx/5xx replies.\n")

	if bad := s.failures(); len(bad) > 0 {
		p("\n## Failures\n\n")
		for _, f := range bad {
			p("- %s\n", f)
		}
	}
	p("\nWall time: %.1f s on the machine that wrote this file (the only line that varies between runs).\n", wall.Seconds())
	return b.Bytes()
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// failures lists the runs with violations or unfired failpoints.
func (s *Summary) failures() []string {
	var out []string
	for _, r := range s.Runs {
		var why []string
		if r.Err != "" {
			why = append(why, "did not finish: "+firstLine(r.Err))
		}
		if len(r.NotFired) > 0 {
			why = append(why, "never fired: "+strings.Join(r.NotFired, ", "))
		}
		why = append(why, r.Unproven...)
		why = append(why, r.FaultErrors...)
		if r.Check != nil {
			why = append(why, r.Check.Violations()...)
		}
		if len(why) > 0 {
			out = append(out, fmt.Sprintf("%s seed %d: %s", r.Cell, r.Seed, strings.Join(why, "; ")))
		}
	}
	sort.Strings(out)
	return out
}
