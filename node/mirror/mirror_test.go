package mirror

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

func members(names ...string) []env.Member {
	var out []env.Member
	for _, n := range names {
		out = append(out, env.Member{Name: n, Status: env.StatusAlive, Tags: map[string]string{env.TagRoles: "smtp,store"}})
	}
	return out
}

func TestMirrorsRing(t *testing.T) {
	tab := Build(members("n3", "n1", "n2", "n4"), 2)
	require.Equal(t, []string{"n1", "n2", "n3", "n4"}, tab.Ring)
	tests := []struct {
		node string
		want []string
	}{
		{"n1", []string{"n2"}},
		{"n4", []string{"n1"}},
		{"n0", []string{"n1"}},  // off the ring: the following member
		{"n2a", []string{"n3"}}, // off the ring, between members
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tab.Mirrors(tc.node), "Mirrors(%s)", tc.node)
	}
	assert.Equal(t, []string{"n2", "n3"}, tab.Replicas("n2"))
	assert.Equal(t, []string{"n3", "n4"}, tab.Replicas("n2a"), "an off-ring primary is replaced by the next members")
	assert.Len(t, Build(members("n1"), 3).Replicas("n1"), 1, "a lone node cannot have mirrors")
	r3 := Build(members("a", "b", "c", "d"), 3)
	assert.Equal(t, []string{"d", "a", "b"}, r3.Replicas("d"))
}

func TestBuildSkipsDeadAndNonStore(t *testing.T) {
	ms := members("a", "b", "c")
	ms[1].Status = env.StatusFailed
	ms = append(ms, env.Member{Name: "dnsonly", Status: env.StatusAlive, Tags: map[string]string{env.TagRoles: "dns"}})
	tab := Build(ms, 2)
	assert.Equal(t, []string{"a", "c"}, tab.Ring)
	assert.Equal(t, []string{"c"}, tab.Mirrors("a"), "a's mirror moves past the failed b")
}

func TestVersionIsContent(t *testing.T) {
	a := Build(members("x", "y"), 2)
	b := Build(members("y", "x"), 2)
	c := Build(members("x", "y", "z"), 2)
	d := Build(members("x", "y"), 3)
	assert.Equal(t, a.Version, b.Version, "same members in another order, same version")
	assert.NotEqual(t, a.Version, c.Version)
	assert.NotEqual(t, a.Version, d.Version)
}
