package strategy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
	"mailarray/node/mirror"
)

// idle is a fresh report of an idle node with plenty of disk.
var idle = Load{Known: true, FreeDiskBytes: 100 << 30}

func loaded(sessions int) Load {
	l := idle
	l.Sessions = sessions
	return l
}

// cands builds candidates a, b, c, ... with weight 1 and idle loads.
func cands(names ...string) []Node {
	out := make([]Node, len(names))
	for i, n := range names {
		out[i] = Node{Name: n, Weight: 1, Load: idle}
	}
	return out
}

func names(nodes []Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

func with(nodes []Node, name string, fn func(*Node)) []Node {
	for i := range nodes {
		if nodes[i].Name == name {
			fn(&nodes[i])
		}
	}
	return nodes
}

func must(t *testing.T, name string) Strategy {
	t.Helper()
	s, err := New(name, DefaultConfig())
	require.NoError(t, err)
	return s
}

func TestList(t *testing.T) {
	want := []string{"roundrobin", "random", "leastload", "p2c", "weighted", "size", "content", "hash", "local"}
	assert.Equal(t, want, Names(), "the built-ins, in their fixed order")
	for _, info := range List() {
		s, err := New(info.Name, DefaultConfig())
		require.NoError(t, err)
		assert.Equal(t, info.Name, s.Name(), "Name matches the list")
		assert.True(t, info.Placement, "%s: every strategy can place", info.Name)
		assert.Equal(t, info.Name != "local", info.DNS, "%s: only local is placement-only", info.Name)
		assert.NotEmpty(t, info.Doc)
	}
	_, err := New("fastest", DefaultConfig())
	assert.ErrorIs(t, err, ErrUnknown)
	_, err = New("roundrobin", Config{})
	assert.Error(t, err, "an invalid Config is refused")
}

// Every strategy returns a permutation of its candidates, and the same one
// for the same inputs.
func TestPermutationAndDeterminism(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for _, info := range List() {
		s := info.New(DefaultConfig())
		for range 200 {
			n := r.IntN(7)
			nodes := make([]Node, n)
			for i := range nodes {
				nodes[i] = Node{Name: fmt.Sprintf("n%d", i), Weight: float64(1 + r.IntN(4)),
					Load: Load{Known: r.IntN(4) > 0, Sessions: r.IntN(5), Queue: r.IntN(200), LatencyMs: r.Float64() * 50, FreeDiskBytes: r.Int64N(4 << 30)}}
			}
			req := &Request{Key: fmt.Sprintf("u%d@example.com", r.IntN(50)), Local: fmt.Sprintf("n%d", r.IntN(8)),
				Size: r.Int64N(4 << 20), Urgent: r.IntN(2) == 0, Seq: r.Uint64(), Seed: r.Uint64()}
			got1 := names(s.Order(req, slices.Clone(nodes)))
			got2 := names(s.Order(req, slices.Clone(nodes)))
			want := names(nodes)
			sorted := slices.Clone(got1)
			slices.Sort(sorted)
			require.Equal(t, want, sorted, "%s: got %v, want a permutation of %v", info.Name, got1, want)
			require.Equal(t, got1, got2, "%s: same inputs, same order", info.Name)
		}
	}
}

func TestOrder(t *testing.T) {
	unknown := func(n *Node) { n.Load = Load{} }
	tests := []struct {
		name     string
		strategy string
		req      Request
		nodes    []Node
		want     []string
	}{
		{"roundrobin seq 0", "roundrobin", Request{Seq: 0}, cands("a", "b", "c"), []string{"a", "b", "c"}},
		{"roundrobin seq 1", "roundrobin", Request{Seq: 1}, cands("a", "b", "c"), []string{"b", "c", "a"}},
		{"roundrobin seq 5 wraps", "roundrobin", Request{Seq: 5}, cands("a", "b", "c"), []string{"c", "a", "b"}},
		{"roundrobin ignores load", "roundrobin", Request{Seq: 0}, with(cands("a", "b"), "a", func(n *Node) { n.Load = loaded(50) }), []string{"a", "b"}},
		{"roundrobin one node", "roundrobin", Request{Seq: 7}, cands("a"), []string{"a"}},
		{"roundrobin none", "roundrobin", Request{Seq: 7}, cands(), []string{}},

		{"local first then successors", "local", Request{Local: "b"}, cands("a", "b", "c", "d"), []string{"b", "c", "d", "a"}},
		{"local off the ring", "local", Request{Local: "bb"}, cands("a", "b", "c", "d"), []string{"c", "d", "a", "b"}},
		{"local after the last name wraps", "local", Request{Local: "z"}, cands("a", "b"), []string{"a", "b"}},

		{"leastload", "leastload", Request{}, with(with(cands("a", "b", "c"), "a", func(n *Node) { n.Load = loaded(5) }), "c", func(n *Node) { n.Load = loaded(2) }), []string{"b", "c", "a"}},
		{"leastload ties rotate", "leastload", Request{Seq: 1}, cands("a", "b", "c"), []string{"b", "c", "a"}},
		{"leastload unknown is fully loaded", "leastload", Request{}, with(with(cands("a", "b", "c"), "a", unknown), "b", func(n *Node) { n.Load = loaded(400) }), []string{"c", "b", "a"}},
		{"leastload avoids low disk", "leastload", Request{}, with(with(cands("a", "b"), "a", func(n *Node) { n.Load.FreeDiskBytes = 10 << 20 }), "b", func(n *Node) { n.Load = loaded(30) }), []string{"b", "a"}},
		{"leastload counts queue and latency", "leastload", Request{}, with(with(cands("a", "b", "c"), "a", func(n *Node) { n.Load.Queue = 3 * 64 }), "b", func(n *Node) { n.Load.LatencyMs = 60 }), []string{"c", "b", "a"}},

		{"size small goes round-robin", "size", Request{Size: 10 << 10, Seq: 1}, with(cands("a", "b", "c"), "c", func(n *Node) { n.Load.FreeDiskBytes = 900 << 30 }), []string{"b", "c", "a"}},
		{"size large to most free disk", "size", Request{Size: 2 << 20, Seq: 1}, with(cands("a", "b", "c"), "c", func(n *Node) { n.Load.FreeDiskBytes = 900 << 30 }), []string{"c", "b", "a"}},
		{"size weighs capacity", "size", Request{Size: 2 << 20}, with(with(cands("a", "b"), "b", func(n *Node) { n.Weight = 3 }), "a", func(n *Node) { n.Load.FreeDiskBytes = 200 << 30 }), []string{"b", "a"}},
		{"size discounts load", "size", Request{Size: 2 << 20}, with(with(cands("a", "b"), "a", func(n *Node) { n.Load = loaded(9) }), "a", func(n *Node) { n.Load.FreeDiskBytes = 500 << 30 }), []string{"b", "a"}},
		{"size unknown last", "size", Request{Size: 2 << 20}, with(cands("a", "b"), "a", func(n *Node) { n.Load = Load{FreeDiskBytes: 900 << 30} }), []string{"b", "a"}},

		{"content not urgent goes round-robin", "content", Request{Seq: 2}, with(cands("a", "b", "c"), "a", func(n *Node) { n.Load.LatencyMs = 100 }), []string{"c", "a", "b"}},
		{"content urgent to the fastest", "content", Request{Urgent: true, Seq: 2}, with(with(cands("a", "b", "c"), "c", func(n *Node) { n.Load.LatencyMs = 100 }), "a", func(n *Node) { n.Load.LatencyMs = 35 }), []string{"b", "a", "c"}},
		{"content urgent ties by weight", "content", Request{Urgent: true}, with(cands("a", "b", "c"), "c", func(n *Node) { n.Weight = 4 }), []string{"c", "a", "b"}},
		{"content urgent unknown last", "content", Request{Urgent: true}, with(cands("a", "b"), "a", unknown), []string{"b", "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := names(must(t, tt.strategy).Order(&tt.req, tt.nodes))
			assert.Equal(t, tt.want, got, "%s order", tt.strategy)
		})
	}
}

// local is the mirroring table's placement: Replicas(local) are the first R.
func TestLocalMatchesMirrorTable(t *testing.T) {
	ring := []string{"n1", "n2", "n4", "n5"}
	var members []env.Member
	for _, n := range ring {
		members = append(members, env.Member{Name: n, Status: env.StatusAlive, Tags: map[string]string{env.TagRoles: "smtp,store"}})
	}
	for r := 1; r <= 4; r++ {
		tab := mirror.Build(members, r)
		for _, local := range []string{"n0", "n1", "n2", "n3", "n5", "n9"} {
			got := names(Local{}.Order(&Request{Local: local}, cands(ring...)))[:r]
			assert.Equal(t, tab.Replicas(local), got, "R=%d local=%s", r, local)
		}
	}
}

// pickFirst counts which node comes first over k decisions.
func pickFirst(s Strategy, nodes []Node, k int, req func(i int) Request) map[string]int {
	out := map[string]int{}
	for i := range k {
		r := req(i)
		out[s.Order(&r, slices.Clone(nodes))[0].Name]++
	}
	return out
}

// within asserts count is within 4.5 standard deviations of a binomial
// (k, p) mean: a fixed-seed test should fail only when the code is wrong.
func within(t *testing.T, what string, count, k int, p float64) {
	t.Helper()
	mean := float64(k) * p
	sd := math.Sqrt(float64(k) * p * (1 - p))
	assert.InDelta(t, mean, float64(count), 4.5*sd, "%s: %d of %d, expected %.0f", what, count, k, mean)
}

func TestRandomIsUniformAndSeeded(t *testing.T) {
	const k = 3000
	nodes := cands("a", "b", "c")
	got := pickFirst(Random{}, nodes, k, func(i int) Request { return Request{Seed: uint64(i)} })
	for _, n := range []string{"a", "b", "c"} {
		within(t, "random first "+n, got[n], k, 1.0/3)
	}
	again := pickFirst(Random{}, nodes, k, func(i int) Request { return Request{Seed: uint64(i)} })
	assert.Equal(t, got, again, "same seeds, same draws")
}

func TestP2C(t *testing.T) {
	const k = 3000
	nodes := with(with(cands("a", "b", "c"), "c", func(n *Node) { n.Load = loaded(10) }), "b", func(n *Node) { n.Load = Load{} })
	got := pickFirst(P2C{Config: DefaultConfig()}, nodes, k, func(i int) Request { return Request{Seed: uint64(i)} })
	assert.Zero(t, got["b"], "a node of unknown load loses every duel: %v", got)
	within(t, "p2c idle a (in 2 of 3 pairs)", got["a"], k, 2.0/3)
	within(t, "p2c loaded c (wins only against b)", got["c"], k, 1.0/3)
	nodes = cands("a", "b", "c", "d")
	nodes = with(nodes, "d", func(n *Node) { n.Load = loaded(9) })
	got = pickFirst(P2C{Config: DefaultConfig()}, nodes, k, func(i int) Request { return Request{Seed: uint64(i)} })
	assert.Zero(t, got["d"], "the most loaded node never comes first")
	for _, n := range []string{"a", "b", "c"} {
		within(t, "p2c first "+n, got[n], k, 1.0/3)
	}
}

func TestWeightedFollowsWeights(t *testing.T) {
	const k = 6000
	nodes := with(with(cands("a", "b", "c"), "b", func(n *Node) { n.Weight = 2 }), "c", func(n *Node) { n.Weight = 3 })
	got := pickFirst(Weighted{}, nodes, k, func(i int) Request { return Request{Seq: uint64(i)} })
	within(t, "weight 1", got["a"], k, 1.0/6)
	within(t, "weight 2", got["b"], k, 2.0/6)
	within(t, "weight 3", got["c"], k, 3.0/6)
}

func TestHashIsStableAndMovesOnlyTheLostShare(t *testing.T) {
	s := Hash{}
	three, two := cands("a", "b", "c"), cands("a", "c")
	counts := map[string]int{}
	for i := range 3000 {
		req := &Request{Key: fmt.Sprintf("user%d@example.com", i), Seq: uint64(i), Seed: uint64(i)}
		first := s.Order(req, slices.Clone(three))[0].Name
		counts[first]++
		assert.Equal(t, first, s.Order(req, slices.Clone(three))[0].Name, "same mailbox, same node")
		if first != "b" {
			assert.Equal(t, first, s.Order(req, slices.Clone(two))[0].Name, "losing b moves only b's mailboxes")
		}
	}
	for _, n := range []string{"a", "b", "c"} {
		within(t, "hash share of "+n, counts[n], 3000, 1.0/3)
	}
}

func TestUnits(t *testing.T) {
	c := DefaultConfig()
	tests := []struct {
		name string
		load Load
		want int64
	}{
		{"unknown", Load{Sessions: 0}, FullyLoaded},
		{"idle", idle, 0},
		{"sessions", loaded(7), 7},
		{"queue", Load{Known: true, Queue: 130, FreeDiskBytes: -1}, 2},
		{"latency", Load{Known: true, LatencyMs: 110, FreeDiskBytes: -1}, 4},
		{"low disk", Load{Known: true, FreeDiskBytes: 1}, 1000},
		{"huge latency is bounded", Load{Known: true, LatencyMs: math.Inf(1), FreeDiskBytes: -1}, maxUnits},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, c.Units(tt.load), tt.name)
	}
}

func TestSlot(t *testing.T) {
	base := time.Unix(1000, 0)
	assert.Equal(t, uint64(10000), Slot(base, 100*time.Millisecond))
	assert.Equal(t, uint64(10000), Slot(base.Add(99*time.Millisecond), 100*time.Millisecond))
	assert.Equal(t, uint64(10001), Slot(base.Add(100*time.Millisecond), 100*time.Millisecond))
	assert.Panics(t, func() { Slot(base, 0) })
}

func TestUrgent(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want bool
	}{
		{"plain", "From: a@b\r\nSubject: hi\r\n\r\nbody\r\n", false},
		{"priority urgent", "Subject: x\r\nPriority: urgent\r\n\r\n", true},
		{"priority case", "priority:   URGENT\r\n\r\n", true},
		{"priority non-urgent", "Priority: non-urgent\r\n\r\n", false},
		{"x-priority 1 with comment", "X-Priority: 1 (Highest)\r\n\r\n", true},
		{"x-priority 3", "X-Priority: 3 (Normal)\r\n\r\n", false},
		{"x-priority 10", "X-Priority: 10\r\n\r\n", false},
		{"importance high", "Importance: High\r\n\r\nx", true},
		{"importance low", "Importance: low\r\n\r\nx", false},
		{"LF line ends", "Subject: x\nImportance: high\n\nbody", true},
		{"folded value", "Subject: x\r\nPriority:\r\n urgent\r\n\r\n", true},
		{"in the body only", "Subject: x\r\n\r\nPriority: urgent\r\n", false},
		{"after our Received header", "Received: from x\r\n\tby y; Mon, 1 Jan 2024\r\nX-Priority: 1\r\n\r\n", true},
		{"field name prefix", "X-Priority-Foo: 1\r\nPriorityX: urgent\r\n\r\n", false},
		{"no body separator", "Importance: high", true},
		{"empty", "", false},
		{"not a field", "garbage line\r\nImportance: high\r\n\r\n", true},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Urgent([]byte(tt.msg)), "%s: %q", tt.name, tt.msg)
	}
	long := make([]byte, maxHeaderScanBytes+10)
	for i := range long {
		long[i] = 'a'
	}
	copy(long[maxHeaderScanBytes+1:], "\r\nImportance: high\r\n\r\n")
	assert.False(t, Urgent(long), "nothing past the scan limit is read")
}

func FuzzUrgent(f *testing.F) {
	f.Add([]byte("Priority: urgent\r\n\r\n"))
	f.Add([]byte("X-Priority:\r\n\t1\n\n"))
	f.Add([]byte(":\r\n \r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		Urgent(b) // must not panic
	})
}
