package sim

import "time"

// Background CPU (NodeSpec.CPUBackground). A running mailarray process
// burns CPU that no message pays for: the Go runtime waking and parking
// threads, timers, gossip, the replicator's loops, the collector over the
// live heap. Measured on real nodes (make calibrate, make truth), a node's
// CPU grows far less than in proportion to its load: 0.09 of a core at
// 25 charges a second, about 0.25 at 200 (issue 20). A constant charge per
// message fitted at one rate is then wrong at every other: fitted at a low
// rate it makes saturation come 4x too early; fitted at a high rate it
// leaves the busy runtime out of a quota's capacity. The model is a line,
// background + charges x cpu_per_msg, with its background served by the
// node's own CPUs: a job of background x bgPeriod every bgPeriod, in the
// same FIFO as the messages, so that it takes capacity from them and
// delays the ones queued behind it, as the runtime's own work does.
//
// The background is what a node burns idle (make calibrate measures it on
// processes with no load). Most of the line's intercept is something else:
// idle CPU (NodeSpec.CPUIdle), what the runtime burns between messages,
// waking threads, spinning for work and parking them again. Work preempts
// it: a thread that finds a goroutine to run stops spinning, so a node
// that is busy burns none, and a quota's budget goes to messages. The truth
// run showed it (issue 20): with the whole intercept as background, a
// 0.2-CPU node ran out of its quota at half the rate the container
// sustained, where it must have run a charge in under 1.2 ms all included.
// Each tick takes the idle CPU out of the capacity the CPUs left unused in
// the period before it (their idle server-time), and out of the quota's
// budget; it never holds a CPU, so no message waits for it.
//
// The jobs run while the node's process runs (setRunning): not for a
// spare, a crashed or a removed node, nor while it is paused.

// bgPeriod is how often a background job arrives: short against the
// latencies the reports resolve (a millisecond and up),
// long enough to add few events (100 a second per node).
const bgPeriod = 10 * time.Millisecond

// setRunning starts or stops the node's background jobs.
func (c *nodeCost) setRunning(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if (c.bgWork <= 0 && c.idleWork <= 0) || c.bgOn == on {
		return
	}
	c.bgOn = on
	c.bgGen++
	if on {
		gen := c.bgGen
		c.n.AfterFunc(bgPeriod, c.bgKey, func() { c.bgTick(gen) })
	}
}

// bgTick runs on the driver: one period's background job joins the CPU
// queue, and the next tick is scheduled. A tick of a stopped generation
// does nothing.
func (c *nodeCost) bgTick(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.bgGen {
		return
	}
	c.n.AfterFunc(bgPeriod, c.bgKey, func() { c.bgTick(gen) })
	if c.paused {
		return // a stopped process burns nothing
	}
	c.idleTickLocked()
	if c.bgWork <= 0 {
		return
	}
	r := &costReq{d: c.bgWork} // nobody waits on it: done stays nil
	c.cpuTime += c.bgWork
	c.bgTime += c.bgWork
	c.startOrQueueLocked(r)
}

// idleTickLocked burns the period's idle CPU out of the server-time the
// CPUs did not use since the last tick (a held CPU, throttled or not, has
// no idle thread), and out of the quota's budget.
func (c *nodeCost) idleTickLocked() {
	c.setBusyLocked(c.cpuBusy) // integrate up to now
	busy := c.busyAcc - c.idleBusyAt
	c.idleBusyAt = c.busyAcc
	if c.idleWork <= 0 {
		return
	}
	spin := min(c.idleWork, time.Duration(c.cores)*bgPeriod-busy)
	if c.quota != nil {
		spin = c.quota.spend(time.Now(), spin)
	}
	if spin <= 0 {
		return
	}
	c.cpuTime += spin
	c.idleTime += spin
}
