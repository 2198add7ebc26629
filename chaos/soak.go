package chaos

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// SoakShard is what one process of a soak (make chaos-soak, chaos/soak.sh)
// ran: TestSimChaos over seeds Offset+1..Offset+Seeds of every cell.
type SoakShard struct {
	Offset      uint64
	Seeds       int
	WallSeconds float64
	Runs        []RunResult
}

// findingKinds lists the kinds of violation a Result counts, by their
// JSON names, in field order: every Finding field, and the int fields
// that count violations (Diverging). Read from the type, so a kind the
// checker gains is summed by the soak without a change here.
func findingKinds() []string {
	var out []string
	rt := reflect.TypeFor[Result]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		if f.Type == reflect.TypeFor[Finding]() || f.Name == "Diverging" {
			if f.Name == "DivergingIDs" {
				continue // the ids behind Diverging, not another kind
			}
			out = append(out, jsonName(f))
		}
	}
	return out
}

func jsonName(f reflect.StructField) string {
	if n, _, _ := strings.Cut(f.Tag.Get("json"), ","); n != "" && n != "-" {
		return n
	}
	return f.Name
}

// findingCounts is the count of each kind in r.
func findingCounts(r *Result) map[string]int {
	out := map[string]int{}
	v := reflect.ValueOf(r).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		switch {
		case f.Name == "DivergingIDs":
		case f.Type == reflect.TypeFor[Finding]():
			out[jsonName(f)] = v.Field(i).Interface().(Finding).Count
		case f.Name == "Diverging":
			out[jsonName(f)] = int(v.Field(i).Int())
		}
	}
	return out
}

// soakCell sums the runs of one cell.
type soakCell struct {
	runs, unfinished, notFired, fired, acked, checked int64
	findings                                          map[string]int64
}

// SoakMarkdown renders results/chaos-soak.md from the shards of one soak:
// runs in all and per cell, each kind of finding (lost, duplicated,
// phantom, resurrected, diverging, and any the checker adds), the seed
// range, the commit and the wall time (wall: the whole soak; shards ran
// in parallel).
func SoakMarkdown(shards []SoakShard, commit string, wall time.Duration) []byte {
	var b bytes.Buffer
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	kinds := findingKinds()
	cells := map[string]*soakCell{}
	var all soakCell
	all.findings = map[string]int64{}
	var failures []string
	minSeed, maxSeed := ^uint64(0), uint64(0)
	var shardWall float64
	for _, sh := range shards {
		shardWall += sh.WallSeconds
		for _, r := range sh.Runs {
			c := cells[r.Cell]
			if c == nil {
				c = &soakCell{findings: map[string]int64{}}
				cells[r.Cell] = c
			}
			minSeed, maxSeed = min(minSeed, r.Seed), max(maxSeed, r.Seed)
			for _, t := range []*soakCell{c, &all} {
				t.runs++
				t.notFired += int64(len(r.NotFired))
				t.acked += int64(r.Accepted)
				for _, k := range r.Counts {
					t.fired += k.Fired
				}
				if r.Err != "" {
					t.unfinished++
				}
				if r.Check != nil {
					t.checked += int64(r.Check.Checked)
					for k, n := range findingCounts(r.Check) {
						t.findings[k] += int64(n)
					}
				}
			}
			var why []string
			if r.Err != "" {
				why = append(why, "did not finish: "+firstLine(r.Err))
			}
			if len(r.NotFired) > 0 {
				why = append(why, "never fired: "+strings.Join(r.NotFired, ", "))
			}
			if r.Check != nil {
				why = append(why, r.Check.Violations()...)
			}
			if len(why) > 0 {
				failures = append(failures, fmt.Sprintf("%s seed %d: %s (replay: CHAOS_SEED_OFFSET=%d CHAOS_SEEDS=1 make chaos CHAOS_RUN='^TestSimChaos$/^%s$/^%s$/^seed=%d$')",
					r.Cell, r.Seed, strings.Join(why, "; "), r.Seed-1, cellGroup(r.Cell), cellName(r.Cell), r.Seed))
			}
		}
	}
	slices.Sort(failures)
	var violations int64
	for _, k := range kinds {
		violations += all.findings[k]
	}

	p("# Chaos soak\n\n")
	p("Written by `make chaos-soak` (chaos/soak.sh: TestSimChaos of chaos/sim_chaos_test.go in %d processes, each over\n", len(shards))
	p("its own seed range, with the failpoints compiled in as `make chaos` does); do not edit. Every cell of the fault\n")
	p("matrix (chaos/matrix.go) runs the same seeds; after each run the checker (chaos/checker.go) compares every live\n")
	p("node's files with the load generator's records.\n\n")
	if all.runs == 0 {
		p("No runs.\n")
		return b.Bytes()
	}
	p("| runs | cells | seeds per cell | seed range | commit | runs that did not finish | targeted failpoints that never fired | faults injected | messages acknowledged | violations |\n")
	p("|---:|---:|---:|---|---|---:|---:|---:|---:|---:|\n")
	p("| %d | %d | %d | %d-%d | %s | %d | %d | %d | %d | %d |\n\n", all.runs, len(cells), all.runs/int64(max(len(cells), 1)),
		minSeed, maxSeed, commit, all.unfinished, all.notFired, all.fired, all.acked, violations)

	p("## Findings\n\n")
	p("| kind | count |\n|---|---:|\n")
	for _, k := range kinds {
		p("| %s | %d |\n", k, all.findings[k])
	}
	p("\nKinds are the checker's (chaos/checker.go Result, by JSON name): lost (acknowledged, not deleted by a reader, no\n")
	p("valid copy on a live node), missing, under_replicated, pending, diverging (live catalogs that differ after\n")
	p("quiescence), duplicated, resurrected, phantom, and any kind added since.\n\n")

	p("## Cells\n\n")
	p("| cell | runs | faults injected | acknowledged |")
	for _, k := range kinds {
		p(" %s |", k)
	}
	p("\n|---|---:|---:|---:|")
	for range kinds {
		p("---:|")
	}
	p("\n")
	var ids []string
	for _, c := range Matrix() {
		if cells[c.ID()] != nil {
			ids = append(ids, c.ID())
		}
	}
	for id := range cells {
		if !slices.Contains(ids, id) {
			ids = append(ids, id) // a cell this build's matrix lacks
		}
	}
	for _, id := range ids {
		c := cells[id]
		p("| %s | %d | %d | %d |", id, c.runs, c.fired, c.acked)
		for _, k := range kinds {
			p(" %d |", c.findings[k])
		}
		p("\n")
	}
	if len(failures) > 0 {
		p("\n## Failures\n\n")
		for _, f := range failures {
			p("- %s\n", f)
		}
	}
	p("\nWall time: %.1f s for the soak, %.3f s per run per process (%d processes, %.1f s of process time).\n",
		wall.Seconds(), shardWall/float64(all.runs), len(shards), shardWall)
	return b.Bytes()
}

// cellGroup and cellName split a Cell.ID.
func cellGroup(id string) string { g, _, _ := strings.Cut(id, "/"); return g }
func cellName(id string) string  { _, n, _ := strings.Cut(id, "/"); return n }
