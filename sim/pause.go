package sim

import (
	"maps"
	"slices"
	"time"

	"mailarray/node/env"
)

// A paused node (SIGSTOP, then SIGCONT) is modeled in three parts:
//
//   - its host holds every packet in and out (Host.Pause), so no request
//     reaches it and nothing it sends leaves;
//   - its cost model parks every goroutine that asks for CPU or disk time,
//     or settles a loop (nodeCost.pause): the SMTP and POP3 sessions, the
//     peer handlers, the store's writer, the commit and push loops all
//     stop at their next CPU, disk or settle call, and those already
//     waiting stay parked even when their service ends;
//   - membership (Cluster.Pause): its own view learns nothing, and every
//     other node declares it failed after its detection delay, unless it
//     resumes first, as serf's probes would; on resume it refutes its
//     failure and the others see it alive after a gossip delay.
//
// What is not frozen: a goroutine of the node that only waits on a timer
// and then touches memory (the maintenance loop's pending resolution,
// lease renewal against its own lock table, Load reports) still runs on
// time, as if the process had been stopped and its timers fired at once
// on SIGCONT, only earlier. Whatever such a goroutine decides reaches
// nobody before the resume (its packets are held) and goes to disk only
// through the parked writer, so the others see it when they would have
// seen a late timer's work. A wall clock read during the pause is the true
// time, as SIGCONT would find it.

// pause parks the node's CPU, disk and settle callers from now until
// resume.
func (c *nodeCost) pause() {
	c.mu.Lock()
	c.paused = true
	c.mu.Unlock()
}

// resume releases the parked callers, one per driver step in the order
// they parked (as the disk releases a group), and reports how many there
// were.
func (c *nodeCost) resume() int {
	c.mu.Lock()
	parked := c.parked
	c.paused, c.parked = false, nil
	c.mu.Unlock()
	c.releaseParked(parked)
	return len(parked)
}

func (c *nodeCost) releaseParked(parked []chan struct{}) {
	if len(parked) == 0 {
		return
	}
	c.n.AfterFunc(0, c.pauseKey(), func() {
		close(parked[0])
		c.releaseParked(parked[1:])
	})
}

func (c *nodeCost) pauseKey() string { return "pause " + c.cpuKey }

// gate parks the caller while the node is paused.
func (c *nodeCost) gate() {
	c.mu.Lock()
	if !c.paused {
		c.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	c.parked = append(c.parked, ch)
	c.mu.Unlock()
	<-ch
}

// Pause models membership while the node called name is paused: its own
// view learns nothing until Resume, and every other live node declares it
// failed after a detection delay drawn in [DetectMin, DetectMax], unless
// it resumed first.
func (c *Cluster) Pause(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodeLocked(name)
	if nd.crashed || nd.paused || nd.member.Status != env.StatusAlive {
		return
	}
	nd.paused = true
	nd.pauses++
	gen := nd.pauses
	nd.view.stop()
	m, inc, ver := cloneMember(nd.member), nd.inc, nd.ver
	m.Status = env.StatusFailed
	for _, obs := range slices.Sorted(maps.Keys(c.nodes)) {
		o := c.nodes[obs]
		if o == nd || o.crashed || o.member.Status != env.StatusAlive || c.cuts[[2]string{obs, name}] {
			continue
		}
		v := o.view
		c.n.AfterFunc(c.drawLocked(c.cfg.DetectMin, c.cfg.DetectMax), "member "+obs, func() {
			c.mu.Lock()
			still := nd.paused && nd.pauses == gen
			c.mu.Unlock()
			if still {
				v.apply(env.EventFail, m, inc, ver)
			}
		})
	}
}

// Resume ends the node's pause: its view catches up with the cluster at
// once (its subscribers see what changed meanwhile), and it refutes its
// failure with a new incarnation, which the others learn after a gossip
// delay (those that never declared it failed see nothing).
func (c *Cluster) Resume(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodeLocked(name)
	if !nd.paused {
		return
	}
	nd.paused = false
	if nd.crashed {
		return
	}
	nd.inc++
	nd.view.resync(c.snapshotLocked())
	c.broadcastLocked(nd, env.EventJoin, c.cfg.GossipMin, c.cfg.GossipMax)
}

// clearPause forgets the node's pause without news: it is about to crash.
func (c *Cluster) clearPause(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodeLocked(name).paused = false
}

// pauseNode pauses sn (SIGSTOP): host, CPU and disk, membership.
func (s *simulation) pauseNode(sn *simNode) {
	sn.paused = true
	sn.pausedAt = time.Now()
	sn.pauseSent, sn.pauseRecv = s.net.HostPackets(sn.ip)
	sn.host.Pause()
	sn.cost.pause()
	s.cluster.Pause(sn.spec.Name)
}

// resumeNode resumes sn (SIGCONT) and returns the evidence of the pause:
// packets delivered from and to the host while paused (0 if the pause
// held), packets held at the resume, goroutines parked.
func (s *simulation) resumeNode(sn *simNode) map[string]int64 {
	sent, recv := s.net.HostPackets(sn.ip)
	ev := map[string]int64{
		"paused_ms":    time.Since(sn.pausedAt).Milliseconds(),
		"sent":         sent - sn.pauseSent,
		"received":     recv - sn.pauseRecv,
		"held_packets": int64(s.net.Held(sn.ip)),
	}
	sn.paused = false
	s.cluster.Resume(sn.spec.Name)
	sn.host.Resume()
	ev["parked"] = int64(sn.cost.resume())
	return ev
}
