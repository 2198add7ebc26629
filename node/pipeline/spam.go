package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"mailarray/node/ddns"
	"mailarray/node/env"
)

// Header fields the spam filter adds to a message from a listed sender.
const (
	SpamFlagHeader   = "X-Spam-Flag"
	SpamReasonHeader = "X-Spam-Reason"
)

// Limits of the spam filter.
const (
	// MaxDNSBLZones bounds the zones of each kind: every zone costs one
	// query per sender domain per message.
	MaxDNSBLZones = 8
	// DefaultDNSBLQueryTimeout bounds one DNSBL query. A slow list must
	// not eat the filter's whole time (Config.Timeout): a query that times
	// out counts as not listed and is noted in the trace.
	DefaultDNSBLQueryTimeout = 2 * time.Second
	// MaxSpamReasonBytes bounds the X-Spam-Reason value, keeping the field
	// on one line (RFC 5322 section 2.1.1: 998 characters).
	MaxSpamReasonBytes = 900
	// MaxSpamDBLineBytes bounds one line of the spam database file.
	MaxSpamDBLineBytes = 1024
)

// SpamConfig configures the Spam filter.
type SpamConfig struct {
	// DBFile lists spam-source domains, one a line (see ParseDomains); a
	// domain lists its subdomains too. "" or a missing file: an empty
	// database (AddDomain creates the file; Watch picks it up).
	DBFile string
	// DNSBL are domain-based block list zones (RFC 5782 section 3):
	// domain D is listed by zone Z when D.Z has an A record 127.0.0.x.
	DNSBL []string
	// IPBL are address-based block list zones (RFC 5782 sections 2.1 and
	// 2.4), asked about the SMTP client's address, reversed.
	IPBL []string
	// DNSServer is the resolver asked about the zones, "host:port".
	DNSServer string
	// Net carries the DNS queries.
	Net env.Net
	// Reject refuses a listed sender's message with 550 5.7.1 instead of
	// flagging it.
	Reject bool
	// QueryTimeout bounds one DNSBL query; default
	// DefaultDNSBLQueryTimeout.
	QueryTimeout time.Duration
}

// DefaultSpamConfig returns a filter with no database and no zones.
func DefaultSpamConfig() SpamConfig {
	return SpamConfig{QueryTimeout: DefaultDNSBLQueryTimeout}
}

// Validate fills defaults, lower-cases the zones and checks that zones come
// with a resolver and a network.
func (c *SpamConfig) Validate() error {
	if c.QueryTimeout == 0 {
		c.QueryTimeout = DefaultDNSBLQueryTimeout
	}
	if c.QueryTimeout < 0 {
		return fmt.Errorf("pipeline: spam: negative query timeout %v", c.QueryTimeout)
	}
	for _, zones := range []*[]string{&c.DNSBL, &c.IPBL} {
		if len(*zones) > MaxDNSBLZones {
			return fmt.Errorf("pipeline: spam: %d zones, more than %d", len(*zones), MaxDNSBLZones)
		}
		z := make([]string, len(*zones))
		for i, zone := range *zones {
			z[i] = asciiLower(strings.TrimSuffix(zone, "."))
			if !validDomain(z[i]) {
				return fmt.Errorf("pipeline: spam: bad zone %q", zone)
			}
		}
		*zones = z
	}
	if len(c.DNSBL)+len(c.IPBL) > 0 {
		if c.DNSServer == "" {
			return errors.New("pipeline: spam: block list zones without a DNS server")
		}
		if _, _, err := net.SplitHostPort(c.DNSServer); err != nil {
			return fmt.Errorf("pipeline: spam: DNS server %q: %w", c.DNSServer, err)
		}
		if c.Net == nil {
			return errors.New("pipeline: spam: block list zones without a network")
		}
	}
	return nil
}

// Spam is the spam filter: the sender's domains (envelope and header From)
// against a local database of spam-source domains and optional DNS block
// lists. Safe for concurrent use; Reload swaps the database atomically.
type Spam struct {
	cfg SpamConfig
	log *slog.Logger
	db  atomic.Pointer[domainSet]

	reloadMu sync.Mutex
	loaded   os.FileInfo
}

var _ Filter = (*Spam)(nil)

// NewSpam returns the filter with its database loaded.
func NewSpam(cfg SpamConfig, log *slog.Logger) (*Spam, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Spam{cfg: cfg, log: log}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Name implements Filter.
func (s *Spam) Name() string { return "spam" }

// Reload reads the database file again and swaps it in. A missing file is
// an empty database; another read error keeps the previous one. Bad lines
// are returned and logged.
func (s *Spam) Reload() ([]Problem, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.cfg.DBFile == "" {
		s.db.Store(&domainSet{})
		return nil, nil
	}
	b, fi, err := readListFile(s.cfg.DBFile)
	if errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("spam: database file missing, using an empty one", "file", s.cfg.DBFile)
		s.db.Store(&domainSet{})
		s.loaded = nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pipeline: spam: database: %w", err)
	}
	domains, problems := ParseDomains(bytes.NewReader(b), s.cfg.DBFile)
	for _, p := range problems {
		s.log.Warn("spam: database line skipped", "file", p.File, "line", p.Line, "reason", p.Reason)
	}
	set := &domainSet{m: make(map[string]struct{}, len(domains))}
	for _, d := range domains {
		set.m[d] = struct{}{}
	}
	s.db.Store(set)
	s.loaded = fi
	s.log.Info("spam: database loaded", "file", s.cfg.DBFile, "domains", len(set.m), "skipped", len(problems))
	return problems, nil
}

// Watch reloads the database whenever the file changes (AddDomain and
// DelDomain replace it), looking every interval until ctx is done. The
// caller owns the goroutine.
func (s *Spam) Watch(ctx context.Context, interval time.Duration) {
	if s.cfg.DBFile == "" {
		<-ctx.Done()
		return
	}
	watch(ctx, interval, func() bool {
		fi, err := os.Stat(s.cfg.DBFile)
		s.reloadMu.Lock()
		defer s.reloadMu.Unlock()
		if err != nil {
			return s.loaded != nil && errors.Is(err, fs.ErrNotExist) // deleted: now empty
		}
		return changedSince(s.loaded, fi)
	}, func() {
		if _, err := s.Reload(); err != nil {
			s.log.Warn("spam: reload failed", "err", err.Error())
		}
	})
}

// Domains returns how many domains the database holds.
func (s *Spam) Domains() int { return len(s.db.Load().m) }

// domainSet is an immutable set of listed domains.
type domainSet struct{ m map[string]struct{} }

// listed returns the entry listing d (d itself or a parent), or "".
func (ds *domainSet) listed(d string) string {
	for d != "" {
		if _, ok := ds.m[d]; ok {
			return d
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return ""
}

// Check implements Filter.
func (s *Spam) Check(ctx context.Context, m *Message) (Verdict, error) {
	type subject struct{ what, domain string }
	var subjects []subject
	if d := domainOf(m.From); d != "" && validDomain(d) {
		subjects = append(subjects, subject{"envelope sender domain", d})
	}
	for _, d := range headerFromDomains(messageHeader(m.Data)) {
		subjects = append(subjects, subject{"header From domain", d})
	}
	db := s.db.Load()
	var listed, notes []string
	for _, sub := range subjects {
		if e := db.listed(sub.domain); e != "" {
			r := sub.what + " " + sub.domain + " in local database"
			if e != sub.domain {
				r += " (as " + e + ")"
			}
			listed = append(listed, r)
		}
	}
	// Block lists: one query per distinct name, all at once.
	var qs []dnsblQuery
	seen := map[string]bool{}
	for _, sub := range subjects {
		for _, zone := range s.cfg.DNSBL {
			name := sub.domain + "." + zone
			if !seen[name] && len(name) <= 253 {
				seen[name] = true
				qs = append(qs, dnsblQuery{what: sub.what + " " + sub.domain, zone: zone, name: name})
			}
		}
	}
	if ip := remoteIP(m.Remote); ip != nil {
		for _, zone := range s.cfg.IPBL {
			qs = append(qs, dnsblQuery{what: "client " + ip.String(), zone: zone, name: reverseIP(ip) + "." + zone})
		}
	}
	s.query(ctx, qs)
	if err := ctx.Err(); err != nil {
		return Verdict{}, fmt.Errorf("pipeline: spam: %w", err)
	}
	for _, q := range qs {
		switch {
		case q.err != nil:
			notes = append(notes, "zone "+q.zone+" unavailable for "+q.name)
			s.log.Warn("spam: block list query failed", "id", m.ID, "zone", q.zone, "name", q.name, "err", q.err.Error())
		case q.listed != nil:
			listed = append(listed, q.what+" listed by "+q.zone+" ("+q.listed.String()+")")
		}
	}
	if len(listed) == 0 {
		var checked []string
		for _, sub := range subjects {
			checked = append(checked, sub.what+" "+sub.domain)
		}
		reason := "not listed"
		if len(checked) == 0 {
			reason = "no sender domain to check"
		} else {
			reason += " (" + strings.Join(checked, ", ") + fmt.Sprintf("; %d block list queries)", len(qs))
		}
		if len(notes) > 0 {
			reason += "; " + strings.Join(notes, "; ")
		}
		return Verdict{Action: Accept, Reason: reason}, nil
	}
	why := strings.Join(listed, "; ")
	trace := why
	if len(notes) > 0 {
		trace += "; " + strings.Join(notes, "; ")
	}
	s.log.Info("spam: sender listed", "id", m.ID, "from", m.From, "reasons", why, "reject", s.cfg.Reject)
	if s.cfg.Reject {
		// RFC 5321 section 4.2.2 (550) and RFC 3463 X.7.1: delivery not
		// authorized, message refused.
		return Verdict{Action: Reject, Reason: "listed: " + trace + "; rejected",
			Reject: &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Message refused: " + printable(listed[0], 200)}}, nil
	}
	value := printable(why, MaxSpamReasonBytes)
	return Verdict{Action: Accept, Reason: "listed: " + trace + "; flagged",
		Headers: []string{SpamFlagHeader + ": YES", SpamReasonHeader + ": " + value}}, nil
}

// dnsblQuery is one block list question and its answer.
type dnsblQuery struct {
	what, zone, name string
	listed           net.IP // the 127.0.0.x answer when listed
	err              error
}

// query asks every question concurrently and waits for all answers.
func (s *Spam) query(ctx context.Context, qs []dnsblQuery) {
	var wg sync.WaitGroup
	for i := range qs {
		wg.Go(func() {
			qctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
			defer cancel()
			qs[i].listed, qs[i].err = s.lookup(qctx, qs[i].name)
		})
	}
	wg.Wait()
}

// lookup asks the resolver for name's A records. NXDOMAIN and NODATA are
// "not listed"; an A record in 127.0.0.0/24 is "listed" (RFC 5782 section
// 2.3; other 127/8 answers are the lists' error codes, such as Spamhaus's
// 127.255.255.254 for a refused resolver, and do not list).
func (s *Spam) lookup(ctx context.Context, name string) (net.IP, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	q.RecursionDesired = true // a resolver, not the list's own server
	q.SetEdns0(1232, false)
	r, err := ddns.Exchange(ctx, s.cfg.Net, s.cfg.DNSServer, q, false)
	if err == nil && r.Truncated {
		r, err = ddns.Exchange(ctx, s.cfg.Net, s.cfg.DNSServer, q, true)
	}
	if err != nil {
		return nil, err
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, nil
	default:
		return nil, &ddns.RcodeError{Name: q.Question[0].Name, Type: dns.TypeA, Rcode: r.Rcode}
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok && strings.EqualFold(a.Hdr.Name, q.Question[0].Name) {
			if ip := a.A.To4(); ip != nil && ip[0] == 127 && ip[1] == 0 && ip[2] == 0 {
				return ip, nil
			}
		}
	}
	return nil, nil
}

// remoteIP returns the client's IP, or nil.
func remoteIP(a net.Addr) net.IP {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP
	case nil:
		return nil
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		host = a.String()
	}
	return net.ParseIP(host)
}

// reverseIP returns the block list form of ip: IPv4 octets reversed (RFC
// 5782 section 2.1), IPv6 nibbles reversed (section 2.4).
func reverseIP(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return fmt.Sprintf("%d.%d.%d.%d", v4[3], v4[2], v4[1], v4[0])
	}
	const hexDigits = "0123456789abcdef"
	ip = ip.To16()
	b := make([]byte, 0, 63)
	for i := len(ip) - 1; i >= 0; i-- {
		if len(b) > 0 {
			b = append(b, '.')
		}
		b = append(b, hexDigits[ip[i]&0xf], '.', hexDigits[ip[i]>>4])
	}
	return string(b)
}

// ParseDomains reads a spam database: one domain a line, compared without
// regard to case, a trailing dot ignored; blank lines and lines starting
// with '#' are ignored. A bad line is reported with its number and skipped.
// Domains come back lower case, in file order, without duplicates.
func ParseDomains(r io.Reader, name string) ([]string, []Problem) {
	var out []string
	var problems []Problem
	seen := map[string]bool{}
	br := bufio.NewReaderSize(r, MaxSpamDBLineBytes+2)
	lineNo := 0
	for {
		line, tooLong, err := readLine(br, MaxSpamDBLineBytes)
		if err != nil && !errors.Is(err, io.EOF) {
			problems = append(problems, Problem{File: name, Line: lineNo + 1, Reason: "read error: " + err.Error()})
			return out, problems
		}
		if err != nil && line == "" && !tooLong {
			return out, problems
		}
		lineNo++
		if tooLong {
			problems = append(problems, Problem{File: name, Line: lineNo, Reason: fmt.Sprintf("line longer than %d bytes", MaxSpamDBLineBytes)})
		} else if d, ok, reason := parseDomainLine(line); reason != "" {
			problems = append(problems, Problem{File: name, Line: lineNo, Reason: reason})
		} else if ok && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
		if err != nil {
			return out, problems
		}
	}
}

func parseDomainLine(line string) (domain string, ok bool, reason string) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", false, ""
	}
	d, err := CanonicalDomain(line)
	if err != nil {
		return "", false, strings.TrimPrefix(err.Error(), "pipeline: ")
	}
	return d, true, ""
}

// CanonicalDomain checks d and returns it lower case without a trailing
// dot.
func CanonicalDomain(d string) (string, error) {
	c := asciiLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
	if !validDomain(c) {
		return "", fmt.Errorf("pipeline: bad domain %q", printable(d, 64))
	}
	return c, nil
}
