package strategy

import (
	"cmp"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

var (
	_ Strategy = RoundRobin{}
	_ Strategy = Random{}
	_ Strategy = LeastLoad{}
	_ Strategy = P2C{}
	_ Strategy = Weighted{}
	_ Strategy = Size{}
	_ Strategy = Content{}
	_ Strategy = Hash{}
	_ Strategy = Local{}
)

// rotate turns nodes left by k in place and returns them.
func rotate(nodes []Node, k uint64) []Node {
	if len(nodes) < 2 {
		return nodes
	}
	s := int(k % uint64(len(nodes)))
	slices.Reverse(nodes[:s])
	slices.Reverse(nodes[s:])
	slices.Reverse(nodes)
	return nodes
}

// RoundRobin rotates the candidates by Request.Seq: sequential, wrapping.
type RoundRobin struct{}

func (RoundRobin) Name() string { return "roundrobin" }

func (RoundRobin) Order(req *Request, nodes []Node) []Node { return rotate(nodes, req.Seq) }

// Random shuffles the candidates with a stream seeded by Request.Seed.
type Random struct{}

func (Random) Name() string { return "random" }

func (Random) Order(req *Request, nodes []Node) []Node {
	r := rand.New(rand.NewPCG(req.Seed, seedStream))
	r.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	return nodes
}

// seedStream is the PCG stream of the strategies' draws (any constant does:
// Seed carries the randomness).
const seedStream = 0x6d61696c61727261 // "mailarra"

// LeastLoad puts the least loaded nodes first (Config.Units); nodes of equal
// load keep the round-robin order, so an idle array degrades to
// roundrobin instead of piling onto the first name.
type LeastLoad struct{ Config Config }

func (LeastLoad) Name() string { return "leastload" }

func (s LeastLoad) Order(req *Request, nodes []Node) []Node {
	rotate(nodes, req.Seq)
	slices.SortStableFunc(nodes, func(a, b Node) int { return cmp.Compare(s.Config.Units(a.Load), s.Config.Units(b.Load)) })
	return nodes
}

// P2C fills each position with the less loaded of two candidates drawn at
// random from those left (the power of two random choices): it avoids the
// loaded nodes without all deciders herding onto the single least loaded
// one when their load reports are equally stale.
type P2C struct{ Config Config }

func (P2C) Name() string { return "p2c" }

func (s P2C) Order(req *Request, nodes []Node) []Node {
	r := rand.New(rand.NewPCG(req.Seed, seedStream))
	for i := 0; i < len(nodes)-1; i++ {
		left := len(nodes) - i
		a := i + r.IntN(left)
		b := i + r.IntN(left-1)
		if b >= a {
			b++
		}
		if s.Config.Units(nodes[b].Load) < s.Config.Units(nodes[a].Load) {
			a = b
		}
		nodes[i], nodes[a] = nodes[a], nodes[i]
	}
	return nodes
}

// Weighted orders by weighted rendezvous hashing of Request.Seq: the node
// with the largest weight / -ln(u) comes first, u uniform in (0,1) from a
// hash of (Seq, name). Over successive Seq values each node comes first in
// proportion to its weight, and the order is a function of Seq alone, so
// every DNS node agrees on it.
type Weighted struct{}

func (Weighted) Name() string { return "weighted" }

func (Weighted) Order(req *Request, nodes []Node) []Node {
	score := make(map[string]float64, len(nodes))
	var seq [8]byte
	for i := range seq {
		seq[i] = byte(req.Seq >> (8 * i))
	}
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write(seq[:])
		h.Write([]byte(n.Name))
		// Top 53 bits, +0.5: u strictly inside (0,1).
		u := (float64(mix(h.Sum64())>>11) + 0.5) / (1 << 53)
		score[n.Name] = max(n.Weight, minWeight) / -math.Log(u)
	}
	slices.SortStableFunc(nodes, func(a, b Node) int { return cmp.Compare(score[b.Name], score[a.Name]) })
	return nodes
}

// minWeight stands in for a missing or nonsensical weight.
const minWeight = 1

// mix is a 64-bit finaliser (splitmix64): FNV's low-entropy high bits for
// short, similar inputs would bias u.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Size steers large messages (Size >= Config.LargeBytes) to the nodes with
// the most free disk times capacity weight, discounted by load so one big
// node is not buried; unknown loads (and unknown free disk) score zero.
// Smaller messages, and DNS queries (Size 0), go round-robin.
type Size struct{ Config Config }

func (Size) Name() string { return "size" }

func (s Size) Order(req *Request, nodes []Node) []Node {
	rotate(nodes, req.Seq)
	if req.Size < s.Config.LargeBytes {
		return nodes
	}
	score := func(n Node) float64 {
		u := s.Config.Units(n.Load)
		if u == FullyLoaded || n.Load.FreeDiskBytes <= 0 {
			return 0
		}
		return float64(n.Load.FreeDiskBytes) * max(n.Weight, minWeight) / float64(1+u)
	}
	slices.SortStableFunc(nodes, func(a, b Node) int { return cmp.Compare(score(b), score(a)) })
	return nodes
}

// Content sends urgent messages to the fastest nodes: lowest recent
// latency (in Config.LatencyMsPerUnit steps), then highest capacity weight,
// then round-robin. Other messages, and DNS queries, go round-robin.
type Content struct{ Config Config }

func (Content) Name() string { return "content" }

func (s Content) Order(req *Request, nodes []Node) []Node {
	rotate(nodes, req.Seq)
	if !req.Urgent {
		return nodes
	}
	slices.SortStableFunc(nodes, func(a, b Node) int {
		if c := cmp.Compare(s.Config.latencyUnits(a.Load), s.Config.latencyUnits(b.Load)); c != 0 {
			return c
		}
		return cmp.Compare(max(b.Weight, minWeight), max(a.Weight, minWeight))
	})
	return nodes
}

// Hash orders by rendezvous (highest random weight) hashing of Request.Key:
// the same mailbox always lands on the same nodes while they live, and
// losing a node moves only its share. It is the static placement most
// clustered mail systems use.
type Hash struct{}

func (Hash) Name() string { return "hash" }

func (Hash) Order(req *Request, nodes []Node) []Node {
	score := make(map[string]uint64, len(nodes))
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write([]byte(n.Name))
		h.Write([]byte{0})
		h.Write([]byte(req.Key))
		score[n.Name] = mix(h.Sum64())
	}
	slices.SortStableFunc(nodes, func(a, b Node) int { return cmp.Compare(score[b.Name], score[a.Name]) })
	return nodes
}

// Local puts Request.Local first, then the nodes after it in name order,
// wrapping: with the live storage nodes as candidates that is the node and
// its mirrors in the mirroring table (mirror.Table.Replicas). A deciding
// node that is not a candidate is replaced by the ones that follow its name.
type Local struct{}

func (Local) Name() string { return "local" }

func (Local) Order(req *Request, nodes []Node) []Node {
	i, _ := slices.BinarySearchFunc(nodes, req.Local, func(n Node, name string) int { return strings.Compare(n.Name, name) })
	return rotate(nodes, uint64(i))
}
