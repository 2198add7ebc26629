package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	gosmtp "github.com/emersion/go-smtp"
)

// AuthResultsHeader is the header field the auth filter adds (RFC 8601).
const AuthResultsHeader = "Authentication-Results"

// DMARC policies of the auth filter: what a message whose DMARC result is
// fail gets (RFC 7489 section 6.7 leaves the final say to the receiver).
const (
	// DMARCMark only records the result in the header; nothing is refused
	// or held. The default.
	DMARCMark = "mark"
	// DMARCQuarantine holds every DMARC-failing message in the quarantine
	// queue, whatever the sender domain published.
	DMARCQuarantine = "quarantine"
	// DMARCReject refuses every DMARC-failing message with 550 5.7.1,
	// whatever the sender domain published.
	DMARCReject = "reject"
	// DMARCHonour does what the sender domain's record asks (p=, or sp=
	// for a subdomain): reject refuses, quarantine holds, none marks. A
	// pct below 100 lowers the request one step for every message (RFC
	// 7489 section 6.6.4 for the unsampled ones): sampling would need a
	// random draw per message, and the array's verdicts stay a function
	// of the message.
	DMARCHonour = "honour"
)

// Limits of the auth filter.
const (
	// MaxDKIMSignatures bounds the signatures verified per message; each
	// costs a key lookup and a hash of the body (RFC 6376 section 6.1
	// lets a verifier limit them).
	MaxDKIMSignatures = 5
)

// AuthConfig configures the Auth filter.
type AuthConfig struct {
	// SPF checks the client address against the MAIL FROM domain's SPF
	// record (or the HELO name's, for the null sender): RFC 7208.
	SPF bool
	// DKIM verifies the message's DKIM-Signature fields: RFC 6376.
	DKIM bool
	// DMARC evaluates the header From domain's DMARC record against the
	// SPF and DKIM results: RFC 7489. It needs at least one of them to
	// pass aligned; with both SPF and DKIM off it can only fail.
	DMARC bool
	// DMARCPolicy is what a DMARC fail does: DMARCMark (default),
	// DMARCQuarantine, DMARCReject or DMARCHonour. None, temperror and
	// permerror only mark (RFC 7489 section 6.6.2: a receiver that
	// cannot evaluate does not act on it).
	DMARCPolicy string
	// AuthservID names the array in the Authentication-Results fields it
	// adds; incoming fields claiming it are removed first (RFC 8601
	// section 5). The same on every node: the array is one ADMD.
	AuthservID string
	// ARCTrustedSealers are the domains (ARC-Seal d=) of forwarders
	// whose valid ARC chain keeps a DMARC-failing message from being
	// refused or held: it is only marked (RFC 8617 section 7.2; mailing
	// lists and forwarders break SPF and often DKIM). The chain is
	// validated, and an arc= result recorded, only for a DMARC fail and
	// only when this list is not empty: nothing else uses it.
	ARCTrustedSealers []string
	// Resolver answers every DNS question of the checks.
	Resolver Resolver
}

// DefaultAuthConfig returns all three checks on, marking only.
func DefaultAuthConfig() AuthConfig {
	return AuthConfig{SPF: true, DKIM: true, DMARC: true, DMARCPolicy: DMARCMark}
}

// Validate fills defaults and rejects nonsense.
func (c *AuthConfig) Validate() error {
	switch c.DMARCPolicy {
	case "":
		c.DMARCPolicy = DMARCMark
	case DMARCMark, DMARCQuarantine, DMARCReject, DMARCHonour:
	default:
		return fmt.Errorf("pipeline: auth: dmarc policy %q must be mark, quarantine, reject or honour", c.DMARCPolicy)
	}
	id, err := CanonicalDomain(c.AuthservID)
	if err != nil {
		return fmt.Errorf("pipeline: auth: authserv-id: %w", err)
	}
	c.AuthservID = id
	sealers := make([]string, len(c.ARCTrustedSealers))
	for i, s := range c.ARCTrustedSealers {
		if sealers[i], err = CanonicalDomain(s); err != nil {
			return fmt.Errorf("pipeline: auth: trusted ARC sealer: %w", err)
		}
	}
	c.ARCTrustedSealers = sealers
	if c.Resolver == nil {
		return errors.New("pipeline: auth: no resolver")
	}
	return nil
}

// Auth is the sender authentication filter: SPF, DKIM and DMARC (and ARC
// for trusted forwarders), recorded in an Authentication-Results field
// and acted on per AuthConfig.DMARCPolicy. A DNS failure is a temperror
// result, never a filter error: authentication results fail open (RFC
// 7489 section 6.6.2), the message is delivered with them marked. Safe
// for concurrent use.
type Auth struct {
	cfg AuthConfig
	log *slog.Logger
}

var _ Filter = (*Auth)(nil)

// NewAuth returns the filter.
func NewAuth(cfg AuthConfig, log *slog.Logger) (*Auth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Auth{cfg: cfg, log: log}, nil
}

// Name implements Filter.
func (a *Auth) Name() string { return "auth" }

// authOutcome is what the checks found about one message.
type authOutcome struct {
	results []authres.Result
	spf     spf.Result
	dkim    []*dkim.Verification
	dmarc   dmarcOutcome
	arc     arcOutcome
}

// Check implements Filter.
func (a *Auth) Check(ctx context.Context, m *Message) (Verdict, error) {
	if m.Local {
		return Verdict{Action: Accept, Reason: "made by the array: no sender to authenticate"}, nil
	}
	var out authOutcome
	if a.cfg.SPF {
		out.spf = a.checkSPF(ctx, m)
		r := &authres.SPFResult{Value: authres.ResultValue(out.spf)}
		if m.From == "" {
			r.Helo = authValue(m.Helo)
		} else {
			r.From = authValue(m.From)
		}
		out.results = append(out.results, r)
	}
	if a.cfg.DKIM {
		out.dkim = a.checkDKIM(ctx, m)
		if len(out.dkim) == 0 {
			out.results = append(out.results, &authres.DKIMResult{Value: authres.ResultNone})
		}
		for _, v := range out.dkim {
			out.results = append(out.results, &authres.DKIMResult{Value: dkimValue(v.Err), Domain: authValue(v.Domain), Identifier: authValue(v.Identifier)})
		}
	}
	if a.cfg.DMARC {
		out.dmarc = a.checkDMARC(ctx, m, out.spf, out.dkim)
		params := map[string]string{"header.from": out.dmarc.from}
		if out.dmarc.policy != "" {
			params["policy.dmarc"] = string(out.dmarc.policy)
		}
		out.results = append(out.results, &authres.GenericResult{Method: "dmarc", Value: out.dmarc.value, Params: params})
		if out.dmarc.value == authres.ResultFail && len(a.cfg.ARCTrustedSealers) > 0 {
			out.arc = a.checkARC(ctx, m.Data)
			out.results = append(out.results, &authres.GenericResult{Method: "arc", Value: out.arc.value, Params: map[string]string{"header.d": authValue(out.arc.sealer)}})
		}
	}
	// No ctx.Err() check: lookups cut by the filter's deadline are
	// temperror results, and the message goes on with them (a filter
	// error would answer 451).
	header := formatAuthResults(a.cfg.AuthservID, out.results)
	reason := summary(out.results)
	v := Verdict{Action: Accept, Headers: []string{header}}
	if stripped, n := stripAuthResults(m.Data, a.cfg.AuthservID); n > 0 {
		v.Action, v.Data = Modify, stripped
		reason += fmt.Sprintf("; removed %d %s field(s) claiming %s", n, AuthResultsHeader, a.cfg.AuthservID)
	}
	action := a.dmarcAction(out.dmarc)
	if action != DMARCMark && out.arc.value == authres.ResultPass && out.arc.trusted {
		reason += "; dmarc " + action + " waived: trusted ARC sealer " + out.arc.sealer
		action = DMARCMark
	}
	switch action {
	case DMARCQuarantine:
		v.Action = Quarantine // keeps v.Data: the stripped message is held
		reason += "; quarantined by dmarc policy"
	case DMARCReject:
		// RFC 7489 section 6.7 and RFC 3463 X.7.1: delivery not
		// authorized, message refused.
		reason += "; rejected by dmarc policy"
		return Verdict{Action: Reject, Reason: reason, Reject: &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1},
			Message: "Message refused: DMARC policy of " + out.dmarc.from}}, nil
	}
	v.Reason = reason // logged by the pipeline with the verdict
	return v, nil
}

// dmarcAction is what the configured policy does with outcome d:
// DMARCMark, DMARCQuarantine or DMARCReject.
func (a *Auth) dmarcAction(d dmarcOutcome) string {
	if d.value != authres.ResultFail {
		return DMARCMark
	}
	switch a.cfg.DMARCPolicy {
	case DMARCQuarantine, DMARCReject:
		return a.cfg.DMARCPolicy
	case DMARCHonour:
		switch d.request {
		case "quarantine":
			return DMARCQuarantine
		case "reject":
			return DMARCReject
		}
	}
	return DMARCMark
}

// checkSPF evaluates the client address against the sender's SPF record
// (RFC 7208 section 2.4: the MAIL FROM domain, or the HELO name for the
// null sender, as "postmaster@helo").
func (a *Auth) checkSPF(ctx context.Context, m *Message) spf.Result {
	ip := remoteIP(m.Remote)
	if ip == nil {
		return spf.None
	}
	helo := strings.TrimSuffix(m.Helo, ".")
	sender := m.From
	if sender == "" {
		sender = "postmaster@" + helo
	}
	res, err := spf.CheckHostWithSender(ip, helo, sender, spf.WithContext(ctx), spf.WithResolver(a.cfg.Resolver))
	if err != nil && res != spf.Pass {
		a.log.Debug("auth: spf", "id", m.ID, "result", string(res), "err", err.Error())
	}
	return res
}

// checkDKIM verifies the message's signatures (at most MaxDKIMSignatures).
func (a *Auth) checkDKIM(ctx context.Context, m *Message) []*dkim.Verification {
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return a.cfg.Resolver.LookupTXT(ctx, name) },
		MaxVerifications: MaxDKIMSignatures,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// The header could not be read: nothing to verify.
		a.log.Debug("auth: dkim", "id", m.ID, "err", err.Error())
		return nil
	}
	for _, v := range vs {
		if v.Err != nil {
			a.log.Debug("auth: dkim signature", "id", m.ID, "domain", v.Domain, "err", v.Err.Error())
		}
	}
	return vs
}

// dkimValue maps a verification error to its RFC 8601 section 2.7.1 result.
func dkimValue(err error) authres.ResultValue {
	switch {
	case err == nil:
		return authres.ResultPass
	case dkim.IsTempFail(err):
		return authres.ResultTempError // key lookup failed
	case dkim.IsPermFail(err):
		return authres.ResultPermError // no key, bad key or bad signature field
	}
	return authres.ResultFail // the signature or the body hash did not verify
}

// formatAuthResults returns the Authentication-Results field, one result a
// line (RFC 8601 section 2.2; folding keeps long results under 998
// characters).
func formatAuthResults(id string, results []authres.Result) string {
	var b strings.Builder
	b.WriteString(AuthResultsHeader + ": " + id)
	if len(results) == 0 {
		b.WriteString("; none")
	}
	for _, r := range results {
		// authres.Format writes "id; method=value params": keep the part
		// after the id.
		one := authres.Format(id, []authres.Result{r})
		b.WriteString(";\r\n\t" + strings.TrimSpace(strings.TrimPrefix(one, id+"; ")))
	}
	return b.String()
}

// MaxAuthValueBytes bounds one property value in the field (a signature's
// d= is the sender's to choose), keeping every folded line of the field
// well under 998 characters.
const MaxAuthValueBytes = 255

// authValue makes a value from the message or the envelope safe for the
// field: control characters, white space and the characters that would end
// or quote a property (RFC 8601 section 2.2) are dropped, and the length
// bounded.
func authValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`;()"\`, r) {
			return -1
		}
		return r
	}, s)
	if len(s) > MaxAuthValueBytes {
		s = s[:MaxAuthValueBytes]
	}
	return s
}

// summary is the results on one line, for the trace.
func summary(results []authres.Result) string {
	var parts []string
	for _, r := range results {
		one := authres.Format("x", []authres.Result{r})
		method, _, _ := strings.Cut(strings.TrimPrefix(one, "x; "), " ")
		parts = append(parts, method)
	}
	if len(parts) == 0 {
		return "no checks"
	}
	return strings.Join(parts, " ")
}

// stripAuthResults removes the top-level Authentication-Results fields
// whose authserv-id is id (RFC 8601 section 5: a forged field claiming our
// checks must not reach the reader), returning the new data and how many
// fields went. With none, data itself is returned.
func stripAuthResults(data []byte, id string) ([]byte, int) {
	hdrEnd, _ := headerEnd(data)
	var out []byte
	removed := 0
	start := 0 // of the current field
	flush := func(end int) {
		field := data[start:end]
		name, value, ok := bytes.Cut(field, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(name)), AuthResultsHeader) && authservID(string(value)) == id {
			if out == nil {
				out = append(make([]byte, 0, len(data)), data[:start]...)
			}
			removed++
			return
		}
		if out != nil {
			out = append(out, field...)
		}
	}
	for i := 0; i < hdrEnd; {
		nl := bytes.IndexByte(data[i:hdrEnd], '\n')
		next := hdrEnd
		if nl >= 0 {
			next = i + nl + 1
		}
		if i > start && data[i] != ' ' && data[i] != '\t' {
			flush(i)
			start = i
		}
		i = next
	}
	if hdrEnd > start {
		flush(hdrEnd)
	}
	if out == nil {
		return data, 0
	}
	return append(out, data[hdrEnd:]...), removed
}

// authservID returns the lower-case authserv-id of an Authentication-Results
// value: the first token, after comments and folding white space (RFC 8601
// section 2.2).
func authservID(value string) string {
	var b strings.Builder
	depth := 0
	for _, c := range value {
		switch {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == ';' || ((c == ' ' || c == '\t' || c == '\r' || c == '\n') && b.Len() > 0):
			return asciiLower(b.String())
		case c != ' ' && c != '\t' && c != '\r' && c != '\n':
			b.WriteRune(c)
		}
	}
	return asciiLower(b.String())
}
