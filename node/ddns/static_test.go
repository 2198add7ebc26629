package ddns

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exampleZone is what an operator delegating example.com publishes beside
// the array's records.
const exampleZone = `$TTL 300
@              TXT   "v=spf1 mx -all"
@              A     192.0.2.10
_dmarc         TXT   "v=DMARC1; p=reject"
sel._domainkey TXT   ( "v=DKIM1; k=rsa; "
                       "p=MIIBIjAN" )
www            CNAME @
web            CNAME www
ext            CNAME www.example.net.
dangling       CNAME nothere
loop1          CNAME loop2
loop2          CNAME loop1
mta-sts        A     192.0.2.20
*.wild         TXT   "wildcard"
deep.a.b       TXT   "deep"
mx             TXT   "v=spf1 a -all"
_25._tcp.mx    TLSA  3 1 1 0123456789abcdef
mailsub        MX    10 mail.example.net.
`

func staticServer(t *testing.T) *Server {
	t.Helper()
	z, err := ParseZone("example.com", strings.NewReader(exampleZone), "example.com.zone", "n1")
	require.NoError(t, err)
	s := New(DefaultConfig(), testCluster(), nil, nil)
	s.SetZones(NewZones(z))
	return s
}

func TestAnswerStatic(t *testing.T) {
	s := staticServer(t)
	const soa = "example.com. 5 IN SOA n1.example.com. hostmaster.example.com. 42 3600 600 1209600 5"
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		wantRcode int
		want      []string // answer section
		wantSOA   bool     // negative answer: SOA in authority
	}{
		{"apex TXT", "example.com.", dns.TypeTXT, dns.RcodeSuccess, []string{`example.com. 300 IN TXT "v=spf1 mx -all"`}, false},
		{"apex A (website)", "example.com.", dns.TypeA, dns.RcodeSuccess, []string{"example.com. 300 IN A 192.0.2.10"}, false},
		{"apex AAAA missing", "example.com.", dns.TypeAAAA, dns.RcodeSuccess, nil, true},
		{"apex MX stays dynamic", "example.com.", dns.TypeMX, dns.RcodeSuccess, []string{
			"example.com. 5 IN MX 10 n1.example.com.", "example.com. 5 IN MX 20 n2.example.com.", "example.com. 5 IN MX 30 n3.example.com."}, false},
		{"DMARC", "_dmarc.example.com.", dns.TypeTXT, dns.RcodeSuccess, []string{`_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"`}, false},
		{"case kept as asked", "_DMARC.Example.COM.", dns.TypeTXT, dns.RcodeSuccess, []string{`_DMARC.Example.COM. 300 IN TXT "v=DMARC1; p=reject"`}, false},
		{"multi-line DKIM key", "sel._domainkey.example.com.", dns.TypeTXT, dns.RcodeSuccess, []string{`sel._domainkey.example.com. 300 IN TXT "v=DKIM1; k=rsa; " "p=MIIBIjAN"`}, false},
		{"ANY at a static name", "_dmarc.example.com.", dns.TypeANY, dns.RcodeSuccess, []string{`_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"`}, false},
		{"NODATA at a static name", "_dmarc.example.com.", dns.TypeA, dns.RcodeSuccess, nil, true},
		{"CNAME followed to the apex", "www.example.com.", dns.TypeA, dns.RcodeSuccess, []string{
			"www.example.com. 300 IN CNAME example.com.", "example.com. 300 IN A 192.0.2.10"}, false},
		{"CNAME chain", "web.example.com.", dns.TypeA, dns.RcodeSuccess, []string{
			"web.example.com. 300 IN CNAME www.example.com.", "www.example.com. 300 IN CNAME example.com.", "example.com. 300 IN A 192.0.2.10"}, false},
		{"CNAME asked for", "www.example.com.", dns.TypeCNAME, dns.RcodeSuccess, []string{"www.example.com. 300 IN CNAME example.com."}, false},
		{"CNAME to another domain", "ext.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"ext.example.com. 300 IN CNAME www.example.net."}, false},
		{"CNAME to nothing: NXDOMAIN (RFC 6604)", "dangling.example.com.", dns.TypeA, dns.RcodeNameError, []string{"dangling.example.com. 300 IN CNAME nothere.example.com."}, true},
		{"website", "mta-sts.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"mta-sts.example.com. 300 IN A 192.0.2.20"}, false},
		{"wildcard", "x.wild.example.com.", dns.TypeTXT, dns.RcodeSuccess, []string{`x.wild.example.com. 300 IN TXT "wildcard"`}, false},
		{"wildcard over several labels", "y.x.wild.example.com.", dns.TypeTXT, dns.RcodeSuccess, []string{`y.x.wild.example.com. 300 IN TXT "wildcard"`}, false},
		{"wildcard NODATA", "x.wild.example.com.", dns.TypeMX, dns.RcodeSuccess, nil, true},
		{"wildcard's parent is an empty non-terminal", "wild.example.com.", dns.TypeTXT, dns.RcodeSuccess, nil, true},
		{"empty non-terminal (RFC 8020)", "a.b.example.com.", dns.TypeTXT, dns.RcodeSuccess, nil, true},
		{"below an empty non-terminal", "b.example.com.", dns.TypeA, dns.RcodeSuccess, nil, true},
		{"deep name", "deep.a.b.example.com.", dns.TypeTXT, dns.RcodeSuccess, []string{`deep.a.b.example.com. 300 IN TXT "deep"`}, false},
		{"missing name NXDOMAIN", "nope.example.com.", dns.TypeTXT, dns.RcodeNameError, nil, true},
		{"missing below a static name", "x.mta-sts.example.com.", dns.TypeA, dns.RcodeNameError, nil, true},
		{"service name TXT static", "mx.example.com.", dns.TypeTXT, dns.RcodeSuccess, []string{`mx.example.com. 300 IN TXT "v=spf1 a -all"`}, false},
		{"service name A dynamic", "pop.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"pop.example.com. 5 IN A 10.0.0.1", "pop.example.com. 5 IN A 10.0.0.3"}, false},
		{"TLSA below a service name", "_25._tcp.mx.example.com.", dns.TypeTLSA, dns.RcodeSuccess, []string{"_25._tcp.mx.example.com. 300 IN TLSA 3 1 1 0123456789abcdef"}, false},
		{"_tcp.mx is an empty non-terminal", "_tcp.mx.example.com.", dns.TypeTXT, dns.RcodeSuccess, nil, true},
		{"node name A dynamic", "n2.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"n2.example.com. 5 IN A 10.0.0.2"}, false},
		{"node name TXT: NODATA", "n2.example.com.", dns.TypeTXT, dns.RcodeSuccess, nil, true},
		{"dead node name: NXDOMAIN", "n5.example.com.", dns.TypeA, dns.RcodeNameError, nil, true},
		{"MX of a subdomain", "mailsub.example.com.", dns.TypeMX, dns.RcodeSuccess, []string{"mailsub.example.com. 300 IN MX 10 mail.example.net."}, false},
		{"other hosted domain has no zone", "_dmarc.other.org.", dns.TypeTXT, dns.RcodeNameError, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.Answer(query(tt.qname, tt.qtype))
			require.NotNil(t, r)
			assert.Equal(t, dns.RcodeToString[tt.wantRcode], dns.RcodeToString[r.Rcode], "rcode")
			assert.True(t, r.Authoritative, "AA")
			answer, ns, _ := sections(r)
			want := []string{}
			if tt.want != nil {
				want = rrs(t, tt.want...)
			}
			if strings.HasPrefix(tt.name, "service name A") {
				assert.ElementsMatch(t, want, answer)
			} else {
				assert.Equal(t, want, answer)
			}
			if tt.wantSOA {
				assert.Equal(t, rrs(t, soa), ns, "SOA in authority (RFC 2308)")
			}
		})
	}

	// A CNAME loop ends.
	r := s.Answer(query("loop1.example.com.", dns.TypeA))
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)
	assert.LessOrEqual(t, len(r.Answer), maxCNAMEChain+1)

	// Without zones the same names are NXDOMAIN, and zones can be swapped
	// while serving.
	s.SetZones(nil)
	assert.Equal(t, dns.RcodeNameError, s.Answer(query("_dmarc.example.com.", dns.TypeTXT)).Rcode)
}

func TestParseZoneRefusesBadRecords(t *testing.T) {
	tests := []struct {
		name string
		zone string
		want string // substrings of the error, in order
	}{
		{"does not parse", "$TTL 60\n@ TXT \"ok\"\nwww A 999.1.1.1\n", `example.com.zone: dns: bad A A: "999.1.1.1" at line: 3`},
		{"unknown type", "@ TXT \"ok\"\n\nwww FOO bar\n", "at line: 3"},
		{"outside the zone", "@ TXT \"ok\"\nwww.example.net. A 192.0.2.1\n", "line 2: owner is outside the zone"},
		{"SOA", "@ SOA ns. host. 1 2 3 4 5\n", "line 1: record is the array's: SOA"},
		{"NS at the apex", "@ TXT \"ok\"\n@ NS ns.example.net.\n", "line 2: record is the array's: NS at the apex"},
		{"delegation", "sub NS ns.example.net.\n", "line 1: record type not supported in a static zone: NS at sub.example.com."},
		{"MX at the apex", "; comment\n@ MX 10 mail.example.net.\n", "line 2: record is the array's: MX at the apex"},
		{"CNAME at the apex", "@ CNAME example.net.\n", "line 1: record is the array's: CNAME at the apex"},
		{"A at a service name", "\n\n\npop A 192.0.2.1\n", "line 4: record is the array's: A at pop.example.com."},
		{"CNAME at a service name", "mx CNAME example.net.\n", "line 1: record is the array's: CNAME at mx.example.com."},
		{"AAAA at the node's name", "N1 AAAA 2001:db8::1\n", "line 1: record is the array's: AAAA at n1.example.com. (this node's own name)"},
		{"CNAME beside data", "www TXT \"x\"\nwww CNAME example.net.\n", "line 2: record conflicts with another: CNAME at www.example.com. beside other records"},
		{"data beside CNAME", "www CNAME example.net.\nwww TXT \"x\"\n", "line 2: record conflicts with another: TXT at www.example.com. beside its CNAME"},
		{"TTLs differ", "www 60 A 192.0.2.1\nwww 70 A 192.0.2.2\n", "line 2: record conflicts with another: www.example.com. A TTL 70 differs"},
		{"DNSSEC", "@ DNSKEY 256 3 8 AwEAAb==\n", "line 1: record type not supported in a static zone: DNSKEY"},
		{"class CH", "www CH TXT \"x\"\n", "line 1: record type not supported in a static zone: class CH"},
		{"multi-line record", "@ TXT \"ok\"\nwww TXT ( \"a\"\n  \"b\" )\nwww CNAME x.example.net.\n", "line 4:"},
		{"last line without newline", "@ TXT \"ok\"\n@ MX 10 x.example.net.", "line 2:"},
		{"$INCLUDE", "$INCLUDE /etc/passwd\n", "$INCLUDE"},
		{"huge RRset", "$GENERATE 1-1001 @ TXT \"$\"\n", "line 1: limit exceeded: more than 1000 TXT records at example.com."},
		{"too many records", "$GENERATE 1-50001 h$ TXT x\n", "line 1: more than 50000 records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseZone("example.com", strings.NewReader(tt.zone), "example.com.zone", "n1")
			require.Error(t, err)
			assert.Contains(t, err.Error(), "example.com.zone")
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	// Duplicates count once.
	z, err := ParseZone("example.com", strings.NewReader("www A 192.0.2.1\nwww A 192.0.2.1\n"), "f", "n1")
	require.NoError(t, err)
	assert.Equal(t, 1, z.Records())
}

func TestLoadZones(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "example.com.zone")
	require.NoError(t, os.WriteFile(good, []byte(exampleZone), 0o644))
	zs, err := LoadZones([]ZoneFile{{Domain: "example.com", Path: good}}, "n1")
	require.NoError(t, err)
	assert.Equal(t, []string{"example.com"}, zs.Domains())

	_, err = LoadZones([]ZoneFile{{Domain: "example.com", Path: good}, {Domain: "example.com", Path: good}}, "n1")
	assert.ErrorContains(t, err, "two files")
	_, err = LoadZones([]ZoneFile{{Domain: "example.com", Path: filepath.Join(dir, "missing")}}, "n1")
	assert.ErrorContains(t, err, "missing")
}

// dig, the reference client, reads the static records over UDP and TCP.
func TestDigStatic(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (apt-get install dnsutils): skipping the interoperability check")
	}
	ts := startServer(t, testCluster(), serverOpts{})
	z, err := ParseZone("example.com", strings.NewReader(exampleZone), "example.com.zone", "n1")
	require.NoError(t, err)
	ts.SetZones(NewZones(z))
	host, port, err := net.SplitHostPort(ts.udpAddr)
	require.NoError(t, err)
	_, tcpPort, err := net.SplitHostPort(ts.tcpAddr)
	require.NoError(t, err)
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, dig, append([]string{"@" + host, "+time=5", "+tries=2"}, args...)...).CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	for _, transport := range [][]string{{"-p", port}, {"-p", tcpPort, "+tcp"}} {
		assert.Equal(t, "\"v=spf1 mx -all\"\n", run(append(transport, "example.com", "TXT", "+short")...))
		assert.Equal(t, "\"v=DMARC1; p=reject\"\n", run(append(transport, "_dmarc.example.com", "TXT", "+short")...))
		assert.Equal(t, "\"v=DKIM1; k=rsa; \" \"p=MIIBIjAN\"\n", run(append(transport, "sel._domainkey.example.com", "TXT", "+short")...))
		assert.Equal(t, "example.com.\n192.0.2.10\n", run(append(transport, "www.example.com", "A", "+short")...))
		mx := run(append(transport, "example.com", "MX", "+short")...)
		for _, n := range []string{"n1", "n2", "n3"} {
			assert.Contains(t, mx, " "+n+".example.com.\n", "the MX stay the array's")
		}
		out := run(append(transport, "nope.example.com", "TXT")...)
		assert.Contains(t, out, "status: NXDOMAIN")
		assert.Contains(t, out, "flags: qr aa")
		out = run(append(transport, "_dmarc.example.com", "A")...)
		assert.Contains(t, out, "status: NOERROR")
		assert.Contains(t, out, "ANSWER: 0")
	}
}
