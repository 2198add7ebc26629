package simnet

import "time"

// Time faults of the network: a stalled link and a paused host hold every
// packet instead of losing it. A real kernel keeps a stopped process's TCP
// connections and socket buffers, and a congested or flapping path delays
// segments that TCP retransmits; nothing is lost that TCP would not
// deliver late, and datagrams (DNS) wait in the receiver's buffer.

// held reports whether the link holds its packets: stalled (StallLink),
// or either end paused (Host.Pause). Guarded by Net.mu.
func (l *link) held() bool { return l.hold || l.from.paused || l.to.paused }

// StallLink holds (stall true) or releases every packet from host a to
// host b, and from b to a unless oneway: stream segments and datagrams
// wait, none is lost, and on release they are sent again in order with
// new latencies. Membership is not told: serf's indirect probes go round
// one stalled path.
func (n *Net) StallLink(a, b string, oneway, stall bool) {
	a, b = canonicalIP(a), canonicalIP(b)
	keys := []linkKey{{a, b}, {b, a}}
	if oneway {
		keys = keys[:1]
	}
	n.mu.Lock()
	for _, k := range keys {
		if stall {
			n.holds[k] = struct{}{}
		} else {
			delete(n.holds, k)
		}
		if l := n.links[k]; l != nil {
			l.hold = stall
		}
	}
	if !stall {
		n.releaseStalledLocked()
	}
	n.mu.Unlock()
	n.poke()
}

// Held counts the packets the network holds now (partitions, down or
// paused hosts, stalled links) that travel from or to host ip.
func (n *Net) Held(ip string) int {
	ip = canonicalIP(ip)
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for _, e := range n.stalled {
		if e.link.from.ip == ip || e.link.to.ip == ip {
			k++
		}
	}
	return k
}

// HostPackets returns how many packets the network has delivered from and
// to host ip so far.
func (n *Net) HostPackets(ip string) (sent, received int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h := n.hosts[canonicalIP(ip)]; h != nil {
		return h.sent, h.received
	}
	return 0, 0
}

// Pause freezes the host's traffic (SIGSTOP of its process): every packet
// to or from it is held, in order, until Resume; none is lost and no
// connection is reset. Connects to it time out (NetConfig.ConnectTimeout)
// where a real kernel would complete the handshake into the stopped
// process's backlog: either way the client waits, then gives up. The
// node's goroutines are frozen by its cost model (nodeCost.pause), not
// here.
func (h *Host) Pause() {
	n := h.n
	n.mu.Lock()
	h.paused = true
	n.mu.Unlock()
}

// Resume releases what Pause held: the held packets are sent again now,
// with new latencies, and arrive in order.
func (h *Host) Resume() {
	n := h.n
	n.mu.Lock()
	h.paused = false
	n.releaseStalledLocked()
	n.mu.Unlock()
	n.poke()
}

// SetPath replaces the model of the path from host a to host b, and from
// b to a unless oneway, from now on (SetLink, one direction or both).
// Segments already scheduled keep their times.
func (n *Net) SetPath(a, b string, cfg LinkConfig, oneway bool) {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	a, b = canonicalIP(a), canonicalIP(b)
	keys := []linkKey{{a, b}, {b, a}}
	if oneway {
		keys = keys[:1]
	}
	n.mu.Lock()
	n.scheduleLocked(int64(time.Since(n.epoch))) // as SetLink
	for _, k := range keys {
		n.overrides[k] = cfg
		if l := n.links[k]; l != nil {
			l.cfg = cfg
		}
	}
	n.mu.Unlock()
	n.poke()
}

// MaxDelay returns the longest time a packet took from its send to its
// delivery on any link from or to host ip since the last call, and
// starts counting again: what proves a slow link was slow.
func (n *Net) MaxDelay(ip string) time.Duration {
	ip = canonicalIP(ip)
	n.mu.Lock()
	defer n.mu.Unlock()
	var d int64
	for _, l := range n.links {
		if l.from.ip == ip || l.to.ip == ip {
			d = max(d, l.maxDelay)
			l.maxDelay = 0
		}
	}
	return time.Duration(d)
}
