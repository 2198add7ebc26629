package sim

import (
	"sync"
	"time"

	"mailarray/sim/simnet"
)

// Host CPUs (Scenario.HostCPUs): the machine every node runs on, when the
// array is containers on one host, as the truth array is (issue 20). Each
// node has its own CPUs and quota (cost.go), but the host has only so many
// cores for all of them, and for what no node pays for: the load
// generator, and the kernel's work between the containers (veth pairs,
// the bridge, softirqs), HostCPUPerMsg for each message offered. On the
// truth array the host ran out first: at the measured saturation it was
// 93-97% busy, half of it system time, with no node at its quota.
//
// A node's CPU job needs a host core as well as one of its own: it waits,
// holding its own CPU (a runnable thread), until a host core is free, and
// holds the host core for its work (a throttled stretch of a quota's hold
// does not run, so it does not keep the core). A message's host work is a
// job nobody waits on, started when the message arrives at the load
// generator. Cores are handed out in the order asked for. Idle CPU
// (cpu_idle) takes no host core: it burns only where nothing else runs.
type hostCPU struct {
	n      *simnet.Net
	cores  int
	perMsg time.Duration

	mu    sync.Mutex
	busy  int
	queue []hostWaiter
	// Counters for the report: the host's busy core-time, and the part
	// of it that was HostCPUPerMsg work.
	busyTime  time.Duration
	clientJob time.Duration
}

// hostWaiter is a job waiting for a host core: start runs in a driver
// step of its own under key (its node's CPU key), holding the core.
type hostWaiter struct {
	key   string
	start func()
}

// hostClientKey orders the messages' host jobs among the driver's events.
const hostClientKey = "host client"

func newHostCPU(n *simnet.Net, cores int, perMsg time.Duration) *hostCPU {
	if cores <= 0 {
		return nil
	}
	return &hostCPU{n: n, cores: cores, perMsg: perMsg}
}

// acquire takes a host core for a job that will hold it for work and
// reports true, or queues start (to run under key once a core is handed
// to it) and reports false.
func (h *hostCPU) acquire(key string, work time.Duration, start func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.busyTime += work
	if h.busy < h.cores {
		h.busy++
		return true
	}
	h.queue = append(h.queue, hostWaiter{key: key, start: start})
	return false
}

// release runs on the driver when a job's work on a host core ends: the
// core passes to the first waiter, or is free.
func (h *hostCPU) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.queue) == 0 {
		h.busy--
		return
	}
	w := h.queue[0]
	h.queue[0] = hostWaiter{}
	h.queue = h.queue[1:]
	h.n.AfterFunc(0, w.key, w.start)
}

// message charges one offered message's host work (the load generator
// and the kernel's): a job on a host core that nobody waits for.
func (h *hostCPU) message() {
	if h == nil || h.perMsg <= 0 {
		return
	}
	run := func() { h.n.AfterFunc(h.perMsg, hostClientKey, h.release) }
	if h.acquire(hostClientKey, h.perMsg, run) {
		run()
	}
	h.mu.Lock()
	h.clientJob += h.perMsg
	h.mu.Unlock()
}

// hostStats are the host's counters.
type hostStats struct {
	Cores     int
	BusyTime  time.Duration
	ClientJob time.Duration
}

func (h *hostCPU) stats() hostStats {
	if h == nil {
		return hostStats{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return hostStats{Cores: h.cores, BusyTime: h.busyTime, ClientJob: h.clientJob}
}
