package sim

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"mailarray/node/env"
	"mailarray/sim/simnet"
)

// MembershipConfig is the model of cluster membership: how long it takes
// each node to learn of a change. Delays are drawn per observer from the
// net's seeded stream.
type MembershipConfig struct {
	// DetectMin and DetectMax bound the time for an observer to declare a
	// crashed node failed (serf: probe interval, suspicion timeout).
	// Defaults to be calibrated against real serf.
	DetectMin, DetectMax time.Duration
	// GossipMin and GossipMax bound the time for an observer to learn of
	// a join, a graceful leave or a tag change.
	GossipMin, GossipMax time.Duration
	// RejoinMin and RejoinMax bound the time, after a partition heals, for
	// members that declared each other failed across it to see each other
	// alive again (serf's reconnect attempts, every 30 s).
	RejoinMin, RejoinMax time.Duration
	// SubscriberBuffer is the capacity of a Subscribe channel.
	SubscriberBuffer int
	// SubscriberQueueMax bounds events queued for a subscriber that does
	// not read. Events cannot be dropped (the node would act on a wrong
	// view) nor block the driver, so overflowing it is a bug and panics.
	SubscriberQueueMax int
}

// DefaultMembershipConfig is serf with memberlist's LAN profile (what
// `mailarray serve` runs) on a small cluster, as measured over SimNet by
// TestSerfOverSimNet (three nodes, 40 seeds): a crash was declared failed
// after 5.0-7.9 s (median 5.7 s; node/member's real-socket tests measure
// 5.1-5.7 s), a tag change reached the others in 14-192 ms. See doc.go.
func DefaultMembershipConfig() MembershipConfig {
	return MembershipConfig{
		DetectMin: 5 * time.Second,
		DetectMax: 8 * time.Second,
		GossipMin: 10 * time.Millisecond,
		GossipMax: 200 * time.Millisecond,
		// TestSerfPartitionOverSimNet: 70% of rejoins took 18-23 s, a few
		// 27-45 s, a few under 0.5 s.
		RejoinMin:          15 * time.Second,
		RejoinMax:          25 * time.Second,
		SubscriberBuffer:   64,
		SubscriberQueueMax: 1 << 16,
	}
}

// Validate reports a config that cannot be simulated.
func (c MembershipConfig) Validate() error {
	switch {
	case c.DetectMin < 0 || c.DetectMax < c.DetectMin:
		return fmt.Errorf("sim: membership detection delay [%v, %v] is not a range >= 0", c.DetectMin, c.DetectMax)
	case c.GossipMin < 0 || c.GossipMax < c.GossipMin:
		return fmt.Errorf("sim: membership gossip delay [%v, %v] is not a range >= 0", c.GossipMin, c.GossipMax)
	case c.RejoinMin < 0 || c.RejoinMax < c.RejoinMin:
		return fmt.Errorf("sim: membership rejoin delay [%v, %v] is not a range >= 0", c.RejoinMin, c.RejoinMax)
	case c.SubscriberBuffer < 0:
		return errors.New("sim: SubscriberBuffer must be >= 0")
	case c.SubscriberQueueMax <= 0:
		return errors.New("sim: SubscriberQueueMax must be > 0")
	}
	return nil
}

// Cluster is the modeled membership of the simulated array: the true state
// of every node, and each node's own view of it, which learns of changes
// after the delays of MembershipConfig. Changes reach views as driver
// events, so they are delivered at exact virtual times in canonical order
// and go into the net's digest.
//
// Call Add, Crash, Restart and Remove from one goroutine (the fault
// schedule) or from Net.AfterFunc callbacks: their random draws are made in
// call order. The Cluster does not touch the network: the scenario crashes
// the Host and the member together.
type Cluster struct {
	n   *simnet.Net
	cfg MembershipConfig
	rnd *env.Rand

	mu    sync.Mutex
	nodes map[string]*clusterNode
	cuts  map[[2]string]bool // partitioned pairs of names, both orders
}

// clusterNode is the truth about one node. inc (incarnation) grows with each
// join, so a view can tell news about the current run of a node from stale
// news about a previous one; ver grows with each change of its tags, so a
// view can tell the newer of two updates that gossip delivered out of order
// (memberlist bumps the incarnation for both; two counters keep a tag change
// from refuting a failure verdict, which the simulator does not model).
type clusterNode struct {
	member  env.Member
	inc     uint64
	ver     uint64
	crashed bool
	view    *View
	// paused: frozen (Pause) until Resume; pauses counts the pauses, so a
	// detection drawn during one is dropped after its Resume.
	paused bool
	pauses uint64
}

type knownMember struct {
	m   env.Member
	inc uint64
	ver uint64
}

// NewCluster returns a cluster of the initial members, who all know each
// other from the start. It panics if cfg fails Validate.
func NewCluster(n *simnet.Net, cfg MembershipConfig, initial ...env.Member) *Cluster {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	c := &Cluster{n: n, cfg: cfg, rnd: netRand(n, "sim/membership"), nodes: map[string]*clusterNode{}, cuts: map[[2]string]bool{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range initial {
		if c.nodes[m.Name] != nil {
			panic(fmt.Sprintf("sim: member %s listed twice", m.Name))
		}
		m = cloneMember(m)
		m.Status = env.StatusAlive
		c.nodes[m.Name] = &clusterNode{member: m, inc: 1, view: newView(c, m.Name)}
	}
	snap := c.snapshotLocked()
	for _, nd := range c.nodes {
		nd.view.resync(snap)
	}
	return c
}

// For returns the view of the node called name, which implements
// env.Membership for that node. It panics if name was never added.
func (c *Cluster) For(name string) *View {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodeLocked(name).view
}

func (c *Cluster) nodeLocked(name string) *clusterNode {
	nd := c.nodes[name]
	if nd == nil {
		panic(fmt.Sprintf("sim: member %s unknown to the cluster", name))
	}
	return nd
}

// Members returns the true state of every node, sorted by name.
func (c *Cluster) Members() []env.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]env.Member, 0, len(c.nodes))
	for _, nd := range c.nodes {
		out = append(out, cloneMember(nd.member))
	}
	slices.SortFunc(out, func(a, b env.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Add joins a new node, or rejoins one that left: it learns the cluster at
// once (push-pull sync with a seed), the others after a gossip delay each.
func (c *Cluster) Add(m env.Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodes[m.Name]
	switch {
	case nd == nil:
		nd = &clusterNode{view: newView(c, m.Name)}
		c.nodes[m.Name] = nd
	case nd.crashed:
		panic(fmt.Sprintf("sim: member %s added while crashed; use Restart", m.Name))
	case nd.member.Status == env.StatusAlive:
		panic(fmt.Sprintf("sim: member %s added twice", m.Name))
	}
	m = cloneMember(m)
	m.Status = env.StatusAlive
	nd.member = m
	nd.inc++
	nd.view.resync(c.snapshotLocked())
	c.broadcastLocked(nd, env.EventJoin, c.cfg.GossipMin, c.cfg.GossipMax)
}

// Crash declares the node crashed: its own view stops (its subscribers see
// nothing more until Restart), and each other live node declares it failed
// after a detection delay drawn in [DetectMin, DetectMax].
func (c *Cluster) Crash(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodeLocked(name)
	if nd.crashed || nd.member.Status != env.StatusAlive {
		return
	}
	nd.crashed = true
	nd.member.Status = env.StatusFailed
	nd.view.stop()
	c.broadcastLocked(nd, env.EventFail, c.cfg.DetectMin, c.cfg.DetectMax)
}

// Restart brings a crashed node back as a new incarnation: its view
// resumes, synced with the cluster at once (its subscribers see what
// changed meanwhile), and the others learn of the join after a gossip delay.
func (c *Cluster) Restart(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodeLocked(name)
	if !nd.crashed {
		return
	}
	nd.crashed = false
	nd.inc++
	nd.member.Status = env.StatusAlive
	nd.view.resync(c.snapshotLocked())
	c.broadcastLocked(nd, env.EventJoin, c.cfg.GossipMin, c.cfg.GossipMax)
}

// Remove is a graceful leave: the node's own view records it at once and
// stops, the others learn of it after a gossip delay.
func (c *Cluster) Remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodeLocked(name)
	if nd.crashed || nd.member.Status != env.StatusAlive {
		return
	}
	nd.member.Status = env.StatusLeft
	nd.view.apply(env.EventLeave, cloneMember(nd.member), nd.inc, nd.ver)
	nd.view.stop()
	c.broadcastLocked(nd, env.EventLeave, c.cfg.GossipMin, c.cfg.GossipMax)
}

func (c *Cluster) setTags(name string, tags map[string]string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd := c.nodeLocked(name)
	if nd.crashed || nd.member.Status != env.StatusAlive {
		return fmt.Errorf("sim: set tags of %s: member is %v", name, nd.member.Status)
	}
	nd.member.Tags = maps.Clone(tags)
	nd.ver++
	nd.view.apply(env.EventUpdate, cloneMember(nd.member), nd.inc, nd.ver)
	c.broadcastLocked(nd, env.EventUpdate, c.cfg.GossipMin, c.cfg.GossipMax)
	return nil
}

func (c *Cluster) snapshotLocked() map[string]knownMember {
	snap := make(map[string]knownMember, len(c.nodes))
	for name, nd := range c.nodes {
		snap[name] = knownMember{cloneMember(nd.member), nd.inc, nd.ver}
	}
	return snap
}

// broadcastLocked schedules the news of subject's change at every other
// live node, after a delay drawn in [lo, hi] per observer, in name order.
func (c *Cluster) broadcastLocked(subject *clusterNode, kind env.EventKind, lo, hi time.Duration) {
	names := slices.Sorted(maps.Keys(c.nodes))
	m, inc, ver := cloneMember(subject.member), subject.inc, subject.ver
	for _, name := range names {
		obs := c.nodes[name]
		if obs == subject || obs.crashed || obs.member.Status != env.StatusAlive {
			continue
		}
		if c.cuts[[2]string{name, m.Name}] {
			continue // no news crosses a partition; Heal resyncs
		}
		d := c.drawLocked(lo, hi)
		v := obs.view
		c.n.AfterFunc(d, "member "+name, func() { v.apply(kind, m, inc, ver) })
	}
}

func (c *Cluster) drawLocked(lo, hi time.Duration) time.Duration {
	if hi > lo {
		return lo + time.Duration(c.rnd.Int64N(int64(hi-lo)+1))
	}
	return lo
}

// Partition models membership across a network partition between the
// members named in a and those named in b (call Net.Partition too: the
// Cluster does not touch the network). Each live member on one side
// declares each live member of the other failed after a detection delay
// drawn in [DetectMin, DetectMax], unless Heal comes first; no news crosses
// the cut meanwhile. Partitions accumulate until Heal.
func (c *Cluster) Partition(a, b []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	for _, x := range a {
		for _, y := range b {
			if x == y || c.cuts[[2]string{x, y}] {
				continue
			}
			c.cuts[[2]string{x, y}], c.cuts[[2]string{y, x}] = true, true
			c.cutLocked(x, y)
			c.cutLocked(y, x)
		}
	}
}

// cutLocked schedules observer obs's verdict that subj failed.
func (c *Cluster) cutLocked(obs, subj string) {
	o, s := c.nodes[obs], c.nodes[subj]
	if o == nil || s == nil || o.crashed || s.crashed || o.member.Status != env.StatusAlive || s.member.Status != env.StatusAlive {
		return
	}
	m, inc, ver, v := cloneMember(s.member), s.inc, s.ver, o.view
	m.Status = env.StatusFailed
	key := [2]string{obs, subj}
	c.n.AfterFunc(c.drawLocked(c.cfg.DetectMin, c.cfg.DetectMax), "member "+obs, func() {
		c.mu.Lock()
		cut := c.cuts[key]
		c.mu.Unlock()
		if cut {
			v.apply(env.EventFail, m, inc, ver)
		}
	})
}

// Heal ends every partition. Each member that was cut off refutes its
// failure with a new incarnation: the members across the cut see it alive
// again after a delay drawn in [RejoinMin, RejoinMax] (serf's reconnect),
// the others merely learn the new incarnation after a gossip delay.
func (c *Cluster) Heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cuts) == 0 {
		return
	}
	across := map[string][]string{} // subject -> observers it was cut from
	for k := range c.cuts {
		across[k[1]] = append(across[k[1]], k[0])
	}
	clear(c.cuts)
	names := slices.Sorted(maps.Keys(c.nodes))
	for _, subj := range slices.Sorted(maps.Keys(across)) {
		s := c.nodes[subj]
		if s == nil || s.crashed || s.member.Status != env.StatusAlive {
			continue
		}
		s.inc++
		m, inc, ver := cloneMember(s.member), s.inc, s.ver
		for _, name := range names {
			obs := c.nodes[name]
			if obs == s || obs.crashed || obs.member.Status != env.StatusAlive {
				continue
			}
			d := c.drawLocked(c.cfg.GossipMin, c.cfg.GossipMax)
			if slices.Contains(across[subj], name) {
				d = c.drawLocked(c.cfg.RejoinMin, c.cfg.RejoinMax)
			}
			v := obs.view
			c.n.AfterFunc(d, "member "+name, func() { v.apply(env.EventJoin, m, inc, ver) })
		}
	}
}

// View is one node's membership as modeled by its Cluster. It implements
// env.Membership.
type View struct {
	c    *Cluster
	name string

	mu      sync.Mutex
	known   map[string]knownMember
	stopped bool // crashed or left: learns nothing until Restart or Add
	closed  bool
	subs    []*subscription
}

var _ env.Membership = (*View)(nil)

func newView(c *Cluster, name string) *View {
	return &View{c: c, name: name, known: map[string]knownMember{}}
}

// Local is this node as it knows itself.
func (v *View) Local() env.Member {
	v.mu.Lock()
	defer v.mu.Unlock()
	return cloneMember(v.known[v.name].m)
}

// Members returns every member this node knows of, alive or not, sorted
// by name.
func (v *View) Members() []env.Member {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]env.Member, 0, len(v.known))
	for _, k := range v.known {
		out = append(out, cloneMember(k.m))
	}
	slices.SortFunc(out, func(a, b env.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Subscribe returns the events this node learns from now on, in order, and
// the function that ends the subscription (closing the channel).
func (v *View) Subscribe() (<-chan env.Event, func()) {
	cfg := v.c.cfg
	s := &subscription{
		ch:     make(chan env.Event, cfg.SubscriberBuffer),
		notify: make(chan struct{}, 1),
		stopc:  make(chan struct{}),
		exited: make(chan struct{}),
		max:    cfg.SubscriberQueueMax,
		owner:  v.name,
	}
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	v.subs = append(v.subs, s)
	v.mu.Unlock()
	go s.pump()
	return s.ch, func() {
		v.mu.Lock()
		if i := slices.Index(v.subs, s); i >= 0 {
			v.subs = slices.Delete(v.subs, i, i+1)
		}
		v.mu.Unlock()
		s.cancel()
	}
}

// SetTags replaces this node's tags; the others learn after a gossip delay.
func (v *View) SetTags(tags map[string]string) error { return v.c.setTags(v.name, tags) }

// Leave is a graceful departure (Cluster.Remove).
func (v *View) Leave() error {
	v.c.Remove(v.name)
	return nil
}

// Close ends every subscription. It does not change what the others see:
// the scenario decides whether the node crashed or left.
func (v *View) Close() error {
	v.mu.Lock()
	v.closed = true
	subs := v.subs
	v.subs = nil
	v.mu.Unlock()
	for _, s := range subs {
		s.cancel()
	}
	return nil
}

func (v *View) stop() {
	v.mu.Lock()
	v.stopped = true
	v.mu.Unlock()
}

// resync replaces the view with the cluster's state and emits what
// changed, in name order. It resumes a stopped view.
func (v *View) resync(snap map[string]knownMember) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.stopped = false
	for _, name := range slices.Sorted(maps.Keys(snap)) {
		now := snap[name]
		old, had := v.known[name]
		v.known[name] = now
		var kind env.EventKind
		switch {
		case now.m.Status == env.StatusAlive && (!had || old.m.Status != env.StatusAlive):
			kind = env.EventJoin
		case !had:
			continue // learnt already gone: nothing happened from its point of view
		case now.m.Status == env.StatusFailed && old.m.Status == env.StatusAlive:
			kind = env.EventFail
		case now.m.Status == env.StatusLeft && old.m.Status == env.StatusAlive:
			kind = env.EventLeave
		case now.m.Status == env.StatusAlive && !maps.Equal(now.m.Tags, old.m.Tags):
			kind = env.EventUpdate
		default:
			continue
		}
		v.emitLocked(env.Event{Kind: kind, Member: now.m})
	}
}

// apply is news of a member reaching this node (on the driver, or at once
// for the node's own changes). Gossip delays are drawn per message, so news
// arrives out of order: a join or tag update is memberlist's "alive"
// message and applies only when newer, by (incarnation, tag version), than
// what the view knows; a failure or leave applies to the incarnation it
// names. Without the version, a node's "ready" tag overtaken by its older
// "not ready" one stayed "not ready" at that observer for the whole run,
// and its DNS answers left the node out.
func (v *View) apply(kind env.EventKind, m env.Member, inc, ver uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped || v.closed {
		return
	}
	old, had := v.known[m.Name]
	if had && inc < old.inc {
		return // stale: about an earlier incarnation
	}
	switch kind {
	case env.EventJoin, env.EventUpdate:
		switch {
		case !had, inc > old.inc:
		case old.m.Status != env.StatusAlive, ver <= old.ver:
			// The same incarnation: a verdict of failure or departure
			// stands (only a new incarnation refutes it), and older or
			// repeated news of its tags changes nothing.
			return
		}
		v.known[m.Name] = knownMember{m, inc, ver}
		switch {
		case !had || old.m.Status != env.StatusAlive:
			kind = env.EventJoin
		case !maps.Equal(m.Tags, old.m.Tags):
			kind = env.EventUpdate // also: restarted before we noticed it was gone
		default:
			return
		}
	case env.EventFail, env.EventLeave:
		if !had || inc != old.inc || old.m.Status != env.StatusAlive {
			return
		}
		v.known[m.Name] = knownMember{m, inc, max(ver, old.ver)}
	}
	v.emitLocked(env.Event{Kind: kind, Member: m})
}

func (v *View) emitLocked(ev env.Event) {
	v.c.n.Note("member %s: %v %s", v.name, ev.Kind, ev.Member.Name)
	for _, s := range v.subs {
		s.push(cloneEvent(ev))
	}
}

// subscription forwards a view's events to its channel through a pump
// goroutine, so that the driver never blocks on a slow subscriber.
type subscription struct {
	ch     chan env.Event
	notify chan struct{}
	stopc  chan struct{}
	exited chan struct{}
	once   sync.Once
	max    int
	owner  string

	mu    sync.Mutex
	queue []env.Event
}

func (s *subscription) push(ev env.Event) {
	s.mu.Lock()
	if len(s.queue) >= s.max {
		s.mu.Unlock()
		panic(fmt.Sprintf("sim: invariant violated: membership subscriber of %s stopped reading (%d events queued)", s.owner, s.max))
	}
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	signal(s.notify)
}

func (s *subscription) pump() {
	defer close(s.exited)
	defer close(s.ch)
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.mu.Unlock()
			select {
			case <-s.notify:
				continue
			case <-s.stopc:
				return
			}
		}
		ev := s.queue[0]
		s.queue[0] = env.Event{}
		s.queue = s.queue[1:]
		s.mu.Unlock()
		select {
		case s.ch <- ev:
		case <-s.stopc:
			return
		}
	}
}

// cancel stops the pump and waits for it, so the channel is closed when
// cancel returns.
func (s *subscription) cancel() {
	s.once.Do(func() { close(s.stopc) })
	<-s.exited
}

func cloneMember(m env.Member) env.Member {
	m.Tags = maps.Clone(m.Tags)
	m.Addr = slices.Clone(m.Addr)
	return m
}

func cloneEvent(ev env.Event) env.Event {
	ev.Member = cloneMember(ev.Member)
	return ev
}
