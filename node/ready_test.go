package node

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"mailarray/node/ddns"
	"mailarray/node/env"
)

// TestJudgeReady is the readiness rule: W storage nodes, itself included,
// answering, and a catalog compared with a peer's when there are peers.
func TestJudgeReady(t *testing.T) {
	refused := errors.New("remote error: tls: unknown certificate authority")
	for _, tc := range []struct {
		name       string
		in         readyInput
		wantReady  bool
		wantReason string
		wantReach  int
	}{
		{"lone node, W=1", readyInput{self: "n1", ring: []string{"n1"}, writeQuorum: 1}, true, ReadyOK, 1},
		{"lone node, W=2", readyInput{self: "n1", ring: []string{"n1"}, writeQuorum: 2}, false, ReadyNoQuorum, 1},
		{"every peer answers, synced", readyInput{self: "n1", ring: []string{"n1", "n2", "n3"}, writeQuorum: 2,
			probes: map[string]error{"n2": nil, "n3": nil}, synced: true}, true, ReadyOK, 3},
		{"one peer of two answers: still a quorum", readyInput{self: "n1", ring: []string{"n1", "n2", "n3"}, writeQuorum: 2,
			probes: map[string]error{"n2": refused, "n3": nil}, synced: true}, true, ReadyOK, 2},
		{"wrong CA: no peer answers", readyInput{self: "n4", ring: []string{"n1", "n2", "n3", "n4"}, writeQuorum: 2,
			probes: map[string]error{"n1": refused, "n2": refused, "n3": refused}}, false, ReadyNoQuorum, 1},
		{"peers not probed yet", readyInput{self: "n1", ring: []string{"n1", "n2"}, writeQuorum: 2}, false, ReadyNoQuorum, 1},
		{"quorum but catalog never synced", readyInput{self: "n1", ring: []string{"n1", "n2"}, writeQuorum: 2,
			probes: map[string]error{"n2": nil}}, false, ReadyCatalogStale, 2},
		{"not a storage node: needs W others", readyInput{self: "gw", ring: []string{"n1", "n2"}, writeQuorum: 2,
			probes: map[string]error{"n1": nil, "n2": nil}, synced: true}, true, ReadyOK, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := judgeReady(tc.in)
			assert.Equal(t, tc.wantReady, got.Ready, "ready: got %+v", got)
			assert.Equal(t, tc.wantReason, got.Reason, "reason: got %+v", got)
			assert.Equal(t, tc.wantReach, got.Reachable, "reachable: got %+v", got)
			if !got.Ready {
				assert.NotEmpty(t, got.Detail, "a node that is not ready says why")
			}
		})
	}
	got := judgeReady(readyInput{self: "n4", ring: []string{"n1", "n4"}, writeQuorum: 2, probes: map[string]error{"n1": refused}})
	assert.Equal(t, []string{"n1 (remote error: tls: unknown certificate authority)"}, got.NotAnswering, "names the peer and its error")
	assert.NotContains(t, got.Detail, "n1", "the detail (on the unauthenticated /readyz) names no peer")
}

// TestReadyOnly is the DNS rule: not-ready members leave service answers,
// node names always resolve, and an answer never empties because of it.
func TestReadyOnly(t *testing.T) {
	m := func(name, ready string) env.Member {
		tags := map[string]string{}
		if ready != "" {
			tags[env.TagReady] = ready
		}
		return env.Member{Name: name, Tags: tags}
	}
	draining := func(x env.Member) env.Member {
		x.Tags[env.TagDraining] = "1"
		return x
	}
	names := func(ms []env.Member) (out []string) {
		for _, x := range ms {
			out = append(out, x.Name)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		role string
		in   []env.Member
		want []string
	}{
		{"not ready left out", ddns.RoleSMTP, []env.Member{m("n1", "1"), m("n2", "0"), m("n3", "1")}, []string{"n1", "n3"}},
		{"no tag counts as ready", ddns.RolePOP3, []env.Member{m("n1", ""), m("n2", "0")}, []string{"n1"}},
		{"node names are never filtered", ddns.RoleAny, []env.Member{m("n1", "1"), m("n2", "0")}, []string{"n1", "n2"}},
		{"every node not ready: all kept", ddns.RoleSMTP, []env.Member{m("n1", "0"), m("n2", "0")}, []string{"n1", "n2"}},
		{"lone node not ready: kept", ddns.RoleIMAP, []env.Member{m("n1", "0")}, []string{"n1"}},
		{"draining left out", ddns.RoleSMTP, []env.Member{m("n1", "1"), draining(m("n2", "1"))}, []string{"n1"}},
		{"draining never the last resort", ddns.RoleSMTP, []env.Member{m("n1", "0"), draining(m("n2", "1"))}, []string{"n1"}},
		{"draining still resolves by name", ddns.RoleAny, []env.Member{m("n1", "1"), draining(m("n2", "1"))}, []string{"n1", "n2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, names(readyOnly(tc.role, tc.in)))
		})
	}
}
