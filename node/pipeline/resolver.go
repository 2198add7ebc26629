package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"

	"mailarray/node/ddns"
	"mailarray/node/env"
)

// Resolver is the DNS the sender authentication checks (SPF, DKIM, DMARC,
// ARC) ask. Its method set is blitiri.com.ar/go/spf's DNSResolver, and
// *net.Resolver has it too; the node uses a DNSResolver over env.Net (so
// the simulator's network carries the queries), tests a map.
//
// Errors must be *net.DNSError, not wrapped: the verification libraries
// tell "no such record" (IsNotFound: NXDOMAIN or no record of the type)
// from "try again later" (Temporary(): IsTemporary or IsTimeout) by type
// assertion. Methods may be called concurrently.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// DefaultAuthQueryTimeout bounds one DNS question of the sender
// authentication checks. SPF may ask up to 10 DNS-querying terms (RFC
// 7208 section 4.6.4), each of them one question or two (A and AAAA), so
// the filter's whole time (Config.Timeout) is the real bound.
const DefaultAuthQueryTimeout = 2 * time.Second

// DNSResolver asks one recursive resolver over env.Net: UDP with EDNS,
// TCP when the reply is truncated.
type DNSResolver struct {
	// Net carries the queries.
	Net env.Net
	// Server is the recursive resolver, "host:port".
	Server string
	// QueryTimeout bounds one question; default DefaultAuthQueryTimeout.
	QueryTimeout time.Duration
}

var _ Resolver = (*DNSResolver)(nil)

// query asks for name's records of type qtype and returns the answers of
// that type (the resolver has followed any CNAME). NXDOMAIN and an answer
// without records of the type are IsNotFound; SERVFAIL, REFUSED, a
// timeout or a network error are temporary (RFC 7208 section 5 and RFC
// 7489 section 6.6.3 want them told apart from "no record").
func (r *DNSResolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	name = dns.Fqdn(name)
	dnsErr := func(msg string) *net.DNSError {
		return &net.DNSError{Err: msg, Name: name, Server: r.Server}
	}
	if _, ok := dns.IsDomainName(name); !ok {
		e := dnsErr("bad name")
		e.IsNotFound = true
		return nil, e
	}
	timeout := r.QueryTimeout
	if timeout <= 0 {
		timeout = DefaultAuthQueryTimeout
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	q.SetEdns0(1232, false)
	resp, err := ddns.Exchange(qctx, r.Net, r.Server, q, false)
	if err == nil && resp.Truncated {
		resp, err = ddns.Exchange(qctx, r.Net, r.Server, q, true)
	}
	if err != nil {
		e := dnsErr(err.Error())
		if errors.Is(err, context.DeadlineExceeded) {
			e.IsTimeout = true
		} else {
			e.IsTemporary = true
		}
		return nil, e
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		e := dnsErr("no such host")
		e.IsNotFound = true
		return nil, e
	default:
		e := dnsErr("server answered " + dns.RcodeToString[resp.Rcode])
		e.IsTemporary = true
		return nil, e
	}
	var out []dns.RR
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	if len(out) == 0 {
		e := dnsErr("no " + dns.TypeToString[qtype] + " record")
		e.IsNotFound = true
		return nil, e
	}
	return out, nil
}

// LookupTXT returns name's TXT records, each one's strings joined (RFC
// 7208 section 3.3, RFC 6376 section 3.6.2.2).
func (r *DNSResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupMX returns name's MX records.
func (r *DNSResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return out, nil
}

// LookupIPAddr returns host's A and AAAA records. It is not found only
// when neither type has a record; a temporary failure of either is
// temporary (an SPF "a" term must not fail on half an answer).
func (r *DNSResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	var out []net.IPAddr
	var notFound error
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.query(ctx, host, t)
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			notFound = err
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, rr := range rrs {
			switch rr := rr.(type) {
			case *dns.A:
				out = append(out, net.IPAddr{IP: rr.A})
			case *dns.AAAA:
				out = append(out, net.IPAddr{IP: rr.AAAA})
			}
		}
	}
	if len(out) == 0 {
		return nil, notFound
	}
	return out, nil
}

// LookupAddr returns the PTR names of addr.
func (r *DNSResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: fmt.Sprintf("bad address: %v", err), Name: addr, IsNotFound: true}
	}
	rrs, err := r.query(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}
