package sim

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"mailarray/node/env"
	"mailarray/sim/simnet"
)

// The lease record: every node's lock table tells the simulator of its
// grants and refusals (env.LeaseObserver). A refusal whose holder belongs
// to a node incarnation that is down (crashed, removed, or paused) is a
// lease honoured on behalf of a dead or frozen holder; the report lists
// them with when the holder went down, and the chaos checker flags those
// later than the membership's detection time (docs/design.md: a lease held by
// a node declared failed is released at once). Refusals for live holders
// are contention, ordinary, and not recorded, so runs without crashes or
// pauses report nothing.

// LeaseRefusal is one mailbox lease that lock managers honoured, by
// refusing it to other sessions, while its holder's node was down.
type LeaseRefusal struct {
	Mailbox string `json:"mailbox"`
	// Holder is the holding session's node; HolderDownS is when that
	// node's incarnation went down (crash, remove or pause), in seconds
	// since the load started.
	Holder      string  `json:"holder"`
	HolderDownS float64 `json:"holder_down_s"`
	// FirstS and LastS are the first and the last refusal, since the load
	// started; Refusals counts them (every manager, every requester).
	FirstS   float64 `json:"first_s"`
	LastS    float64 `json:"last_s"`
	Refusals int     `json:"refusals"`
}

// Limits of the lease record.
const (
	maxLeaseRefusals = 1000    // leases kept for the report; the rest are counted
	maxLeaseOwners   = 1 << 20 // owners remembered; later ones go unnamed
)

type nodeInc struct {
	node string
	inc  int
}

type leaseKey struct{ mailbox, owner string }

type leaseRefusal struct {
	holder            string
	down, first, last time.Time
	refusals          int
}

// leaseLog is the run's lease record, shared by every node's observer.
type leaseLog struct {
	n *simnet.Net

	mu       sync.Mutex
	cur      map[string]int        // node -> current incarnation
	owners   map[string]int        // owner -> incarnation of its node when first granted
	downs    map[nodeInc]time.Time // incarnations down, since when
	refusals map[leaseKey]*leaseRefusal
	more     int // leases beyond maxLeaseRefusals
}

func newLeaseLog(n *simnet.Net) *leaseLog {
	return &leaseLog{n: n, cur: map[string]int{}, owners: map[string]int{}, downs: map[nodeInc]time.Time{}, refusals: map[leaseKey]*leaseRefusal{}}
}

// nodeOf is the node part of a lease owner ("<node>/<id>").
func nodeOf(owner string) string {
	name, _, _ := strings.Cut(owner, "/")
	return name
}

// down records that node's incarnation inc stopped at t (crash, remove,
// pause); the earliest time counts.
func (l *leaseLog) down(node string, inc int, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := nodeInc{node, inc}
	if _, ok := l.downs[k]; !ok {
		l.downs[k] = t
	}
}

// up records that a paused incarnation resumed.
func (l *leaseLog) up(node string, inc int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.downs, nodeInc{node, inc})
}

// leaseObserver returns the observer of sn's current incarnation.
func (s *simulation) leaseObserver(sn *simNode) env.LeaseObserver {
	l := s.leases
	l.mu.Lock()
	l.cur[sn.spec.Name] = sn.inc
	l.mu.Unlock()
	return &nodeLeases{log: l, manager: sn.spec.Name}
}

// nodeLeases is one node's env.LeaseObserver.
type nodeLeases struct {
	log     *leaseLog
	manager string
}

var _ env.LeaseObserver = (*nodeLeases)(nil)

func (o *nodeLeases) Granted(mailbox, owner string) {
	l := o.log
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.owners[owner]; !ok && len(l.owners) < maxLeaseOwners {
		l.owners[owner] = l.cur[nodeOf(owner)]
	}
}

func (o *nodeLeases) Refused(mailbox, holder, requester string) {
	l := o.log
	hn := nodeOf(holder)
	l.mu.Lock()
	inc, ok := l.owners[holder]
	if !ok {
		inc = l.cur[hn]
	}
	down, isDown := l.downs[nodeInc{hn, inc}]
	_, managerDown := l.downs[nodeInc{o.manager, l.cur[o.manager]}]
	if !isDown || managerDown {
		// A paused manager's answer is held with its packets until it
		// resumes, when a holder on the same node is alive again: nobody
		// sees the refusal while it is down (a session reading requests
		// buffered before the pause still runs; pause.go).
		l.mu.Unlock()
		return
	}
	now := time.Now()
	k := leaseKey{mailbox, holder}
	switch r := l.refusals[k]; {
	case r != nil:
		r.last = now
		r.refusals++
	case len(l.refusals) < maxLeaseRefusals:
		l.refusals[k] = &leaseRefusal{holder: hn, down: down, first: now, last: now, refusals: 1}
	default:
		l.more++
	}
	l.mu.Unlock()
	l.n.Note("lease %s refused to %s by %s: holder %s down", mailbox, nodeOf(requester), o.manager, hn)
}

// report lists the leases in canonical order, times since load.
func (l *leaseLog) report(load time.Time) ([]LeaseRefusal, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []LeaseRefusal
	since := func(t time.Time) float64 { return roundTo(t.Sub(load).Seconds(), 3) }
	for k, r := range l.refusals {
		out = append(out, LeaseRefusal{Mailbox: k.mailbox, Holder: r.holder, HolderDownS: since(r.down),
			FirstS: since(r.first), LastS: since(r.last), Refusals: r.refusals})
	}
	slices.SortFunc(out, func(a, b LeaseRefusal) int {
		return cmp.Or(cmp.Compare(a.FirstS, b.FirstS), strings.Compare(a.Mailbox, b.Mailbox), strings.Compare(a.Holder, b.Holder),
			cmp.Compare(a.LastS, b.LastS), cmp.Compare(a.Refusals, b.Refusals))
	})
	return out, l.more
}
