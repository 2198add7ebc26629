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
	if c.bgWork <= 0 || c.bgOn == on {
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
	r := &costReq{d: c.bgWork} // nobody waits on it: done stays nil
	c.cpuTime += c.bgWork
	c.bgTime += c.bgWork
	c.startOrQueueLocked(r)
}
