package ddns

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dnsperfQueries is the query mix: the array's names and static records.
var dnsperfQueries = []string{
	"example.com MX", "example.com SOA", "example.com NS", "example.com TXT",
	"pop.example.com A", "imap.example.com A", "smtp.example.com AAAA", "n1.example.com A",
	"_dmarc.example.com TXT", "www.example.com A", "x.wild.example.com TXT", "nope.example.com A",
}

// dnsperf (DNS-OARC's load generator, Debian's dnsperf package) sends
// thousands of queries over UDP and pipelined over TCP, and every one is
// answered: "Queries lost: 0". With miekg/dns's default of 128 queries a
// connection, TCP lost those in flight at each close.
func TestDnsperfLosesNoQueries(t *testing.T) {
	dnsperf, err := exec.LookPath("dnsperf")
	if err != nil {
		t.Skip("dnsperf not installed (apt-get install dnsperf): skipping the load check")
	}
	ts := startServer(t, testCluster(), serverOpts{})
	z, err := ParseZone("example.com", strings.NewReader(exampleZone), "example.com.zone", "n1")
	require.NoError(t, err)
	ts.SetZones(NewZones(z))

	const perQuery = 250 // 3000 queries a run
	var input strings.Builder
	for range perQuery {
		for _, q := range dnsperfQueries {
			input.WriteString(q + "\n")
		}
	}
	data := filepath.Join(t.TempDir(), "queries")
	require.NoError(t, os.WriteFile(data, []byte(input.String()), 0o644))
	sent := perQuery * len(dnsperfQueries)

	for _, mode := range []string{"udp", "tcp"} {
		t.Run(mode, func(t *testing.T) {
			addr := ts.udpAddr
			if mode == "tcp" {
				addr = ts.tcpAddr
			}
			host, port, err := net.SplitHostPort(addr)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// One client, so a TCP connection carries far more than 128
			// queries, 100 of them outstanding at a time; a generous
			// timeout, as CI's cores are shared.
			out, err := exec.CommandContext(ctx, dnsperf, "-s", host, "-p", port, "-m", mode, "-d", data,
				"-n", "1", "-c", "1", "-q", "100", "-t", "30", "-e").CombinedOutput()
			require.NoError(t, err, string(out))
			t.Logf("dnsperf -m %s:\n%s", mode, out)
			assert.Equal(t, sent, dnsperfCount(t, out, "Queries sent"))
			assert.Equal(t, sent, dnsperfCount(t, out, "Queries completed"))
			assert.Equal(t, 0, dnsperfCount(t, out, "Queries lost"))
		})
	}
}

// dnsperfCount reads a "<label>: <n>" line of dnsperf's statistics.
func dnsperfCount(t *testing.T, out []byte, label string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(label) + `:\s+(\d+)`).FindSubmatch(out)
	require.NotNil(t, m, "no %q in dnsperf's output", label)
	n, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	return n
}
