package pipeline

import (
	"context"
	"errors"
	"net/mail"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// dmarcOutcome is the DMARC evaluation of one message (RFC 7489 section
// 6.6).
type dmarcOutcome struct {
	value authres.ResultValue // pass, fail, none, temperror or permerror
	from  string              // the RFC5322.From domain
	// policy is the published p= (sp= for a subdomain without its own
	// record), recorded in the header; "" without a record.
	policy dmarc.Policy
	// request is policy lowered by pct (see DMARCHonour).
	request dmarc.Policy
}

// checkDMARC finds the From domain's policy and checks that SPF or DKIM
// passed for an aligned domain.
func (a *Auth) checkDMARC(ctx context.Context, m *Message, spfRes spf.Result, dkims []*dkim.Verification) dmarcOutcome {
	from, ok := singleFromDomain(m.Data)
	if !ok {
		// RFC 7489 section 6.6.1: no single author domain, nothing to
		// evaluate against.
		return dmarcOutcome{value: authres.ResultPermError, from: from}
	}
	out := dmarcOutcome{from: from}
	lookup := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return a.cfg.Resolver.LookupTXT(ctx, name) }}
	rec, err := dmarc.LookupWithOptions(from, lookup)
	sub := false
	if errors.Is(err, dmarc.ErrNoPolicy) {
		// Section 6.6.3: fall back to the organizational domain's record,
		// whose sp= covers its subdomains.
		if org := orgDomain(from); org != from {
			rec, err = dmarc.LookupWithOptions(org, lookup)
			sub = true
		}
	}
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		out.value = authres.ResultNone
		return out
	case dmarc.IsTempFail(err):
		out.value = authres.ResultTempError
		return out
	case err != nil:
		out.value = authres.ResultPermError // a record that does not parse
		return out
	}
	out.policy = rec.Policy
	if sub && rec.SubdomainPolicy != "" {
		out.policy = rec.SubdomainPolicy
	}
	out.request = out.policy
	if rec.Percent != nil && *rec.Percent < 100 {
		switch out.request {
		case dmarc.PolicyReject:
			out.request = dmarc.PolicyQuarantine
		case dmarc.PolicyQuarantine:
			out.request = dmarc.PolicyNone
		}
	}
	// Section 3.1 and 4.2: pass when SPF or DKIM passed for a domain
	// aligned with the From domain.
	spfDomain := domainOf(m.From)
	if m.From == "" {
		spfDomain = asciiLower(strings.TrimSuffix(m.Helo, ".")) // RFC 7208 section 2.4
	}
	if spfRes == spf.Pass && aligned(spfDomain, from, rec.SPFAlignment) {
		out.value = authres.ResultPass
		return out
	}
	for _, v := range dkims {
		if v.Err == nil && aligned(asciiLower(v.Domain), from, rec.DKIMAlignment) {
			out.value = authres.ResultPass
			return out
		}
	}
	out.value = authres.ResultFail
	return out
}

// aligned says whether an authenticated domain is aligned with the From
// domain: equal in strict mode, the same organizational domain in relaxed
// mode, the default (RFC 7489 section 3.1).
func aligned(authenticated, from string, mode dmarc.AlignmentMode) bool {
	authenticated = strings.TrimSuffix(authenticated, ".")
	if authenticated == "" {
		return false
	}
	if authenticated == from {
		return true
	}
	return mode != dmarc.AlignmentStrict && orgDomain(authenticated) == orgDomain(from)
}

// orgDomain is d's organizational domain: one label below its public
// suffix (RFC 7489 section 3.2), or d itself when it is a public suffix.
func orgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// singleFromDomain returns the domain of the message's author: one From
// field with one address (RFC 7489 section 6.6.1). ok is false otherwise,
// with the first domain seen, if any, for the header.
func singleFromDomain(data []byte) (string, bool) {
	h := messageHeader(data)
	froms := h.Values("From")
	if len(froms) != 1 {
		return "", false
	}
	list, err := mail.ParseAddressList(froms[0])
	if err != nil || len(list) != 1 {
		ds := headerFromDomains(h)
		if len(ds) > 0 {
			return ds[0], false
		}
		return "", false
	}
	d := domainOf(list[0].Address)
	return d, validDomain(d)
}
