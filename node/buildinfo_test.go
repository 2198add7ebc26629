package node

import (
	"io"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strconv"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scrape returns the node's /metrics page.
func scrape(t *testing.T, n *Node) string {
	t.Helper()
	rec := httptest.NewRecorder()
	n.metrics.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 200, rec.Code)
	b, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	return string(b)
}

// TestBuildInfoAndProcessMetrics (issue 18, item 10): every node reports
// the binary it runs, in Status and as mailarray_build_info, and the
// process and Go runtime metrics, each node on its own registry (two
// nodes in one process both serve them).
func TestBuildInfoAndProcessMetrics(t *testing.T) {
	a := startNode(t, func(c *Config) { c.Version, c.Commit = "v1.2.3-test", "abc123" })
	b := startNode(t, func(c *Config) { c.Version = "v1.2.4-test" })

	st := a.Status()
	assert.Equal(t, "v1.2.3-test", st.Build.Version)
	assert.Equal(t, runtime.Version(), st.Build.GoVersion)
	assert.Equal(t, "abc123", st.Build.Commit, "the link-time commit (go test stamps no vcs.revision)")

	for _, tc := range []struct {
		n       *Node
		version string
	}{{a, "v1.2.3-test"}, {b, "v1.2.4-test"}} {
		page := scrape(t, tc.n)
		assert.Regexp(t, `(?m)^mailarray_build_info\{commit="[^"]+",go_version="`+regexp.QuoteMeta(runtime.Version())+`",version="`+tc.version+`"\} 1$`, page)
		for _, want := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "go_goroutines"} {
			assert.Regexp(t, `(?m)^`+want+` `, page, "%s on node %s", want, tc.n.Name())
		}
	}
}

// TestDNSMetricsSplit (issue 18, item 10): DNS replies are counted once
// by rcode and, separately, by strategy, so sum() of the replies metric
// is the number of replies (one metric with a kind label counted an
// ordered answer twice).
func TestDNSMetricsSplit(t *testing.T) {
	n := startNode(t, func(*Config) {})
	const queries = 3
	for range queries {
		r := ask(t, "udp", n.Addr("dns"), "example.com", dns.TypeMX)
		require.Equal(t, dns.RcodeSuccess, r.Rcode)
	}
	r := ask(t, "udp", n.Addr("dns"), "nope.example.com", dns.TypeA)
	require.Equal(t, dns.RcodeNameError, r.Rcode)

	page := scrape(t, n)
	sum := 0
	for _, m := range regexp.MustCompile(`(?m)^mailarray_dns_answers_total\{rcode="[A-Z]+"\} (\d+)$`).FindAllStringSubmatch(page, -1) {
		k, _ := strconv.Atoi(m[1])
		sum += k
	}
	assert.Equal(t, queries+1, sum, "sum of mailarray_dns_answers_total is the number of replies:\n%s", page)
	assert.Contains(t, page, `mailarray_dns_answers_total{rcode="NXDOMAIN"} 1`)
	assert.Contains(t, page, `mailarray_dns_strategy_answers_total{strategy="roundrobin"} 3`)
	assert.NotContains(t, page, `kind="rcode"`)
}
