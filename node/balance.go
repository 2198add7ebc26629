package node

import (
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/ddns"
	"mailarray/node/env"
	"mailarray/node/mirror"
	"mailarray/node/strategy"
)

// balancer applies the node's configured strategies (package strategy) at
// both levels: it is the DNS server's Orderer, and it places the copies of
// the messages this node's listener takes. It turns cluster state into the
// strategies' inputs:
//   - candidates: the live nodes sorted by name, each with its weight tag
//     and its load report (loadTracker; unknown when stale);
//   - rotation index: for DNS, the time slot of Config.DNSRotateEvery plus
//     a hash of the question name, the same on every node in that slot;
//     for placement, a per-node message counter (sequential placement);
//   - seed: a draw from Env.Rand, only for the strategies that use one.
type balancer struct {
	n         *Node
	cfg       strategy.Config
	dns       strategy.Strategy
	dnsInfo   strategy.Info
	place     strategy.Strategy
	placeInfo strategy.Info
	// seq is the placement rotation; it starts at a hash of the node's
	// name so that the listeners of an array do not all begin with the
	// same primary.
	seq atomic.Uint64
}

func newBalancer(n *Node) *balancer {
	b := &balancer{n: n, cfg: strategy.DefaultConfig()}
	var err error
	// Config.Validate checked both names: a failure here is a programming
	// error.
	if b.dnsInfo, err = strategy.Lookup(n.conf().DNSStrategy); err != nil {
		panic("node: unvalidated dns strategy: " + err.Error())
	}
	if b.placeInfo, err = strategy.Lookup(n.conf().PlacementStrategy); err != nil {
		panic("node: unvalidated placement strategy: " + err.Error())
	}
	b.dns, b.place = b.dnsInfo.New(b.cfg), b.placeInfo.New(b.cfg)
	b.seq.Store(hashString(n.conf().Name))
	return b
}

// needsLoad reports whether a configured strategy reads load reports.
func (b *balancer) needsLoad() bool {
	return (b.n.conf().DNSAddr != "" && b.dnsInfo.UsesLoad) || b.placeInfo.UsesLoad
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// candidate is m as strategies see it at now.
func (b *balancer) candidate(m env.Member, now time.Time) strategy.Node {
	w, err := strconv.Atoi(m.Tags[env.TagWeight])
	if err != nil || w < 1 {
		w = 1
	}
	return strategy.Node{Name: m.Name, Weight: float64(w), Load: b.n.loads.get(m.Name, now)}
}

// --- DNS ---

// dnsOrderer is the balancer seen by the DNS server.
type dnsOrderer balancer

var _ ddns.Orderer = (*dnsOrderer)(nil)

func (b *balancer) orderer() *dnsOrderer { return (*dnsOrderer)(b) }

// Name is the DNS strategy's name, for the DNS server's stats.
func (o *dnsOrderer) Name() string { return o.dns.Name() }

// Order orders every candidate (none is dropped: a loaded node is still a
// valid, last-resort MX). Size and urgency are unknown at DNS time.
func (o *dnsOrderer) Order(q ddns.Query, members []env.Member) []env.Member {
	b := (*balancer)(o)
	if len(members) == 0 {
		return members
	}
	now := time.Now()
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b env.Member) int { return strings.Compare(a.Name, b.Name) })
	req := strategy.Request{
		Key:   q.Name,
		Local: b.n.conf().Name,
		Seq:   strategy.Slot(now, b.n.conf().DNSRotateEvery) + hashString(q.Name),
	}
	if b.dnsInfo.UsesSeed {
		req.Seed = b.n.env.Rand.Uint64()
	}
	cands := make([]strategy.Node, len(members))
	for i, m := range members {
		cands[i] = b.candidate(m, now)
	}
	cands = b.dns.Order(&req, cands)
	out := make([]env.Member, 0, len(cands))
	for _, c := range cands {
		i, _ := slices.BinarySearchFunc(members, c.Name, func(m env.Member, name string) int { return strings.Compare(m.Name, name) })
		out = append(out, members[i])
	}
	return out
}

// --- placement ---

// urgent reports whether data is urgent mail, reading its header only when
// the placement strategy cares.
func (b *balancer) urgent(data []byte) bool {
	return b.placeInfo.Name == "content" && strategy.Urgent(data)
}

// placement chooses where the copies of e go: up to R distinct live
// storage nodes of t, primary first.
func (b *balancer) placement(t mirror.Table, e *catalog.Entry, urgent bool) []string {
	if b.placeInfo.Name == "local" {
		// local needs no inputs: the mirroring table is its answer
		// (strategy.Local orders the same), and the delivery path stays lean.
		return t.Replicas(b.n.conf().Name)
	}
	now := time.Now()
	req := strategy.Request{Key: e.Mailbox, Local: b.n.conf().Name, Size: e.Size, Urgent: urgent, Seq: b.seq.Add(1) - 1}
	if b.placeInfo.UsesSeed {
		req.Seed = b.n.env.Rand.Uint64()
	}
	cands := make([]strategy.Node, 0, len(t.Ring))
	for _, name := range t.Ring { // sorted by name
		m, _ := b.n.members.Get(name)
		m.Name = name
		cands = append(cands, b.candidate(m, now))
	}
	cands = b.place.Order(&req, cands)
	out := make([]string, 0, min(b.n.conf().Replicas, len(cands)))
	for _, c := range cands[:cap(out)] {
		out = append(out, c.Name)
	}
	return out
}
