package ddns

import (
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"mailarray/node/env"
)

// Answer builds the reply to req from the Source's current state, ordering
// nodes with the Orderer. It is what the UDP and TCP servers call, minus
// transport concerns (truncation to the UDP size); it never panics on any
// request that dns.Msg.Unpack accepts. It returns nil when no reply must be
// sent: req is nil or is itself a response (RFC 1035 section 4.1.1, answering
// responses invites loops).
//
// Answers by case:
//   - opcode other than QUERY: NOTIMP (RFC 1035 section 4.1.1);
//   - QDCOUNT != 1, more than one OPT record, or more records than a query
//     carries: FORMERR (RFC 9619, RFC 6891 section 6.1.1); EDNS version > 0:
//     BADVERS (RFC 6891 section 6.1.3);
//   - class other than IN/ANY, name outside every hosted domain, zone
//     transfer: REFUSED, not authoritative (we are not an open resolver);
//   - a name of the zone: the records, AA set; NODATA (NOERROR, no answer,
//     SOA in authority) for a type it does not have; NXDOMAIN with SOA in
//     authority for a name the zone does not have (RFC 2308 sections 2-3);
//   - other names and types come from the static zone (SetZones; static.go
//     has the cases: CNAMEs, wildcards, empty non-terminals);
//   - a name whose role has no live node: SERVFAIL, so mail senders retry
//     later instead of bouncing (a NODATA MX would make RFC 5321 section
//     5.1 fall back to the apex address, which does not exist).
//
// Every reply to a request carrying an OPT record carries one, errors too
// (RFC 6891 sections 6.1.1 and 7), with our UDP size and the request's DO
// bit (RFC 3225 section 3). AD is never set: nothing is authenticated
// (RFC 6840 section 5.8).
func (s *Server) Answer(req *dns.Msg) *dns.Msg {
	if req == nil || req.Response {
		return nil
	}
	resp := new(dns.Msg)
	resp.SetReply(req) // ID, opcode, RD, CD, first question
	resp.Compress = true

	opt, nOpt := edns(req)
	switch {
	case req.Opcode != dns.OpcodeQuery:
		resp.Rcode = dns.RcodeNotImplemented
	case len(req.Question) != 1 || nOpt > 1 ||
		len(req.Answer) > maxQueryAnswerRRs || len(req.Ns) > maxQueryAuthorityRRs || len(req.Extra) > maxQueryAdditionalRRs:
		resp.Rcode = dns.RcodeFormatError
		resp.Question = nil
	case opt != nil && opt.Version() != 0:
		resp.Rcode = dns.RcodeBadVers
	default:
		s.answerQuestion(resp, req.Question[0])
	}
	if opt != nil {
		ro := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		ro.SetUDPSize(uint16(s.cfg.MaxUDPBytes))
		ro.SetDo(opt.Do())
		resp.Extra = append(resp.Extra, ro)
	}
	s.stats.countRcode(resp.Rcode)
	if resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == 0 {
		s.stats.nodata.Add(1)
	}
	return resp
}

// edns returns the request's OPT record and how many it has.
func edns(req *dns.Msg) (*dns.OPT, int) {
	var opt *dns.OPT
	n := 0
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt == nil {
				opt = o
			}
			n++
		}
	}
	return opt, n
}

// answerQuestion fills resp for one question of a well-formed QUERY.
func (s *Server) answerQuestion(resp *dns.Msg, q dns.Question) {
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		resp.Rcode = dns.RcodeRefused // we serve class IN only
		return
	}
	owner := dns.Fqdn(q.Name) // the name as asked: its case is preserved in the answer
	name := strings.ToLower(owner)
	zone, rel, ok := findZone(s.src.Domains(), name)
	if !ok {
		// RFC 1035 section 4.1.1: REFUSED for policy reasons. We answer only
		// for the hosted domains and never recurse.
		resp.Rcode = dns.RcodeRefused
		return
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		// RFC 5936 section 4.2: a server may refuse transfers. The zone is
		// synthesised from membership; secondaries have nothing to copy.
		resp.Rcode = dns.RcodeRefused
		return
	}
	z := zoneAnswer{s: s, zone: zone, owner: owner, name: name, qtype: q.Qtype, resp: resp}
	resp.Authoritative = true
	z.answer(rel)
}

// answer answers for rel, the name relative to the zone: the array's
// names first (their dynamic records, and any static records of other
// types), then the static zone.
func (z *zoneAnswer) answer(rel string) {
	switch role := serviceRole(rel); {
	case rel == "":
		z.apex()
	case role != "":
		z.service(role)
	case !strings.Contains(rel, ".") && z.liveNode(rel):
		z.node(rel)
	default:
		// Deeper names (_dmarc.D, a.pop.D, _25._tcp.mx.D) and the rest
		// exist only in the static zone.
		z.static()
	}
}

// findZone returns the longest hosted domain containing name (lowercase,
// fully qualified) and name relative to it ("" for the apex).
func findZone(domains []string, name string) (zone, rel string, ok bool) {
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if d == "" || (ok && len(d) <= len(zone)) {
			continue
		}
		apex := d + "."
		switch {
		case name == apex:
			zone, rel, ok = d, "", true
		case strings.HasSuffix(name, "."+apex):
			zone, rel, ok = d, name[:len(name)-len(apex)-1], true
		}
	}
	return zone, rel, ok
}

// serviceRole maps the access names of a zone to the role serving them.
// They shadow a node of the same name.
func serviceRole(label string) string {
	switch label {
	case "smtp", "mx":
		return RoleSMTP
	case "pop":
		return RolePOP3
	case "imap":
		return RoleIMAP
	}
	return ""
}

// zoneAnswer builds one authoritative answer.
type zoneAnswer struct {
	s     *Server
	zone  string // hosted domain, lowercase, no trailing dot
	owner string // question name as asked, fully qualified
	name  string // question name, lowercase, fully qualified
	qtype uint16
	resp  *dns.Msg
	chain int // CNAMEs followed so far
}

func (z *zoneAnswer) hdr(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl(time.Duration(z.s.ttl.Load()))}
}

// host is the name of node in the zone.
func (z *zoneAnswer) host(m env.Member) string {
	return strings.ToLower(m.Name) + "." + z.zone + "."
}

func (z *zoneAnswer) soa() *dns.SOA {
	mname := z.zone + "." // no dns node: the apex stands in
	if ns := z.candidates(RoleDNS, familyAny); len(ns) > 0 {
		mname = z.host(ns[0])
	}
	cfg := z.s.cfg
	return &dns.SOA{
		Hdr:     z.hdr(z.zone+".", dns.TypeSOA),
		Ns:      mname,
		Mbox:    "hostmaster." + z.zone + ".",
		Serial:  z.s.src.Serial(),
		Refresh: ttl(cfg.Refresh),
		Retry:   ttl(cfg.Retry),
		Expire:  ttl(cfg.Expire),
		Minttl:  ttl(cfg.NegativeTTL),
	}
}

// negative puts the SOA in the authority section, its TTL the smaller of its
// own and its MINIMUM field (RFC 2308 section 3).
func (z *zoneAnswer) negative(rcode int) {
	soa := z.soa()
	soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	z.resp.Rcode = rcode
	z.resp.Ns = append(z.resp.Ns, soa)
}

func (z *zoneAnswer) nodata()   { z.negative(dns.RcodeSuccess) }
func (z *zoneAnswer) nxdomain() { z.negative(dns.RcodeNameError) }

// servfail says the cluster has no live node for the name right now: not
// authoritative data, so AA is cleared. RFC 2308 section 7.1 keeps resolvers
// from caching it long.
func (z *zoneAnswer) servfail() {
	z.resp.Rcode = dns.RcodeServerFailure
	z.resp.Authoritative = false
}

// apex answers SOA, NS and MX at the domain itself.
func (z *zoneAnswer) apex() {
	switch z.qtype {
	case dns.TypeSOA, dns.TypeANY: // ANY: one RRset is enough (RFC 8482 section 4.2)
		soa := z.soa()
		soa.Hdr.Name = z.owner
		z.resp.Answer = append(z.resp.Answer, soa)
	case dns.TypeNS:
		nodes := z.candidates(RoleDNS, familyAny)
		if len(nodes) == 0 {
			z.servfail()
			return
		}
		for _, m := range nodes {
			z.resp.Answer = append(z.resp.Answer, &dns.NS{Hdr: z.hdr(z.owner, dns.TypeNS), Ns: z.host(m)})
			z.resp.Extra = append(z.resp.Extra, z.address(z.host(m), m))
		}
	case dns.TypeMX:
		nodes := z.candidates(RoleSMTP, familyAny)
		if len(nodes) == 0 {
			z.servfail()
			return
		}
		nodes = z.order(RoleSMTP, nodes, false)
		if len(nodes) == 0 {
			z.servfail()
			return
		}
		// Preferences 10, 20, ... in the Orderer's order: the best node
		// gets the lowest, which senders try first (RFC 5321 section 5.1).
		for i, m := range nodes {
			z.resp.Answer = append(z.resp.Answer, &dns.MX{Hdr: z.hdr(z.owner, dns.TypeMX), Preference: uint16(10 * (i + 1)), Mx: z.host(m)})
			z.resp.Extra = append(z.resp.Extra, z.address(z.host(m), m))
		}
	default:
		z.staticType() // TXT (SPF, verification), the website's A, ...
	}
}

// service answers A/AAAA for pop., imap., smtp. and mx. with the role's
// nodes in the Orderer's order.
func (z *zoneAnswer) service(role string) {
	fam, ok := qtypeFamily(z.qtype)
	if !ok {
		z.staticType()
		return
	}
	nodes := z.candidates(role, fam)
	if len(nodes) == 0 {
		if fam != familyAny && len(z.candidates(role, familyAny)) > 0 {
			z.nodata() // nodes exist, but not with this address family
			return
		}
		z.servfail()
		return
	}
	// Only the wanted family is ordered: resolvers ask A and AAAA together,
	// and a rotation step spent on an empty AAAA would skew round-robin.
	nodes = z.order(role, nodes, true)
	if len(nodes) == 0 {
		z.servfail()
		return
	}
	for _, m := range nodes {
		z.resp.Answer = append(z.resp.Answer, z.address(z.owner, m))
	}
}

// uniqueAddrs keeps the first node of each address, in order. Nodes may
// share one (several on one host, all on 127.0.0.1 in tests), and an RRset
// holds no duplicate records (RFC 2181 section 5).
func uniqueAddrs(nodes []env.Member) []env.Member {
	out := nodes[:0:0]
	for _, m := range nodes {
		if !slices.ContainsFunc(out, func(o env.Member) bool { return o.Addr.Equal(m.Addr) }) {
			out = append(out, m)
		}
	}
	return out
}

// node answers for <node>.<domain>: its address whatever its roles.
func (z *zoneAnswer) node(label string) {
	for _, m := range z.candidates(RoleAny, familyAny) {
		if !strings.EqualFold(m.Name, label) {
			continue
		}
		fam, ok := qtypeFamily(z.qtype)
		switch {
		case !ok:
			z.staticType()
		case !fam.has(m.Addr):
			z.nodata()
		default:
			z.resp.Answer = append(z.resp.Answer, z.address(z.owner, m))
		}
		return
	}
	z.static() // the node left since answer looked
}

// order asks the Orderer and applies MaxAnswers, after dropping nodes
// whose address an earlier one has when byAddr (address RRsets).
func (z *zoneAnswer) order(role string, nodes []env.Member, byAddr bool) []env.Member {
	q := Query{Domain: z.zone, Name: z.name, Type: z.qtype, Role: role}
	nodes = z.s.ord.Order(q, nodes)
	z.s.stats.ordered.Add(1)
	if byAddr {
		nodes = uniqueAddrs(nodes)
	}
	if limit := z.s.cfg.MaxAnswers; limit > 0 && len(nodes) > limit {
		nodes = nodes[:limit]
	}
	return nodes
}

// candidates are the role's live nodes that can appear in an answer: a
// valid label for a name and an address of family fam.
func (z *zoneAnswer) candidates(role string, fam family) []env.Member {
	nodes := z.s.src.Nodes(role)
	out := nodes[:0:0]
	for _, m := range nodes {
		if m.Status == env.StatusAlive && validLabel(m.Name) && fam.has(m.Addr) {
			out = append(out, m)
		}
	}
	return out
}

// address is the A or AAAA record of node m under name.
func (z *zoneAnswer) address(name string, m env.Member) dns.RR {
	if ip4 := m.Addr.To4(); ip4 != nil {
		return &dns.A{Hdr: z.hdr(name, dns.TypeA), A: ip4}
	}
	return &dns.AAAA{Hdr: z.hdr(name, dns.TypeAAAA), AAAA: m.Addr.To16()}
}

// family selects nodes by address family.
type family int

const (
	familyAny family = iota // any usable address
	familyV4
	familyV6
)

// qtypeFamily maps an address query type to its family; ok is false for a
// type that no service or node name has.
func qtypeFamily(qtype uint16) (f family, ok bool) {
	switch qtype {
	case dns.TypeA:
		return familyV4, true
	case dns.TypeAAAA:
		return familyV6, true
	case dns.TypeANY: // all address records (RFC 8482 allows a subset; this is small)
		return familyAny, true
	}
	return familyAny, false
}

func (f family) has(ip net.IP) bool {
	is4 := ip.To4() != nil
	is6 := !is4 && len(ip) == net.IPv6len
	switch f {
	case familyV4:
		return is4
	case familyV6:
		return is6
	}
	return is4 || is6
}

// validLabel reports whether a node name can be a DNS label under the zone:
// 1-63 letters, digits, '-' or '_' (RFC 1035 section 2.3.1, plus the
// underscore many hostnames carry). Other names are left out of answers.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
