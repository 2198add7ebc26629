package realsoak

import (
	"fmt"
	"strings"
	"time"
)

// lineMax bounds a finding's line in the report (the run's JSON has all).
const lineMax = 400

// kindTotals adds up the runs of one fault kind.
type kindTotals struct {
	runs, failed, errors                           int
	acked, lost, unreadable, dup, phantom, holders int
	resurrected, corrupt, diverging, notQuiet      int
	inUseWaits, readerInUse                        int
	inUseMax, detectMax, detectSum, wall, wallMax  time.Duration
	detected                                       int
}

func (t *kindTotals) add(r *RunResult) {
	t.runs++
	if len(r.Violations()) > 0 {
		t.failed++
	}
	if r.Err != "" {
		t.errors++
	}
	t.acked += r.Accepted
	t.holders += r.PhantomHolders.Count + r.FilePhantomHolders.Count
	if r.NotQuiet != "" {
		t.notQuiet++
	}
	if rd := r.Read; rd != nil {
		t.unreadable += rd.Unreadable.Count
		t.dup += rd.Duplicated.Count
		t.phantom += rd.Phantom.Count
		t.resurrected += rd.Resurrected.Count
		t.corrupt += rd.Corrupt.Count + rd.WrongMailbox.Count
		t.inUseWaits += rd.InUseWaits
		t.inUseMax = max(t.inUseMax, rd.InUseMax)
	}
	if c := r.Check; c != nil {
		t.lost += c.Lost.Count
		t.dup += c.Duplicated.Count
		t.phantom += c.Phantom.Count
		t.resurrected += c.Resurrected.Count
		t.diverging += c.Diverging
	}
	for k, n := range r.ReaderErrors {
		if strings.Contains(k, "IN-USE") {
			t.readerInUse += n
		}
	}
	if r.Fault.Detect > 0 {
		t.detected++
		t.detectSum += r.Fault.Detect
		t.detectMax = max(t.detectMax, r.Fault.Detect)
	}
	t.wall += r.Wall
	t.wallMax = max(t.wallMax, r.Wall)
}

// Markdown renders the soak's report (results/soak-real.md). cmd is the
// command that ran it; replay the make command that replays one seed
// (with %d for the seed).
func (s *Summary) Markdown(cfg Config, cmd, replay string) []byte {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	total := &kindTotals{}
	byKind := map[Kind]*kindTotals{}
	for _, k := range Kinds {
		byKind[k] = &kindTotals{}
	}
	for _, r := range s.Runs {
		total.add(r)
		if t := byKind[r.Plan.Kind]; t != nil {
			t.add(r)
		}
	}
	p("# Real-process soak\n\n")
	p("`%s`: %d runs (seeds %d..%d) of three `mailarray serve` processes on loopback, R=2 W=2, ", cmd, len(s.Runs), s.FirstSeed, s.FirstSeed+uint64(max(len(s.Runs), 1))-1)
	p("under %v of Poisson SMTP load at %v msgs/s from %d senders to %d mailboxes (unique Message-IDs, every 250 recorded with its queue id) ", cfg.LoadDuration, cfg.RatePerSec, cfg.Senders, cfg.Mailboxes)
	p("and %d POP3 readers that delete, with one fault per run drawn from its seed. ", cfg.Readers)
	p("Tuning: anti-entropy %v, maintenance %v, pending timeout %v, orphan grace %v, rebuild %d copies a scan; gossip profile local. ", cfg.AntiEntropyEvery, cfg.MaintainEvery, cfg.PendingTimeout, cfg.OrphanGrace, cfg.RebuildPerScan)
	p("After the load: quiescence (all members alive, no pending, under_replicated 0, empty push queues, equal catalog digests), ")
	p("every mailbox read by POP3 from every node, then, with the processes stopped, `chaos.Check` over the three node.db files and a phantom-holder scan. ")
	p("chaos/realsoak/doc.go says exactly what each fault does.\n\n")
	if s.Interrupted {
		p("**Interrupted** before its last run.\n\n")
	}
	mean := time.Duration(0)
	if len(s.Runs) > 0 {
		mean = (total.wall / time.Duration(len(s.Runs))).Round(time.Second)
	}
	verdict := "PASS"
	if total.failed > 0 {
		verdict = "FAIL"
	}
	p("**%s**: %d of %d runs failed. Wall %v, %v per run on average (longest %v): 100 runs take about %v.\n\n",
		verdict, total.failed, len(s.Runs), s.Wall, mean, total.wallMax.Round(time.Second), (100 * mean).Round(time.Minute))

	p("## By fault kind\n\n")
	p("| kind | runs | failed | acknowledged | lost | unreadable (POP3) | duplicated | phantom (refused visible) | phantom holders | resurrected | corrupt | diverging | not quiescent | POP3 IN-USE waits (longest) | readers' IN-USE | detection (mean / max) |\n")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--|\n")
	row := func(name string, t *kindTotals) {
		det := "-"
		if t.detected > 0 {
			det = fmt.Sprintf("%v / %v", (t.detectSum / time.Duration(t.detected)).Round(100*time.Millisecond), t.detectMax.Round(100*time.Millisecond))
		}
		p("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d (%v) | %d | %s |\n",
			name, t.runs, t.failed, t.acked, t.lost, t.unreadable, t.dup, t.phantom, t.holders, t.resurrected, t.corrupt, t.diverging, t.notQuiet,
			t.inUseWaits, t.inUseMax.Round(100*time.Millisecond), t.readerInUse, det)
	}
	for _, k := range Kinds {
		row(string(k), byKind[k])
	}
	row("**all**", total)
	p("\nlost: acknowledged, no valid copy on any node (files). unreadable: acknowledged and not deleted, absent from a node's POP3 listing (counted per node). ")
	p("phantom holders: a committed entry lists a node that lacks the copy (one failure from loss), asked over the peer API after quiescence and before the reads (a POP3 read repairs a missing copy), plus the same from the files at the end. ")
	p("POP3 IN-USE waits: logins of the read check refused -ERR [IN-USE] before going through, after quiescence; readers' IN-USE: the load's readers refused so during the run.\n\n")

	failed := s.Failed()
	if len(failed) > 0 {
		p("## Failures\n\n")
		for _, r := range failed {
			p("- seed %d, %s (%s): replay with `%s`\n", r.Plan.Seed, r.Plan.Kind, r.Plan, fmt.Sprintf(replay, r.Plan.Seed))
			v := r.Violations()
			for i, x := range v {
				if i == 5 {
					p("  - ... %d more\n", len(v)-5)
					break
				}
				if len(x) > lineMax {
					x = x[:lineMax] + " ..."
				}
				p("  - %s\n", x)
			}
		}
		p("\n")
	}

	p("## Runs\n\n| seed | kind | fault | acknowledged | refused | failed | verdict | quiescent after | wall |\n|--:|---|---|--:|--:|--:|---|--:|--:|\n")
	for _, r := range s.Runs {
		verdict := "ok"
		if n := len(r.Violations()); n > 0 {
			verdict = fmt.Sprintf("FAIL (%d)", n)
		}
		p("| %d | %s | %s | %d | %d | %d | %s | %v | %v |\n", r.Plan.Seed, r.Plan.Kind, r.Plan, r.Accepted, r.Rejected, r.Failed, verdict,
			r.QuietAfter.Round(100*time.Millisecond), r.Wall.Round(100*time.Millisecond))
	}
	return []byte(b.String())
}
