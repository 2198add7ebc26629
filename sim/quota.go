package sim

import "time"

// CPU quotas (NodeSpec.CPUQuota) as the kernel enforces docker --cpus: CFS
// bandwidth control gives the container's threads quota x 100 ms of CPU
// in every 100 ms period; they run at full speed until it is spent, then
// wait, throttled, for the next period. A message alone on a quiet 0.2
// node takes its CPU time, not five times it; a busy one waits up to 80 ms
// at a period's end. (The first model slowed every CPU to quota/cores of
// full speed: the same CPU-seconds per second, but every message paid the
// slowdown and no one the throttling, so it put p50 too high and p99 too
// low on a truth array at low load.)
//
// Jobs are accounted in the order they start: exact for one CPU (every
// quota up to 1, the truth array's nodes); with several, the jobs of one
// period are charged as if they ran one after another, which throttles
// the later ones a little early.

// cfsPeriod is the kernel's default cpu.cfs_period_us (docker does not
// change it).
const cfsPeriod = 100 * time.Millisecond

// cfs is one quota node's bandwidth state.
type cfs struct {
	budget time.Duration // quota x cfsPeriod
	period time.Time     // start of the period used counts in
	used   time.Duration
}

// hold is how long a job of work CPU time starting at now holds its CPU:
// its work, plus the waits for the next periods whenever the budget runs
// out. It spends the budget.
func (q *cfs) hold(now time.Time, work time.Duration) time.Duration {
	t, left := now, work
	for left > 0 {
		ps := t.Truncate(cfsPeriod)
		if !ps.Equal(q.period) {
			q.period, q.used = ps, 0
		}
		avail := q.budget - q.used
		if avail <= 0 {
			t = ps.Add(cfsPeriod) // throttled until the period ends
			continue
		}
		run := min(left, avail, ps.Add(cfsPeriod).Sub(t))
		q.used += run
		left -= run
		t = t.Add(run)
	}
	return t.Sub(now)
}
