package chaos

import (
	"fmt"
	"time"

	"mailarray/sim"
)

// leaseMargin is what a lease may outlive its holder's failure by beyond
// the membership's longest detection delay: the lock manager acts on the
// failure event, and a request already in flight is answered after it.
const leaseMargin = time.Second

// checkLeases applies the rule "no mailbox lease outlives its holder's
// failure by more than the detection time": a lease that lock managers
// still honoured (refused to another session) longer than detect_max +
// leaseMargin after its holder's node went down (crashed, removed or
// paused) outlived its holder. One finding per lease. The simulator
// records every lease honoured for a down holder (sim/leases.go);
// refusals for live holders are contention.
func checkLeases(rep *sim.Report) Finding {
	var f Finding
	limit := rep.Config.Membership.DetectMax.D() + leaseMargin
	for _, r := range rep.LeaseRefusals {
		late := time.Duration((r.LastS - r.HolderDownS) * float64(time.Second))
		if late > limit {
			f.Add(fmt.Sprintf("%s held by %s (down at %.3fs) refused %d times until %.3fs, %v after",
				r.Mailbox, r.Holder, r.HolderDownS, r.Refusals, r.LastS, late.Round(time.Millisecond)))
		}
	}
	if rep.LeaseRefusalsMore > 0 && f.Count > 0 {
		// The record keeps the first leases only; the rest are likely as
		// stale.
		f.Count += rep.LeaseRefusalsMore
	}
	return f
}
