package ddns

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Limits on a zone file, so a mistaken path (a log, a disk image) cannot
// exhaust memory.
const (
	// MaxZoneFileBytes bounds one zone file.
	MaxZoneFileBytes = 4 << 20
	// MaxZoneRecords bounds the records of one zone file.
	MaxZoneRecords = 50000
	// MaxRRsetRecords bounds the records of one name and type: more would
	// not fit a 64 KiB reply, and duplicates are looked for in the RRset.
	MaxRRsetRecords = 1000
	// defaultStaticTTL is the TTL of a record without one when the file
	// has no $TTL (RFC 2308 section 4 made $TTL the way to set it).
	defaultStaticTTL = 3600
)

// Zone is the static part of one hosted domain: records an operator
// publishes beside the array's dynamic ones (TXT for SPF, DMARC, DKIM and
// MTA-STS, the website's A or CNAME, and so on), loaded from an RFC 1035
// master file by ParseZone. It is immutable once built, so the server
// reads it without locks.
type Zone struct {
	domain  string                 // lowercase, no trailing dot
	names   map[string]*staticName // lowercase fully qualified owner: records
	ents    map[string]bool        // empty non-terminals (RFC 8020): names with records only below them
	records int
	file    string         // the source, for errors
	lines   map[string]int // owner name: line of its first record, for errors
}

// staticName is the records of one owner name, by type.
type staticName struct {
	sets  map[uint16][]dns.RR
	types []uint16 // the keys of sets, sorted: ANY answers in a stable order
}

// Domain is the hosted domain the zone belongs to.
func (z *Zone) Domain() string { return z.domain }

// Records is how many records the zone holds.
func (z *Zone) Records() int { return z.records }

// ParseZone reads a master file (RFC 1035 section 5) for the hosted domain
// domain: $ORIGIN starts at the domain, $INCLUDE is refused. file names the
// source in errors. node is this node's name, whose address records are
// the array's.
//
// The zone is refused, the error naming the file and line, if a record does
// not parse, lies outside the domain, or would contradict the array's own
// answers: SOA and NS (the array's name servers; subdomains cannot be
// delegated), MX or CNAME at the apex, A, AAAA or CNAME at pop., imap.,
// smtp., mx. or the node's own name, DNSSEC records (answers are built per
// query and unsigned), DNAME, a CNAME beside other data (RFC 2181 section
// 10.1), or an RRset whose TTLs differ (RFC 2181 section 5.2). Duplicate
// records count once (RFC 2181 section 5).
//
// Names of other nodes cannot be checked here (membership changes): a
// node's address records win over static ones at its name. Every node
// loads the same files, so each checks its own name.
func ParseZone(domain string, r io.Reader, file, node string) (*Zone, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	z := &Zone{domain: domain, names: make(map[string]*staticName), ents: make(map[string]bool), file: file, lines: make(map[string]int)}
	lr := &lineReader{r: bufio.NewReader(io.LimitReader(r, MaxZoneFileBytes+1))}
	zp := dns.NewZoneParser(lr, domain+".", file)
	zp.SetDefaultTTL(defaultStaticTTL)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if lr.n > MaxZoneFileBytes {
			return nil, fmt.Errorf("ddns: zone %s: larger than %d bytes", file, MaxZoneFileBytes)
		}
		if err := z.add(rr, strings.ToLower(node)); err != nil {
			return nil, fmt.Errorf("ddns: zone %s line %d: %w", file, lr.line(), err)
		}
		if _, ok := z.lines[rr.Header().Name]; !ok {
			z.lines[rr.Header().Name] = lr.line()
		}
		if z.records > MaxZoneRecords {
			return nil, fmt.Errorf("ddns: zone %s line %d: more than %d records", file, lr.line(), MaxZoneRecords)
		}
	}
	if err := zp.Err(); err != nil {
		// miekg/dns's error names the file, the token and its line.
		return nil, fmt.Errorf("ddns: zone: %w", err)
	}
	if lr.n > MaxZoneFileBytes {
		return nil, fmt.Errorf("ddns: zone %s: larger than %d bytes", file, MaxZoneFileBytes)
	}
	for name, sn := range z.names {
		slices.Sort(sn.types)
		// Every name between an owner and the apex exists (RFC 8020).
		for p := parentName(name); p != "" && p != domain+"." && z.names[p] == nil; p = parentName(p) {
			z.ents[p] = true
		}
	}
	return z, nil
}

// LoadZone reads the zone file at path for domain (see ParseZone).
func LoadZone(domain, path, node string) (*Zone, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ddns: zone: %w", err)
	}
	defer f.Close()
	return ParseZone(domain, f, path, node)
}

// Errors of Zone.add, wrapped with the file and line by ParseZone.
var (
	errOutOfZone   = errors.New("owner is outside the zone")
	errReserved    = errors.New("record is the array's")
	errUnsupported = errors.New("record type not supported in a static zone")
	errConflict    = errors.New("record conflicts with another")
	errLimit       = errors.New("limit exceeded")
)

// add checks one record and files it under its owner.
func (z *Zone) add(rr dns.RR, node string) error {
	h := rr.Header()
	h.Name = strings.ToLower(h.Name)
	name, apex := h.Name, z.domain+"."
	typ := dns.Type(h.Rrtype).String()
	if h.Class != dns.ClassINET {
		return fmt.Errorf("%w: class %s (only IN is served)", errUnsupported, dns.Class(h.Class))
	}
	if name != apex && !strings.HasSuffix(name, "."+apex) {
		return fmt.Errorf("%w: %s is not in %s", errOutOfZone, name, apex)
	}
	rel := strings.TrimSuffix(strings.TrimSuffix(name, apex), ".")
	switch h.Rrtype {
	case dns.TypeSOA:
		return fmt.Errorf("%w: SOA is built from membership", errReserved)
	case dns.TypeNS:
		if rel == "" {
			return fmt.Errorf("%w: NS at the apex lists the live dns nodes", errReserved)
		}
		return fmt.Errorf("%w: NS at %s (delegating a subdomain)", errUnsupported, name)
	case dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM, dns.TypeDNSKEY, dns.TypeDS, dns.TypeCDS, dns.TypeCDNSKEY:
		return fmt.Errorf("%w: %s (the array's answers are unsigned)", errUnsupported, typ)
	case dns.TypeDNAME:
		return fmt.Errorf("%w: DNAME", errUnsupported)
	}
	address := h.Rrtype == dns.TypeA || h.Rrtype == dns.TypeAAAA || h.Rrtype == dns.TypeCNAME
	switch {
	case rel == "" && (h.Rrtype == dns.TypeMX || h.Rrtype == dns.TypeCNAME):
		return fmt.Errorf("%w: %s at the apex (MX lists the live smtp nodes; a CNAME cannot sit beside SOA and NS, RFC 1034 section 3.6.2)", errReserved, typ)
	case address && serviceRole(rel) != "":
		return fmt.Errorf("%w: %s at %s (its addresses are the live %s nodes')", errReserved, typ, name, serviceRole(rel))
	case address && node != "" && rel == node:
		return fmt.Errorf("%w: %s at %s (this node's own name)", errReserved, typ, name)
	}

	sn := z.names[name]
	if sn == nil {
		sn = &staticName{sets: make(map[uint16][]dns.RR)}
		z.names[name] = sn
	}
	_, hasCNAME := sn.sets[dns.TypeCNAME]
	switch {
	case h.Rrtype == dns.TypeCNAME && len(sn.sets) > 0:
		return fmt.Errorf("%w: CNAME at %s beside other records (RFC 2181 section 10.1)", errConflict, name)
	case hasCNAME:
		return fmt.Errorf("%w: %s at %s beside its CNAME (RFC 2181 section 10.1)", errConflict, typ, name)
	}
	set := sn.sets[h.Rrtype]
	for _, o := range set {
		if dns.IsDuplicate(o, rr) {
			return nil // RFC 2181 section 5: an RRset has no duplicates
		}
	}
	if len(set) >= MaxRRsetRecords {
		return fmt.Errorf("%w: more than %d %s records at %s", errLimit, MaxRRsetRecords, typ, name)
	}
	if len(set) > 0 && set[0].Header().Ttl != h.Ttl {
		return fmt.Errorf("%w: %s %s TTL %d differs from the RRset's %d (RFC 2181 section 5.2)", errConflict, name, typ, h.Ttl, set[0].Header().Ttl)
	}
	if set == nil {
		sn.types = append(sn.types, h.Rrtype)
	}
	sn.sets[h.Rrtype] = append(set, rr)
	z.records++
	return nil
}

// checkNested refuses names that belong to a hosted subdomain (a hosted
// domain inside this one): its own zone answers for them, so these
// records would never be served.
func (z *Zone) checkNested(domains []string) error {
	names := make([]string, 0, len(z.names))
	for name := range z.names {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(z.lines[a], z.lines[b]) })
	for _, name := range names {
		if zone, _, ok := findZone(domains, name); ok && zone != z.domain {
			return fmt.Errorf("ddns: zone %s line %d: %w: %s is in hosted domain %s (give it its own zone file)", z.file, z.lines[name], errOutOfZone, name, zone)
		}
	}
	return nil
}

// parentName is name without its first label ("" past the root).
func parentName(name string) string {
	i := strings.IndexByte(name, '.')
	if i < 0 || i == len(name)-1 {
		return ""
	}
	return name[i+1:]
}

// Zones is the static zones of the hosted domains, by domain. The zero
// value and nil hold none.
type Zones struct {
	byDomain map[string]*Zone
}

// NewZones collects zones; two for one domain are a programmer error
// (LoadZones refuses them first).
func NewZones(zones ...*Zone) *Zones {
	zs := &Zones{byDomain: make(map[string]*Zone, len(zones))}
	for _, z := range zones {
		if zs.byDomain[z.domain] != nil {
			panic("ddns: NewZones: two zones for " + z.domain)
		}
		zs.byDomain[z.domain] = z
	}
	return zs
}

// Zone returns the static zone of domain (lowercase, no trailing dot), or nil.
func (zs *Zones) Zone(domain string) *Zone {
	if zs == nil {
		return nil
	}
	return zs.byDomain[domain]
}

// Domains lists the domains having a static zone, sorted.
func (zs *Zones) Domains() []string {
	if zs == nil {
		return nil
	}
	out := make([]string, 0, len(zs.byDomain))
	for d := range zs.byDomain {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// ZoneFile names the master file of one hosted domain.
type ZoneFile struct {
	Domain string // lowercase, no trailing dot
	Path   string
}

// LoadZones parses every file (see ParseZone) and fails on the first bad
// one, or on two files for one domain.
func LoadZones(files []ZoneFile, node string) (*Zones, error) {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b ZoneFile) int { return cmp.Compare(a.Domain, b.Domain) })
	zones := make([]*Zone, 0, len(files))
	for i, f := range files {
		if i > 0 && files[i-1].Domain == f.Domain {
			return nil, fmt.Errorf("ddns: zone: %s has two files: %s and %s", f.Domain, files[i-1].Path, f.Path)
		}
		z, err := LoadZone(f.Domain, f.Path, node)
		if err != nil {
			return nil, err
		}
		zones = append(zones, z)
	}
	return NewZones(zones...), nil
}

// lineReader feeds the zone parser one byte at a time (it reads through
// io.ByteReader when it can), so the line being parsed is known: miekg/dns
// gives an RR no position.
type lineReader struct {
	r     *bufio.Reader
	n     int  // bytes read
	lines int  // newlines read
	last  byte // last byte read
}

func (l *lineReader) ReadByte() (byte, error) {
	b, err := l.r.ReadByte()
	if err != nil {
		return b, err
	}
	l.n++
	l.last = b
	if b == '\n' {
		l.lines++
	}
	return b, nil
}

func (l *lineReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, err := l.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = b
	return 1, nil
}

// line is the line of the last byte read: the last line of the record just
// parsed, as the parser reads up to the end of the record's line.
func (l *lineReader) line() int {
	if l.n > 0 && l.last != '\n' {
		return l.lines + 1
	}
	return l.lines
}
