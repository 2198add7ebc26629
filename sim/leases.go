package sim

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"mailarray/node/env"
)

// The lease record: every node's lock table tells the simulator of its
// grants and refusals (env.LeaseObserver). A refusal whose holder belongs
// to a node incarnation that is down (crashed, removed, or paused) is a
// lease honoured on behalf of a dead or frozen holder; the report lists
// them with when the holder went down, and the chaos checker flags those
// later than the membership's detection time (DESIGN.md: a lease held by
// a node declared failed is released at once). Refusals for live holders
// are contention, ordinary, and not recorded, so runs without crashes or
// pauses report nothing.

// LeaseRefusal is one lock manager's refusal of a mailbox lease because
// a holder whose node was down held it.
type LeaseRefusal struct {
	// AtS is when, in seconds since the load started.
	AtS     float64 `json:"at_s"`
	Manager string  `json:"manager"`
	Mailbox string  `json:"mailbox"`
	// Holder is the holding session's node; HolderDownS is when that
	// node's incarnation went down (crash, remove or pause), since the
	// load started.
	Holder      string  `json:"holder"`
	HolderDownS float64 `json:"holder_down_s"`
	Requester   string  `json:"requester"`
}

// Limits of the lease record.
const (
	maxLeaseRefusals = 1000    // kept for the report; the rest are counted
	maxLeaseOwners   = 1 << 20 // owners remembered; later ones go unnamed
)

type nodeInc struct {
	node string
	inc  int
}

type leaseRefusal struct {
	at                               time.Time
	manager, mailbox, holder, reqstr string
	down                             time.Time
}

// leaseLog is the run's lease record, shared by every node's observer.
type leaseLog struct {
	n *Net

	mu       sync.Mutex
	cur      map[string]int        // node -> current incarnation
	owners   map[string]int        // owner -> incarnation of its node when first granted
	downs    map[nodeInc]time.Time // incarnations down, since when
	refusals []leaseRefusal
	more     int // refusals beyond maxLeaseRefusals
}

func newLeaseLog(n *Net) *leaseLog {
	return &leaseLog{n: n, cur: map[string]int{}, owners: map[string]int{}, downs: map[nodeInc]time.Time{}}
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
	if !isDown {
		l.mu.Unlock()
		return
	}
	if len(l.refusals) < maxLeaseRefusals {
		l.refusals = append(l.refusals, leaseRefusal{at: time.Now(), manager: o.manager, mailbox: mailbox, holder: hn, reqstr: nodeOf(requester), down: down})
	} else {
		l.more++
	}
	l.mu.Unlock()
	l.n.Note("lease %s refused to %s by %s: holder %s down", mailbox, nodeOf(requester), o.manager, hn)
}

// report lists the refusals in canonical order, times since load.
func (l *leaseLog) report(load time.Time) ([]LeaseRefusal, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]LeaseRefusal, 0, len(l.refusals))
	for _, r := range l.refusals {
		out = append(out, LeaseRefusal{
			AtS: roundTo(r.at.Sub(load).Seconds(), 3), Manager: r.manager, Mailbox: r.mailbox,
			Holder: r.holder, HolderDownS: roundTo(r.down.Sub(load).Seconds(), 3), Requester: r.reqstr,
		})
	}
	slices.SortFunc(out, func(a, b LeaseRefusal) int {
		return cmp.Or(cmp.Compare(a.AtS, b.AtS), strings.Compare(a.Manager, b.Manager), strings.Compare(a.Mailbox, b.Mailbox),
			strings.Compare(a.Holder, b.Holder), strings.Compare(a.Requester, b.Requester))
	})
	if len(out) == 0 {
		out = nil
	}
	return out, l.more
}
