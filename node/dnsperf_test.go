package node

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// On loopback every node advertises 127.0.0.1: a service name gets one A
// record, not one per node (RFC 2181 section 5), over UDP and TCP.
func TestDNSServiceNamesNoDuplicateRecords(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	for _, netw := range []string{"udp", "tcp"} {
		for _, name := range []string{"pop.example.com", "smtp.example.com", "mx.example.org"} {
			r := ask(t, netw, c.nodes["n1"].Addr("dns"), name, dns.TypeA)
			require.Equal(t, dns.RcodeSuccess, r.Rcode, "%s %s", netw, name)
			require.Len(t, r.Answer, 1, "%s %s: %v", netw, name, r.Answer)
			assert.Equal(t, "127.0.0.1", r.Answer[0].(*dns.A).A.String())
		}
		mx := ask(t, netw, c.nodes["n2"].Addr("dns"), "example.com", dns.TypeMX)
		assert.Len(t, mx.Answer, 3, "one MX per node: the names differ")
	}
}

// dnsperf (Debian's package) against a node of a 3-node array, over UDP
// and over TCP with >128 pipelined queries on one connection: none lost.
func TestDNSArrayDnsperf(t *testing.T) {
	dnsperf, err := exec.LookPath("dnsperf")
	if err != nil {
		t.Skip("dnsperf not installed (apt-get install dnsperf): skipping")
	}
	c := newTestCluster(t, 3, 2, 2)
	var input strings.Builder
	for range 200 {
		for _, q := range []string{"example.com MX", "pop.example.com A", "imap.example.com A", "n2.example.com A", "example.org SOA", "nope.example.com A"} {
			input.WriteString(q + "\n")
		}
	}
	data := filepath.Join(t.TempDir(), "queries")
	require.NoError(t, os.WriteFile(data, []byte(input.String()), 0o644))
	host, port, err := net.SplitHostPort(c.nodes["n3"].Addr("dns"))
	require.NoError(t, err)
	for _, mode := range []string{"udp", "tcp"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, dnsperf, "-s", host, "-p", port, "-m", mode, "-d", data,
			"-n", "1", "-c", "1", "-q", "100", "-t", "30", "-e").CombinedOutput()
		cancel()
		require.NoError(t, err, string(out))
		t.Logf("dnsperf -m %s:\n%s", mode, out)
		lost := regexp.MustCompile(`(?m)^\s*Queries lost:\s+(\d+)`).FindSubmatch(out)
		require.NotNil(t, lost, string(out))
		assert.Equal(t, "0", string(lost[1]), "%s: queries lost", mode)
		assert.Regexp(t, `(?m)^\s*Queries completed:\s+1200 `, string(out), mode)
	}
}
