package ddns

import (
	"strings"

	"github.com/miekg/dns"
)

// maxCNAMEChain bounds the CNAMEs followed within the hosted zones for one
// answer, so a loop in the static records ends (RFC 1034 section 3.6.2:
// such chains should be short anyway).
const maxCNAMEChain = 8

// SetZones replaces the static zones answers are completed with (nil: none).
// Safe to call while serving: each query sees the old zones or the new.
func (s *Server) SetZones(zs *Zones) { s.zones.Store(zs) }

// Zones returns the static zones in use (nil: none).
func (s *Server) Zones() *Zones { return s.zones.Load() }

// static answers a name the array does not own from the zone file: its
// records, its CNAME (followed inside the hosted domains), NODATA for an
// existing name or empty non-terminal, a wildcard's records (RFC 4592), or
// NXDOMAIN (RFC 2308 section 2.1).
func (z *zoneAnswer) static() {
	sz := z.s.Zones().Zone(z.zone)
	if sz == nil {
		z.nxdomain()
		return
	}
	if sn := sz.names[z.name]; sn != nil {
		z.fromStatic(sn)
		return
	}
	if sz.ents[z.name] {
		z.nodata()
		return
	}
	// RFC 4592 section 4.1: a wildcard at the closest encloser answers for
	// names that do not exist. Names the array owns exist too.
	for p := parentName(z.name); p != ""; p = parentName(p) {
		if !z.exists(sz, p) {
			continue
		}
		if sn := sz.names["*."+p]; sn != nil {
			z.fromStatic(sn) // synthesised: the owner is the question's name
			return
		}
		break
	}
	z.nxdomain()
}

// exists reports whether name (lowercase, fully qualified, inside the zone)
// has records, static or the array's, or names below it do.
func (z *zoneAnswer) exists(sz *Zone, name string) bool {
	apex := z.zone + "."
	if name == apex || sz.names[name] != nil || sz.ents[name] {
		return true
	}
	rel := strings.TrimSuffix(name, "."+apex)
	if strings.Contains(rel, ".") {
		return false
	}
	return serviceRole(rel) != "" || z.liveNode(rel)
}

// liveNode reports whether label names a live node with an address.
func (z *zoneAnswer) liveNode(label string) bool {
	for _, m := range z.candidates(RoleAny, familyAny) {
		if strings.EqualFold(m.Name, label) {
			return true
		}
	}
	return false
}

// staticType answers qtype at a name the array owns (the apex, a service
// or a node name) from the zone file's records there, or NODATA.
func (z *zoneAnswer) staticType() {
	if sn := z.s.Zones().Zone(z.zone).lookup(z.name); sn != nil {
		if set := sn.sets[z.qtype]; len(set) > 0 {
			z.appendSet(set)
			return
		}
	}
	z.nodata()
}

// lookup returns the records of name, or nil (also for a nil zone).
func (sz *Zone) lookup(name string) *staticName {
	if sz == nil {
		return nil
	}
	return sz.names[name]
}

// fromStatic answers from the records of one static name.
func (z *zoneAnswer) fromStatic(sn *staticName) {
	if cname := sn.sets[dns.TypeCNAME]; len(cname) > 0 && z.qtype != dns.TypeCNAME {
		// RFC 1034 section 4.3.2 step 3a: the CNAME, then the answer for
		// its target when we are authoritative for it.
		z.appendSet(cname)
		z.follow(cname[0].(*dns.CNAME).Target)
		return
	}
	if z.qtype == dns.TypeANY {
		for _, t := range sn.types {
			z.appendSet(sn.sets[t])
		}
		return
	}
	if set := sn.sets[z.qtype]; len(set) > 0 {
		z.appendSet(set)
		return
	}
	z.nodata()
}

// appendSet adds copies of set to the answer under the question's name:
// the spelling asked (names match case-insensitively) or a wildcard's
// synthesised owner (RFC 4592 section 2.1.1).
func (z *zoneAnswer) appendSet(set []dns.RR) {
	for _, rr := range set {
		c := dns.Copy(rr)
		c.Header().Name = z.owner
		z.resp.Answer = append(z.resp.Answer, c)
	}
}

// follow continues the answer at a CNAME's target when it lies in a hosted
// domain, keeping the CNAMEs already in the answer. The rcode is the last
// name's (RFC 6604 section 3): NXDOMAIN if the target does not exist.
func (z *zoneAnswer) follow(target string) {
	z.chain++
	name := strings.ToLower(target)
	if z.chain > maxCNAMEChain {
		return // the answer so far; the resolver gives up on the loop
	}
	zone, rel, ok := findZone(z.s.src.Domains(), name)
	if !ok {
		return // outside our zones: the resolver follows it
	}
	next := zoneAnswer{s: z.s, zone: zone, owner: target, name: name, qtype: z.qtype, resp: z.resp, chain: z.chain}
	next.answer(rel)
}
