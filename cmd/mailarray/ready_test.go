package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readyTimeout bounds how long a change of the array takes to reach every
// node's view and answers: gossip plus a probe round or two. A gossip
// message lost on a loaded machine (UDP) is repaired by serf's push-pull
// sync, every 15 s in the local profile: two of those fit.
const readyTimeout = 45 * time.Second

// makeCA runs `mailarray tls ca` into dir and `tls cert` for each name.
func makeCA(t *testing.T, dir string, names ...string) {
	t.Helper()
	_, errOut, code := runCommand(t, "", "tls", "ca", "--out", dir)
	require.Equal(t, 0, code, errOut)
	for _, n := range names {
		_, errOut, code := runCommand(t, "", "tls", "cert", "--ca", dir, "--name", n, "--ip", "127.0.0.1", "--out", dir)
		require.Equal(t, 0, code, errOut)
	}
}

// peerTLSFlags are the flags giving node name the peer certificate made
// by makeCA in dir.
func peerTLSFlags(dir, name string) []string {
	return []string{"--peer-ca", filepath.Join(dir, "ca.pem"),
		"--peer-cert", filepath.Join(dir, name+".pem"), "--peer-cert-key", filepath.Join(dir, name+"-key.pem")}
}

// mxTargets asks the node's DNS server for the domain's MX records and
// returns the node names they point to, sorted.
func mxTargets(p *proc) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(testDomain), dns.TypeMX)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, p.addrs["dns"])
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	var out []string
	for _, rr := range r.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, strings.TrimSuffix(mx.Mx, "."+dns.Fqdn(testDomain)))
		}
	}
	sort.Strings(out)
	return out, nil
}

// TestReadinessWrongCA (issue 18, item 6): a node whose peer certificate
// is from another CA joins gossip but no peer takes its requests. It must
// not say ready: /readyz answers 503 with the reason, its status and
// metrics say it, its log says it once, and no node's MX answer names it,
// while the three good nodes stay ready and keep answering.
func TestReadinessWrongCA(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "ca-good"), filepath.Join(dir, "ca-other")
	makeCA(t, good, "n1", "n2", "n3")
	makeCA(t, bad, "n4")
	users := writeUsers(t, dir, clusterUsers...)
	copies := []string{"--replicas", "2", "--write-quorum", "2"}
	var nodes []*proc
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("n%d", i)
		o := nodeOpts{name: name, dir: dir, users: users, gossip: true, extra: append(append([]string{}, copies...), peerTLSFlags(good, name)...)}
		if i > 1 {
			o.join = []string{nodes[0].gossip}
		}
		nodes = append(nodes, startNode(t, o))
	}
	require.Eventually(t, func() bool {
		for _, p := range nodes {
			st, err := p.status()
			if err != nil || !p.ready() || aliveMembers(st.Members) != 3 {
				return false
			}
		}
		return true
	}, joinTimeout, 50*time.Millisecond, "the three nodes of one CA see each other and are ready")

	n4 := startNode(t, nodeOpts{name: "n4", dir: dir, users: users, gossip: true, join: []string{nodes[0].gossip},
		extra: append(append([]string{}, copies...), peerTLSFlags(bad, "n4")...)})
	all := append(append([]*proc{}, nodes...), n4)
	require.Eventually(t, func() bool {
		for _, p := range all {
			st, err := p.status()
			if err != nil || aliveMembers(st.Members) != 4 {
				return false
			}
		}
		return true
	}, readyTimeout, 50*time.Millisecond, "n4 joins gossip: every node sees four alive members")

	var body string
	if !assert.Eventually(t, func() bool {
		code, b, err := n4.get("/readyz")
		body = string(b)
		return err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, "no_write_quorum")
	}, readyTimeout, 50*time.Millisecond, "n4's /readyz says it cannot reach a write quorum") {
		t.Fatalf("n4's last /readyz answer: %q", body)
	}
	assert.Contains(t, body, "1 of the 2 storage nodes", "/readyz says how many answer")

	st, err := n4.status()
	require.NoError(t, err)
	assert.False(t, st.Ready.Ready, "status says n4 is not ready")
	assert.Equal(t, "no_write_quorum", st.Ready.Reason)
	assert.Len(t, st.Ready.NotAnswering, 3, "status names the three peers that refuse n4: %v", st.Ready.NotAnswering)
	_, metrics, err := n4.get("/metrics")
	require.NoError(t, err)
	assert.Contains(t, string(metrics), `mailarray_ready{reason="no_write_quorum"} 0`)
	out, errOut, code := runCommand(t, "", "status", "--addr", n4.http)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "NOT READY (no_write_quorum)")

	// Every node's DNS, n4's included, sends mail to the three good
	// nodes only (n4 knows the others' readiness from their tags).
	var last []string
	if !assert.Eventually(t, func() bool {
		last = last[:0]
		ok := true
		for _, p := range all {
			got, err := mxTargets(p)
			st, _ := p.status()
			last = append(last, fmt.Sprintf("%s: MX %v %v, ready %+v", p.name, got, err, st.Ready))
			ok = ok && err == nil && strings.Join(got, ",") == "n1,n2,n3"
		}
		return ok
	}, readyTimeout, 50*time.Millisecond, "no node's MX answer names n4") {
		t.Fatalf("last MX answers: %v", last)
	}

	for _, p := range nodes {
		assert.True(t, p.ready(), "%s stays ready: it reaches the other two", p.name)
		_, m, err := p.get("/metrics")
		require.NoError(t, err)
		assert.Contains(t, string(m), `mailarray_ready{reason="ok"} 1`, p.name)
	}
	// The reason is logged once per change, not at every probe: wait
	// for a few more probe rounds first.
	probes := st.Rebuild.AntiEntropyRounds
	require.Eventually(t, func() bool {
		st, err := n4.status()
		return err == nil && st.Rebuild.AntiEntropyRounds >= probes+3
	}, readyTimeout, 50*time.Millisecond)
	assert.Equal(t, 1, strings.Count(n4.log(), "node: not ready"), "n4 logs why once:\n%s", n4.log())
}
