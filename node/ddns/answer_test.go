package ddns

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

// query is a plain QUERY for name and qtype.
func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 4242
	return m
}

// rrs normalises records written in zone-file syntax to RR.String() form.
func rrs(t *testing.T, lines ...string) []string {
	t.Helper()
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		require.NoError(t, err, l)
		out = append(out, rr.String())
	}
	return out
}

// sections renders a reply's records, OPT left out of additional.
func sections(m *dns.Msg) (answer, ns, extra []string) {
	str := func(rs []dns.RR, skipOPT bool) []string {
		out := []string{}
		for _, r := range rs {
			if _, ok := r.(*dns.OPT); ok && skipOPT {
				continue
			}
			out = append(out, r.String())
		}
		return out
	}
	return str(m.Answer, false), str(m.Ns, false), str(m.Extra, true)
}

const (
	soaExample = "example.com. 5 IN SOA n1.example.com. hostmaster.example.com. 42 3600 600 1209600 5"
	soaOther   = "other.org. 5 IN SOA n1.other.org. hostmaster.other.org. 42 3600 600 1209600 5"
	soaSub     = "sub.example.com. 5 IN SOA n1.sub.example.com. hostmaster.sub.example.com. 42 3600 600 1209600 5"
)

func TestAnswer(t *testing.T) {
	noSMTP := testCluster()
	noSMTP.members = []env.Member{member("n1", "10.0.0.1", "dns,pop3")}
	noDNS := testCluster()
	noDNS.members = []env.Member{member("n2", "10.0.0.2", "smtp")}
	ttl30 := DefaultConfig()
	ttl30.TTL = 30 * time.Second
	max2 := DefaultConfig()
	max2.MaxAnswers = 2

	type want struct {
		rcode  int
		aa     bool
		answer []string
		ns     []string
		extra  []string
	}
	tests := []struct {
		name string
		cfg  *Config     // nil: DefaultConfig
		src  *fakeSource // nil: testCluster
		req  *dns.Msg
		want want
	}{
		{
			name: "MX lists smtp nodes by preference with addresses",
			req:  query("example.com.", dns.TypeMX),
			want: want{rcode: dns.RcodeSuccess, aa: true,
				answer: rrs(t, "example.com. 5 IN MX 10 n1.example.com.", "example.com. 5 IN MX 20 n2.example.com.", "example.com. 5 IN MX 30 n3.example.com."),
				ns:     []string{},
				extra:  rrs(t, "n1.example.com. 5 IN A 10.0.0.1", "n2.example.com. 5 IN A 10.0.0.2", "n3.example.com. 5 IN A 10.0.0.3")},
		},
		{
			name: "MX of a second hosted domain",
			req:  query("other.org.", dns.TypeMX),
			want: want{rcode: dns.RcodeSuccess, aa: true,
				answer: rrs(t, "other.org. 5 IN MX 10 n1.other.org.", "other.org. 5 IN MX 20 n2.other.org.", "other.org. 5 IN MX 30 n3.other.org."),
				ns:     []string{},
				extra:  rrs(t, "n1.other.org. 5 IN A 10.0.0.1", "n2.other.org. 5 IN A 10.0.0.2", "n3.other.org. 5 IN A 10.0.0.3")},
		},
		{
			name: "MX capped by MaxAnswers",
			cfg:  &max2,
			req:  query("example.com.", dns.TypeMX),
			want: want{rcode: dns.RcodeSuccess, aa: true,
				answer: rrs(t, "example.com. 5 IN MX 10 n1.example.com.", "example.com. 5 IN MX 20 n2.example.com."),
				ns:     []string{},
				extra:  rrs(t, "n1.example.com. 5 IN A 10.0.0.1", "n2.example.com. 5 IN A 10.0.0.2")},
		},
		{
			name: "MX without live smtp node is SERVFAIL so senders retry",
			src:  noSMTP,
			req:  query("example.com.", dns.TypeMX),
			want: want{rcode: dns.RcodeServerFailure, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "NS lists dns nodes with glue",
			req:  query("example.com.", dns.TypeNS),
			want: want{rcode: dns.RcodeSuccess, aa: true,
				answer: rrs(t, "example.com. 5 IN NS n1.example.com.", "example.com. 5 IN NS n3.example.com."),
				ns:     []string{},
				extra:  rrs(t, "n1.example.com. 5 IN A 10.0.0.1", "n3.example.com. 5 IN A 10.0.0.3")},
		},
		{
			name: "SOA names the first dns node",
			req:  query("example.com.", dns.TypeSOA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: rrs(t, soaExample), ns: []string{}, extra: []string{}},
		},
		{
			name: "SOA without dns node names the apex",
			src:  noDNS,
			req:  query("example.com.", dns.TypeSOA),
			want: want{rcode: dns.RcodeSuccess, aa: true,
				answer: rrs(t, "example.com. 5 IN SOA example.com. hostmaster.example.com. 42 3600 600 1209600 5"), ns: []string{}, extra: []string{}},
		},
		{
			name: "ANY at the apex is the SOA alone (RFC 8482)",
			req:  query("example.com.", dns.TypeANY),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: rrs(t, soaExample), ns: []string{}, extra: []string{}},
		},
		{
			name: "A of a node name",
			req:  query("n2.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: rrs(t, "n2.example.com. 5 IN A 10.0.0.2"), ns: []string{}, extra: []string{}},
		},
		{
			name: "A of a node with no DNS-visible role",
			req:  query("n4.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: rrs(t, "n4.example.com. 5 IN A 10.0.0.4"), ns: []string{}, extra: []string{}},
		},
		{
			name: "AAAA of an IPv6 node",
			req:  query("v6.example.com.", dns.TypeAAAA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: rrs(t, "v6.example.com. 5 IN AAAA 2001:db8::6"), ns: []string{}, extra: []string{}},
		},
		{
			name: "A of a failed node is NXDOMAIN",
			req:  query("n5.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeNameError, aa: true, answer: []string{}, ns: rrs(t, soaExample), extra: []string{}},
		},
		{
			name: "A pop lists pop3 nodes",
			req:  query("pop.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeSuccess, aa: true,
				answer: rrs(t, "pop.example.com. 5 IN A 10.0.0.1", "pop.example.com. 5 IN A 10.0.0.3"), ns: []string{}, extra: []string{}},
		},
		{
			name: "A imap lists the IPv4 imap nodes",
			req:  query("imap.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: rrs(t, "imap.example.com. 5 IN A 10.0.0.2"), ns: []string{}, extra: []string{}},
		},
		{
			name: "AAAA imap lists the IPv6 imap nodes",
			req:  query("imap.example.com.", dns.TypeAAAA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: rrs(t, "imap.example.com. 5 IN AAAA 2001:db8::6"), ns: []string{}, extra: []string{}},
		},
		{
			name: "A smtp lists smtp nodes",
			req:  query("smtp.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeSuccess, aa: true,
				answer: rrs(t, "smtp.example.com. 5 IN A 10.0.0.1", "smtp.example.com. 5 IN A 10.0.0.2", "smtp.example.com. 5 IN A 10.0.0.3"), ns: []string{}, extra: []string{}},
		},
		{
			name: "A mx capped by MaxAnswers",
			cfg:  &max2,
			req:  query("mx.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeSuccess, aa: true,
				answer: rrs(t, "mx.example.com. 5 IN A 10.0.0.1", "mx.example.com. 5 IN A 10.0.0.2"), ns: []string{}, extra: []string{}},
		},
		{
			name: "A pop without live pop3 node is SERVFAIL",
			src:  noDNS,
			req:  query("pop.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeServerFailure, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "AAAA pop with IPv4-only nodes is NODATA",
			req:  query("pop.example.com.", dns.TypeAAAA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: []string{}, ns: rrs(t, soaExample), extra: []string{}},
		},
		{
			name: "AAAA of an IPv4 node is NODATA",
			req:  query("n1.example.com.", dns.TypeAAAA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: []string{}, ns: rrs(t, soaExample), extra: []string{}},
		},
		{
			name: "MX of a node name is NODATA",
			req:  query("n1.example.com.", dns.TypeMX),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: []string{}, ns: rrs(t, soaExample), extra: []string{}},
		},
		{
			name: "TXT at the apex is NODATA",
			req:  query("example.com.", dns.TypeTXT),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: []string{}, ns: rrs(t, soaExample), extra: []string{}},
		},
		{
			name: "A at the apex is NODATA",
			req:  query("example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: []string{}, ns: rrs(t, soaExample), extra: []string{}},
		},
		{
			name: "unknown name is NXDOMAIN with SOA",
			req:  query("nope.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeNameError, aa: true, answer: []string{}, ns: rrs(t, soaExample), extra: []string{}},
		},
		{
			name: "name below a service name is NXDOMAIN",
			req:  query("a.pop.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeNameError, aa: true, answer: []string{}, ns: rrs(t, soaExample), extra: []string{}},
		},
		{
			name: "longest hosted domain wins",
			req:  query("x.sub.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeNameError, aa: true, answer: []string{}, ns: rrs(t, soaSub), extra: []string{}},
		},
		{
			name: "node name in a nested hosted domain",
			req:  query("n3.sub.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: rrs(t, "n3.sub.example.com. 5 IN A 10.0.0.3"), ns: []string{}, extra: []string{}},
		},
		{
			name: "negative answer of the second domain has its SOA",
			req:  query("nope.other.org.", dns.TypeA),
			want: want{rcode: dns.RcodeNameError, aa: true, answer: []string{}, ns: rrs(t, soaOther), extra: []string{}},
		},
		{
			name: "foreign zone is REFUSED",
			req:  query("example.net.", dns.TypeMX),
			want: want{rcode: dns.RcodeRefused, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "suffix that is not a label boundary is REFUSED",
			req:  query("notexample.com.", dns.TypeMX),
			want: want{rcode: dns.RcodeRefused, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "parent of a hosted domain is REFUSED",
			req:  query("com.", dns.TypeNS),
			want: want{rcode: dns.RcodeRefused, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "root is REFUSED",
			req:  query(".", dns.TypeNS),
			want: want{rcode: dns.RcodeRefused, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "zone transfer is REFUSED",
			req:  query("example.com.", dns.TypeAXFR),
			want: want{rcode: dns.RcodeRefused, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "CHAOS class is REFUSED",
			req: func() *dns.Msg {
				m := query("version.bind.", dns.TypeTXT)
				m.Question[0].Qclass = dns.ClassCHAOS
				return m
			}(),
			want: want{rcode: dns.RcodeRefused, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "mixed case matches and the owner keeps it",
			req:  query("ExAmPle.CoM.", dns.TypeMX),
			want: want{rcode: dns.RcodeSuccess, aa: true,
				answer: rrs(t, "ExAmPle.CoM. 5 IN MX 10 n1.example.com.", "ExAmPle.CoM. 5 IN MX 20 n2.example.com.", "ExAmPle.CoM. 5 IN MX 30 n3.example.com."),
				ns:     []string{},
				extra:  rrs(t, "n1.example.com. 5 IN A 10.0.0.1", "n2.example.com. 5 IN A 10.0.0.2", "n3.example.com. 5 IN A 10.0.0.3")},
		},
		{
			name: "mixed case node name",
			req:  query("N2.Example.COM.", dns.TypeA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: rrs(t, "N2.Example.COM. 5 IN A 10.0.0.2"), ns: []string{}, extra: []string{}},
		},
		{
			name: "mixed case service name",
			req:  query("POP.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeSuccess, aa: true,
				answer: rrs(t, "POP.example.com. 5 IN A 10.0.0.1", "POP.example.com. 5 IN A 10.0.0.3"), ns: []string{}, extra: []string{}},
		},
		{
			name: "TTL from the config",
			cfg:  &ttl30,
			req:  query("n1.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeSuccess, aa: true, answer: rrs(t, "n1.example.com. 30 IN A 10.0.0.1"), ns: []string{}, extra: []string{}},
		},
		{
			name: "negative TTL is min(SOA TTL, MINIMUM)",
			cfg:  &ttl30,
			req:  query("nope.example.com.", dns.TypeA),
			want: want{rcode: dns.RcodeNameError, aa: true, answer: []string{},
				ns: rrs(t, "example.com. 5 IN SOA n1.example.com. hostmaster.example.com. 42 3600 600 1209600 5"), extra: []string{}},
		},
		{
			name: "opcode NOTIFY is NOTIMP",
			req:  func() *dns.Msg { m := query("example.com.", dns.TypeSOA); m.Opcode = dns.OpcodeNotify; return m }(),
			want: want{rcode: dns.RcodeNotImplemented, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "opcode UPDATE is NOTIMP",
			req:  new(dns.Msg).SetUpdate("example.com."),
			want: want{rcode: dns.RcodeNotImplemented, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "QDCOUNT 0 is FORMERR",
			req:  &dns.Msg{MsgHdr: dns.MsgHdr{Id: 7}},
			want: want{rcode: dns.RcodeFormatError, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "QDCOUNT 2 is FORMERR",
			req: func() *dns.Msg {
				m := query("example.com.", dns.TypeMX)
				m.Question = append(m.Question, dns.Question{Name: "example.com.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
				return m
			}(),
			want: want{rcode: dns.RcodeFormatError, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "two OPT records is FORMERR",
			req:  query("example.com.", dns.TypeMX).SetEdns0(1232, false).SetEdns0(1232, false),
			want: want{rcode: dns.RcodeFormatError, answer: []string{}, ns: []string{}, extra: []string{}},
		},
		{
			name: "EDNS version 1 is BADVERS",
			req: func() *dns.Msg {
				m := query("example.com.", dns.TypeMX).SetEdns0(1232, false)
				m.IsEdns0().SetVersion(1)
				return m
			}(),
			want: want{rcode: dns.RcodeBadVers, answer: []string{}, ns: []string{}, extra: []string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.cfg != nil {
				cfg = *tt.cfg
			}
			src := tt.src
			if src == nil {
				src = testCluster()
			}
			s := New(cfg, src, nil, nil)
			got := s.Answer(tt.req)
			require.NotNil(t, got)
			assert.True(t, got.Response, "QR")
			assert.Equal(t, tt.req.Id, got.Id, "ID")
			assert.Equal(t, dns.RcodeToString[tt.want.rcode], dns.RcodeToString[got.Rcode], "rcode")
			assert.Equal(t, tt.want.aa, got.Authoritative, "AA")
			answer, ns, extra := sections(got)
			assert.Equal(t, tt.want.answer, answer, "answer")
			assert.Equal(t, tt.want.ns, ns, "authority")
			assert.Equal(t, tt.want.extra, extra, "additional")
			_, err := got.Pack()
			require.NoError(t, err, "reply must pack")
		})
	}
}

func TestAnswerQuestionEcho(t *testing.T) {
	s := New(DefaultConfig(), testCluster(), nil, nil)
	req := query("Pop.Example.com.", dns.TypeA)
	req.RecursionDesired = true
	req.CheckingDisabled = true
	got := s.Answer(req)
	assert.Equal(t, req.Question, got.Question, "question echoed as asked")
	assert.True(t, got.RecursionDesired, "RD copied (RFC 1035 section 4.1.1)")
	assert.True(t, got.CheckingDisabled, "CD copied")
	assert.False(t, got.RecursionAvailable, "no recursion offered")

	formerr := s.Answer(&dns.Msg{MsgHdr: dns.MsgHdr{Id: 9}})
	assert.Empty(t, formerr.Question)
}

func TestAnswerDropsResponses(t *testing.T) {
	s := New(DefaultConfig(), testCluster(), nil, nil)
	req := query("example.com.", dns.TypeMX)
	req.Response = true
	assert.Nil(t, s.Answer(req), "a response must not be answered")
	assert.Nil(t, s.Answer(nil))
}

func TestAnswerEDNS(t *testing.T) {
	s := New(DefaultConfig(), testCluster(), nil, nil)
	tests := []struct {
		name   string
		req    *dns.Msg
		wantDO bool
		rcode  int
	}{
		{"plain EDNS", query("example.com.", dns.TypeMX).SetEdns0(4096, false), false, dns.RcodeSuccess},
		{"DO bit copied", query("example.com.", dns.TypeMX).SetEdns0(4096, true), true, dns.RcodeSuccess},
		{"REFUSED keeps OPT", query("example.net.", dns.TypeMX).SetEdns0(512, false), false, dns.RcodeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Answer(tt.req)
			opt := got.IsEdns0()
			require.NotNil(t, opt, "a request with OPT gets OPT (RFC 6891 section 6.1.1)")
			assert.Equal(t, uint16(DefaultConfig().MaxUDPBytes), opt.UDPSize())
			assert.Equal(t, tt.wantDO, opt.Do())
			assert.Equal(t, uint8(0), opt.Version())
			assert.Equal(t, tt.rcode, got.Rcode)
		})
	}
	t.Run("no OPT without EDNS", func(t *testing.T) {
		assert.Nil(t, s.Answer(query("example.com.", dns.TypeMX)).IsEdns0())
	})
	t.Run("BADVERS packs with extended rcode", func(t *testing.T) {
		req := query("example.com.", dns.TypeMX).SetEdns0(1232, false)
		req.IsEdns0().SetVersion(1)
		b, err := s.Answer(req).Pack()
		require.NoError(t, err)
		var got dns.Msg
		require.NoError(t, got.Unpack(b))
		assert.Equal(t, dns.RcodeBadVers, got.Rcode)
	})
}

// firstMX is the target of the lowest-preference MX of a reply.
func firstMX(t *testing.T, m *dns.Msg) string {
	t.Helper()
	require.Equal(t, dns.RcodeSuccess, m.Rcode)
	require.NotEmpty(t, m.Answer)
	best := m.Answer[0].(*dns.MX)
	for _, rr := range m.Answer {
		if mx := rr.(*dns.MX); mx.Preference < best.Preference {
			best = mx
		}
	}
	return best.Mx
}

func TestAnswerRoundRobinRotatesMX(t *testing.T) {
	s := New(DefaultConfig(), testCluster(), nil, nil)
	var got []string
	for range 6 {
		got = append(got, firstMX(t, s.Answer(query("example.com.", dns.TypeMX))))
		// Other roles and AAAA lookups with no candidates do not disturb
		// the MX rotation.
		s.Answer(query("pop.example.com.", dns.TypeA))
		s.Answer(query("mx.example.com.", dns.TypeAAAA))
	}
	want := []string{"n1.example.com.", "n2.example.com.", "n3.example.com.", "n1.example.com.", "n2.example.com.", "n3.example.com."}
	assert.Equal(t, want, got)

	m := s.Answer(query("example.com.", dns.TypeMX))
	var prefs []uint16
	var targets, extra []string
	for _, rr := range m.Answer {
		prefs = append(prefs, rr.(*dns.MX).Preference)
		targets = append(targets, rr.(*dns.MX).Mx)
	}
	for _, rr := range m.Extra {
		extra = append(extra, rr.Header().Name)
	}
	assert.Equal(t, []uint16{10, 20, 30}, prefs)
	assert.Equal(t, targets, extra, "additional addresses follow the MX order")
}

// recordingOrderer reverses the nodes and records the queries it saw.
type recordingOrderer struct{ queries []Query }

func (o *recordingOrderer) Order(q Query, nodes []env.Member) []env.Member {
	o.queries = append(o.queries, q)
	out := make([]env.Member, 0, len(nodes))
	for i := len(nodes) - 1; i >= 0; i-- {
		out = append(out, nodes[i])
	}
	return out
}

func TestAnswerUsesOrderer(t *testing.T) {
	ord := &recordingOrderer{}
	s := New(DefaultConfig(), testCluster(), ord, nil)
	assert.Equal(t, "n3.example.com.", firstMX(t, s.Answer(query("Example.com.", dns.TypeMX))))
	pop := s.Answer(query("pop.example.com.", dns.TypeA))
	require.Len(t, pop.Answer, 2)
	assert.Equal(t, "10.0.0.3", pop.Answer[0].(*dns.A).A.String())
	// Node names, NS and negative answers are not ordered.
	s.Answer(query("n1.example.com.", dns.TypeA))
	s.Answer(query("example.com.", dns.TypeNS))
	s.Answer(query("pop.example.com.", dns.TypeAAAA))
	assert.Equal(t, []Query{
		{Domain: "example.com", Name: "example.com.", Type: dns.TypeMX, Role: RoleSMTP},
		{Domain: "example.com", Name: "pop.example.com.", Type: dns.TypeA, Role: RolePOP3},
	}, ord.queries)
	assert.Equal(t, uint64(2), s.Stats()["strategy.*ddns.recordingOrderer"])
}

// emptyOrderer chooses no node.
type emptyOrderer struct{}

func (emptyOrderer) Order(Query, []env.Member) []env.Member { return nil }

func TestAnswerOrdererChoosingNothingIsServfail(t *testing.T) {
	s := New(DefaultConfig(), testCluster(), emptyOrderer{}, nil)
	assert.Equal(t, dns.RcodeServerFailure, s.Answer(query("example.com.", dns.TypeMX)).Rcode)
	assert.Equal(t, dns.RcodeServerFailure, s.Answer(query("pop.example.com.", dns.TypeA)).Rcode)
}

func TestAnswerSkipsUnusableMembers(t *testing.T) {
	src := &fakeSource{domains: []string{"example.com"}, members: []env.Member{
		member("n1", "10.0.0.1", "smtp"),
		{Name: "noaddr", Tags: map[string]string{env.TagRoles: "smtp"}, Status: env.StatusAlive},
		member("bad.name", "10.0.0.3", "smtp"),
		member("left", "10.0.0.4", "smtp"),
	}}
	src.members[3].Status = env.StatusLeft // a Source that forgets to filter
	s := New(DefaultConfig(), src, nil, nil)
	got := s.Answer(query("example.com.", dns.TypeMX))
	answer, _, _ := sections(got)
	assert.Equal(t, rrs(t, "example.com. 5 IN MX 10 n1.example.com."), answer)
	assert.Equal(t, dns.RcodeNameError, s.Answer(query("noaddr.example.com.", dns.TypeA)).Rcode)
	assert.Equal(t, dns.RcodeNameError, s.Answer(query("left.example.com.", dns.TypeA)).Rcode)
}

func TestAnswerFollowsSource(t *testing.T) {
	src := testCluster()
	s := New(DefaultConfig(), src, nil, nil)
	assert.Equal(t, dns.RcodeSuccess, s.Answer(query("n2.example.com.", dns.TypeA)).Rcode)

	src.mu.Lock()
	src.members[2].Status = env.StatusFailed // n2
	src.serial = 43
	src.mu.Unlock()
	got := s.Answer(query("n2.example.com.", dns.TypeA))
	assert.Equal(t, dns.RcodeNameError, got.Rcode, "a failed node leaves the zone at once")
	require.Len(t, got.Ns, 1)
	assert.Equal(t, uint32(43), got.Ns[0].(*dns.SOA).Serial)
}

func TestStatsCountAnswers(t *testing.T) {
	s := New(DefaultConfig(), testCluster(), nil, nil)
	for _, q := range []*dns.Msg{
		query("example.com.", dns.TypeMX),     // NOERROR, ordered
		query("pop.example.com.", dns.TypeA),  // NOERROR, ordered
		query("example.com.", dns.TypeTXT),    // NODATA
		query("nope.example.com.", dns.TypeA), // NXDOMAIN
		query("example.net.", dns.TypeA),      // REFUSED
		{MsgHdr: dns.MsgHdr{Opcode: dns.OpcodeNotify}, Question: []dns.Question{{Name: "example.com.", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}},
	} {
		s.Answer(q)
	}
	got := s.Stats()
	assert.Equal(t, uint64(3), got["rcode.NOERROR"])
	assert.Equal(t, uint64(1), got["rcode.NXDOMAIN"])
	assert.Equal(t, uint64(1), got["rcode.REFUSED"])
	assert.Equal(t, uint64(1), got["rcode.NOTIMP"])
	assert.Equal(t, uint64(0), got["rcode.FORMERR"])
	assert.Equal(t, uint64(2), got["strategy.roundrobin"])
	assert.Equal(t, uint64(1), got[StatNoData])
}

func TestFit(t *testing.T) {
	s := New(DefaultConfig(), bigCluster(40), nil, nil)
	tests := []struct {
		name       string
		size       int
		wantTC     bool
		wantAnswer int // -1: fewer than 40
	}{
		{"512 bytes cut the answer: TC", 512, true, -1},
		{"1232 bytes hold the answer, not the addresses: no TC (RFC 2181 section 9)", 1232, false, 40},
		{"64 KiB hold everything", maxMsgBytes, false, 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := s.Answer(query("example.com.", dns.TypeMX))
			assert.Equal(t, tt.wantTC, fit(m, tt.size))
			assert.Equal(t, tt.wantTC, m.Truncated)
			if tt.wantAnswer < 0 {
				assert.Less(t, len(m.Answer), 40)
			} else {
				assert.Len(t, m.Answer, tt.wantAnswer)
			}
			b, err := m.Pack()
			require.NoError(t, err)
			assert.LessOrEqual(t, len(b), tt.size)
		})
	}
}
