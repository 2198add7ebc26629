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
// Jobs are accounted in the order they start, each spending the budget of
// the periods it runs in: exact for one CPU; with several (a quota node
// runs on max(2, ceil(quota)) threads, as Go's GOMAXPROCS does), the jobs
// of one period are charged as if they ran one after another, which
// throttles the later ones a little early. A job's hold can reach into
// later periods, so the budget is kept per period: a job that starts
// while another's hold runs on into the next period must not reset it.

// cfsPeriod is the kernel's default cpu.cfs_period_us (docker does not
// change it).
const cfsPeriod = 100 * time.Millisecond

// cfs is one quota node's bandwidth state.
type cfs struct {
	budget time.Duration // quota x cfsPeriod
	// used is what each period from first on has spent (index 0: the
	// period starting at first); periods before first are over.
	first time.Time
	used  []time.Duration
}

// spent is the budget used of the period starting at ps (not before
// first), growing the window to it.
func (q *cfs) spent(ps time.Time) *time.Duration {
	if q.used == nil || ps.Before(q.first) {
		// The first job, or a clock before the window (never, the driver's
		// time only moves forward): start the window here.
		q.first, q.used = ps, q.used[:0]
	}
	// Drop the periods over before ps: no job can start in them again.
	if k := int(ps.Sub(q.first) / cfsPeriod); k > 0 {
		if k >= len(q.used) {
			q.used = q.used[:0]
		} else {
			q.used = append(q.used[:0], q.used[k:]...)
		}
		q.first = ps
	}
	return q.at(ps)
}

// at is the used slot of period ps, at or after first.
func (q *cfs) at(ps time.Time) *time.Duration {
	i := int(ps.Sub(q.first) / cfsPeriod)
	for len(q.used) <= i {
		q.used = append(q.used, 0)
	}
	return &q.used[i]
}

// hold is how long a job of work CPU time starting at now holds its CPU:
// its work, plus the waits for the next periods whenever the budget runs
// out. It spends the budget.
func (q *cfs) hold(now time.Time, work time.Duration) time.Duration {
	q.spent(now.Truncate(cfsPeriod))
	t, left := now, work
	for left > 0 {
		ps := t.Truncate(cfsPeriod)
		used := q.at(ps)
		avail := q.budget - *used
		if avail <= 0 {
			t = ps.Add(cfsPeriod) // throttled until the period ends
			continue
		}
		run := min(left, avail, ps.Add(cfsPeriod).Sub(t))
		*used += run
		left -= run
		t = t.Add(run)
	}
	return t.Sub(now)
}

// spend takes up to work of the current period's budget without waiting
// (idle spinning, which stops where the budget ends) and returns what it
// took.
func (q *cfs) spend(now time.Time, work time.Duration) time.Duration {
	used := q.spent(now.Truncate(cfsPeriod))
	took := max(0, min(work, q.budget-*used))
	*used += took
	return took
}
