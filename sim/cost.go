package sim

import (
	"sync"
	"time"

	"mailarray/node/env"
	"mailarray/sim/simnet"
)

// nodeCost is one node's hardware: its CPUs and its disk, charged in
// virtual time (env.Cost). Real code takes no virtual time inside the
// bubble; the node calls CPU and Disk where real hardware would make it
// wait, and nodeCost blocks the caller as long as the modeled hardware
// would.
//
// Both resources are queues served by the driver (Net.AfterFunc): a caller
// enqueues a request and blocks on its own channel, which is durably
// blocking for synctest; the driver starts and completes the work at exact
// virtual times, in canonical order. No mutex is ever held while waiting.
// Completions release their waiters one driver step at a time, so waiters
// woken at the same instant do not race each other (the order in which
// they then take pooled connections, catalog versions and queue slots
// would otherwise vary from run to run).
//
//   - CPU: a pool of `cores` servers, FIFO. A message of b bytes holds one
//     for cpu_per_msg + b/1KiB * cpu_per_kib; a running node's background
//     work (cpu_background, background.go) holds one for its share of
//     every 10 ms; its idle CPU (cpu_idle) holds none, taking what the
//     servers left unused.
//   - Disk: one device, group commit. A write arriving while the disk is
//     idle starts a sync at once; writes arriving during a sync wait and
//     share the next one. A sync of a group takes disk_fsync + its bytes /
//     disk_bytes_per_sec. (The store's writer already groups the writes
//     queued during a sync into one commit, so the disk mostly sees one
//     writer.)
type nodeCost struct {
	n         *simnet.Net
	cpuKey    string
	diskKey   string
	settleKey string

	mu    sync.Mutex
	cores int
	// quota is the CFS bandwidth of a node with a cpu_quota
	// (NodeSpec.CPUQuota, quota.go); nil: whole CPUs.
	quota *cfs
	// host is the machine's CPUs every node shares (host.go); nil: the
	// node's CPUs are its own.
	host      *hostCPU
	perMsg    time.Duration
	perBusy   time.Duration // perMsg on a node already at work; 0: perMsg
	perKiB    time.Duration
	fsync     time.Duration
	bandwidth int64 // bytes per second
	slow      float64

	cpuBusy  int        // servers in use
	cpuQueue []*costReq // waiting for a server

	// Background CPU (background.go): bgWork of it every bgPeriod while
	// bgOn; bgGen tells a stopped generation's ticks apart.
	bgKey  string
	bgWork time.Duration
	bgOn   bool
	bgGen  uint64
	// Idle CPU (background.go): up to idleWork every bgPeriod, out of the
	// server-time left unused: busyAcc integrates the busy servers up to
	// busyMark; idleBusyAt is its value at the last tick.
	idleWork   time.Duration
	busyAcc    time.Duration
	busyMark   time.Time
	idleBusyAt time.Duration

	diskBusy  bool       // a sync is scheduled or running
	diskQueue []*costReq // waiting for the next sync
	diskGroup []*costReq // the sync in flight (some may be released)
	// diskGen counts power losses: a completion scheduled before one
	// belongs to a group powerOff already released.
	diskGen uint64
	// stallUntil: no sync completes before it (stall_disk).
	stallUntil time.Time

	// ledger records when the node's copies became durable (Durable,
	// Dropped); node is its name there.
	ledger *ledger
	node   string

	// A paused node's callers park here until resume (pause.go).
	paused bool
	parked []chan struct{}

	// Settle's event keys by caller, and its idle waiters: a settle per
	// store write and per commit or push round allocated more than a
	// percent of a run.
	settleKeys map[string]string
	settleIdle []*settler

	// Counters for the report.
	cpuTime   time.Duration // background and idle included
	bgTime    time.Duration
	idleTime  time.Duration
	cpuJobs   int64
	diskSyncs int64
	diskBytes int64
	diskTime  time.Duration
}

var _ env.Cost = (*nodeCost)(nil)

type costReq struct {
	d     time.Duration // CPU: work (a quota may hold the CPU longer)
	bytes int           // disk: size
	done  chan struct{}
	// released: done is closed (disk requests; under nodeCost.mu).
	released bool
}

func newNodeCost(n *simnet.Net, spec NodeSpec, lg *ledger) *nodeCost {
	return &nodeCost{
		n:         n,
		ledger:    lg,
		node:      spec.Name,
		cpuKey:    "cpu " + spec.Name,
		diskKey:   "disk " + spec.Name,
		settleKey: "settle " + spec.Name,
		bgKey:     "background " + spec.Name,
		bgWork:    time.Duration(spec.CPUBackground * float64(bgPeriod)),
		idleWork:  time.Duration(spec.CPUIdle * float64(bgPeriod)),
		cores:     spec.CPUCores,
		quota:     newCFS(spec),
		perMsg:    spec.CPUPerMsg.D(),
		perBusy:   spec.CPUPerMsgBusy.D(),
		perKiB:    spec.CPUPerKiB.D(),
		fsync:     spec.DiskFsync.D(),
		bandwidth: spec.DiskBytesPerSec,
		slow:      1,
	}
}

// newCFS is the bandwidth state of a node with a quota, nil without (so a
// scenario without a quota runs exactly as before).
func newCFS(spec NodeSpec) *cfs {
	if spec.CPUQuota <= 0 || spec.CPUCores < 1 {
		return nil
	}
	return &cfs{budget: time.Duration(spec.CPUQuota * float64(cfsPeriod))}
}

// CPU holds one of the node's CPUs while it processes a message of bytes.
func (c *nodeCost) CPU(bytes int) {
	c.gate()
	defer c.gate()
	c.mu.Lock()
	work := c.chargeLocked() + time.Duration(int64(bytes)*int64(c.perKiB)/1024)
	if work <= 0 {
		c.mu.Unlock()
		return
	}
	r := &costReq{d: work, done: make(chan struct{})}
	c.cpuJobs++
	c.cpuTime += work
	c.startOrQueueLocked(r)
	c.mu.Unlock()
	<-r.done
}

// chargeLocked is a message's CPU before its size: cpu_per_msg_busy when
// the node's CPUs are already at work (a job running, throttled or
// queued), cpu_per_msg when they were idle. A real node's CPU per message
// falls with its load, far below a straight line: on make truth's
// containers (issue 20) the host's CPU grew by 0.2 of a CPU from 400 to
// 800 msgs/s, 0.5 ms a message for two copies, the load generator and the
// kernel together, where the line fitted at 100-400 msgs/s on idle nodes
// charges 1.2 ms a copy. A message that arrives while its node works
// wakes no thread (the runtime's futex wake-ups, spinning and parking,
// about a third of the syscalls per message), and its commit and its
// replication push ride with the others queued.
func (c *nodeCost) chargeLocked() time.Duration {
	if c.perBusy > 0 && (c.cpuBusy > 0 || len(c.cpuQueue) > 0) {
		return c.perBusy
	}
	return c.perMsg
}

// cpuDone runs on the driver: r's service ended; the server takes the next
// request in line.
func (c *nodeCost) cpuDone(r *costReq) {
	if r.done != nil { // nil: a background job (background.go)
		close(r.done)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cpuQueue) == 0 {
		c.setBusyLocked(c.cpuBusy - 1)
		return
	}
	next := c.cpuQueue[0]
	c.cpuQueue[0] = nil
	c.cpuQueue = c.cpuQueue[1:]
	c.startLocked(next)
}

// startOrQueueLocked starts r on a free CPU, or queues it.
func (c *nodeCost) startOrQueueLocked(r *costReq) {
	if c.cpuBusy < c.cores {
		c.setBusyLocked(c.cpuBusy + 1)
		c.startLocked(r)
		return
	}
	c.cpuQueue = append(c.cpuQueue, r)
}

// setBusyLocked sets the servers in use to n, integrating the busy time.
func (c *nodeCost) setBusyLocked(n int) {
	now := time.Now()
	if !c.busyMark.IsZero() {
		c.busyAcc += time.Duration(c.cpuBusy) * now.Sub(c.busyMark)
	}
	c.busyMark = now
	c.cpuBusy = n
}

// startLocked starts r's service on a CPU it holds, once the host (if
// any) has a core for it (host.go).
func (c *nodeCost) startLocked(r *costReq) {
	if c.host != nil && !c.host.acquire(c.cpuKey, r.d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.runLocked(r)
	}) {
		return // runLocked runs when a host core is handed to it
	}
	c.runLocked(r)
}

// runLocked runs r: r.d of work, which a quota may stretch (quota.go).
// The report counts the work, as a container's cpuacct does. A host core
// is held for the work only.
func (c *nodeCost) runLocked(r *costReq) {
	hold := r.d
	if c.quota != nil {
		hold = c.quota.hold(time.Now(), r.d)
	}
	if c.host != nil {
		c.n.AfterFunc(r.d, c.cpuKey, c.host.release)
	}
	c.n.AfterFunc(hold, c.cpuKey, func() { c.cpuDone(r) })
}

// Disk waits until bytes are durable on the node's disk.
func (c *nodeCost) Disk(bytes int) {
	c.gate()
	defer c.gate()
	r := &costReq{bytes: bytes, done: make(chan struct{})}
	c.mu.Lock()
	c.diskQueue = append(c.diskQueue, r)
	if !c.diskBusy {
		c.diskBusy = true
		c.diskStartLocked()
	}
	c.mu.Unlock()
	<-r.done
}

// diskStartLocked starts a sync of every queued write, as one group.
func (c *nodeCost) diskStartLocked() {
	group := c.diskQueue
	c.diskQueue = nil
	total := 0
	for _, r := range group {
		total += r.bytes
	}
	d := time.Duration(float64(c.fsync)*c.slow) +
		time.Duration(float64(total)*c.slow*float64(time.Second)/float64(c.bandwidth))
	c.diskSyncs++
	c.diskBytes += int64(total)
	c.diskTime += d
	c.diskGroup = group
	gen := c.diskGen
	c.n.AfterFunc(d, c.diskKey, func() { c.diskRelease(gen, group) })
}

// diskRelease runs on the driver: the group is durable. Its writers are
// released one per step (see nodeCost); then the next group starts. While
// the disk is stalled nothing completes: the release waits for the
// stall's end. A group of an earlier power generation was released by
// powerOff already.
func (c *nodeCost) diskRelease(gen uint64, group []*costReq) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.diskGen {
		return
	}
	if wait := time.Until(c.stallUntil); wait > 0 {
		c.n.AfterFunc(wait, c.diskKey, func() { c.diskRelease(gen, group) })
		return
	}
	group[0].released = true
	close(group[0].done)
	if len(group) > 1 {
		c.n.AfterFunc(0, c.diskKey, func() { c.diskRelease(gen, group[1:]) })
		return
	}
	c.diskGroup = nil
	c.diskBusy = len(c.diskQueue) > 0
	if c.diskBusy {
		c.diskStartLocked()
	}
}

// Settle returns at the end of the current driver step, once every other
// goroutine has blocked. Node loops that drain a queue when woken (the
// store's group commit, the commit and push loops) call it first, so that
// what they take does not depend on goroutine scheduling. who names the
// calling loop, unique within the node: callers with different names wake
// in canonical order, one per step.
func (c *nodeCost) Settle(who string) {
	c.gate()
	defer c.gate()
	c.mu.Lock()
	key, ok := c.settleKeys[who]
	if !ok {
		if c.settleKeys == nil {
			c.settleKeys = map[string]string{}
		}
		key = c.settleKey + " " + who
		c.settleKeys[who] = key
	}
	var w *settler
	if k := len(c.settleIdle); k > 0 {
		w, c.settleIdle = c.settleIdle[k-1], c.settleIdle[:k-1]
	} else {
		w = &settler{done: make(chan struct{}, 1)}
		w.fire = func() { w.done <- struct{}{} }
	}
	c.mu.Unlock()
	c.n.AfterFunc(0, key, w.fire)
	<-w.done
	// The token is taken: w is idle again. A waiter whose goroutine never
	// got here (its node crashed) is simply not reused.
	c.mu.Lock()
	c.settleIdle = append(c.settleIdle, w)
	c.mu.Unlock()
}

// settler is one Settle call's wake-up, reused by later calls.
type settler struct {
	done chan struct{} // one token: the step ended
	fire func()
}

// setSlow multiplies the disk's sync latency and divides its bandwidth by
// factor (1 restores it), from the next sync on.
func (c *nodeCost) setSlow(factor float64) {
	c.mu.Lock()
	c.slow = factor
	c.mu.Unlock()
}

// costStats are a node's hardware counters.
type costStats struct {
	CPUTime   time.Duration // background and idle included
	BgTime    time.Duration
	IdleTime  time.Duration
	CPUJobs   int64
	DiskSyncs int64
	DiskBytes int64
	DiskTime  time.Duration
}

func (c *nodeCost) stats() costStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return costStats{CPUTime: c.cpuTime, BgTime: c.bgTime, IdleTime: c.idleTime, CPUJobs: c.cpuJobs, DiskSyncs: c.diskSyncs, DiskBytes: c.diskBytes, DiskTime: c.diskTime}
}
