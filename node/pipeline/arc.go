package pipeline

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// go-msgauth has no ARC (RFC 8617), so validation is here: the ARC-Seal
// chain and the newest ARC-Message-Signature, rsa-sha256 only (section
// 4.1.3 allows no other), keys published as for DKIM. It serves one
// decision: whether a DMARC fail came through a trusted forwarder.

// Names of the ARC header fields (RFC 8617 section 4.1).
const (
	arcSealHeader = "ARC-Seal"
	arcMsgSigHdr  = "ARC-Message-Signature"
	arcAuthResHdr = "ARC-Authentication-Results"
)

// MaxARCInstances is the highest ARC set instance (RFC 8617 section
// 4.2.1); a longer chain fails.
const MaxARCInstances = 50

// arcOutcome is the ARC chain validation of one message (RFC 8617).
type arcOutcome struct {
	value   authres.ResultValue // pass, fail or none
	sealer  string              // d= of the newest ARC-Seal
	trusted bool                // sealer is in AuthConfig.ARCTrustedSealers
}

// arcSet is one instance's three fields, raw (with folding and CRLF).
type arcSet struct{ aar, ams, seal string }

// checkARC validates the message's ARC chain (RFC 8617 section 5.2) and
// says whether its newest sealer is trusted.
func (a *Auth) checkARC(ctx context.Context, data []byte) arcOutcome {
	hdrEnd, bodyStart := headerEnd(data)
	fields := splitFields(data[:hdrEnd])
	sets, err := arcSets(fields)
	if err != nil {
		return arcOutcome{value: authres.ResultFail}
	}
	if len(sets) == 0 {
		return arcOutcome{value: authres.ResultNone}
	}
	n := len(sets)
	newest, err := parseTags(fieldValue(sets[n-1].seal))
	if err != nil {
		return arcOutcome{value: authres.ResultFail}
	}
	sealer := asciiLower(newest["d"])
	// Section 5.2 steps 2 and 3: the chain's own verdicts.
	for i, s := range sets {
		tags, err := parseTags(fieldValue(s.seal))
		if err != nil {
			return arcOutcome{value: authres.ResultFail}
		}
		want := "pass"
		if i == 0 {
			want = "none"
		}
		if tags["cv"] != want {
			return arcOutcome{value: authres.ResultFail}
		}
	}
	// Step 4: the newest message signature covers this message.
	body := data[bodyStart:]
	if err := a.verifySignature(ctx, fields, sets[n-1].ams, body, true); err != nil {
		return arcOutcome{value: authres.ResultFail}
	}
	// Step 5: every seal, newest first.
	for i := n - 1; i >= 0; i-- {
		if err := a.verifySeal(ctx, sets[:i+1]); err != nil {
			return arcOutcome{value: authres.ResultFail}
		}
	}
	trusted := false
	for _, s := range a.cfg.ARCTrustedSealers {
		trusted = trusted || s == sealer
	}
	return arcOutcome{value: authres.ResultPass, sealer: sealer, trusted: trusted}
}

// arcSets groups the ARC fields by instance, 1 first. A missing or
// repeated field, or an instance out of range, is an error.
func arcSets(fields []string) ([]arcSet, error) {
	byInstance := map[int]*arcSet{}
	highest := 0
	for _, f := range fields {
		name := strings.TrimSpace(f[:max(strings.IndexByte(f, ':'), 0)])
		var slot func(*arcSet) *string
		switch {
		case strings.EqualFold(name, arcSealHeader):
			slot = func(s *arcSet) *string { return &s.seal }
		case strings.EqualFold(name, arcMsgSigHdr):
			slot = func(s *arcSet) *string { return &s.ams }
		case strings.EqualFold(name, arcAuthResHdr):
			slot = func(s *arcSet) *string { return &s.aar }
		default:
			continue
		}
		i, err := arcInstance(fieldValue(f))
		if err != nil {
			return nil, err
		}
		if byInstance[i] == nil {
			byInstance[i] = &arcSet{}
		}
		p := slot(byInstance[i])
		if *p != "" {
			return nil, fmt.Errorf("arc: instance %d: %s repeated", i, name)
		}
		*p = f
		highest = max(highest, i)
	}
	sets := make([]arcSet, highest)
	for i := 1; i <= highest; i++ {
		s := byInstance[i]
		if s == nil || s.aar == "" || s.ams == "" || s.seal == "" {
			return nil, fmt.Errorf("arc: instance %d incomplete", i)
		}
		sets[i-1] = *s
	}
	return sets, nil
}

// arcInstance reads the i= tag that starts every ARC field's value.
func arcInstance(value string) (int, error) {
	for part := range strings.SplitSeq(value, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.TrimSpace(k) == "i" {
			i, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || i < 1 || i > MaxARCInstances {
				return 0, fmt.Errorf("arc: bad instance %q", v)
			}
			return i, nil
		}
	}
	return 0, errors.New("arc: no instance")
}

// verifySeal checks the seal of the last set of sets over all of them
// (RFC 8617 section 5.1.1: relaxed header canonicalization of each set's
// AAR, AMS and AS in instance order, the seal being checked with an empty
// b= and no final CRLF).
func (a *Auth) verifySeal(ctx context.Context, sets []arcSet) error {
	seal := sets[len(sets)-1].seal
	tags, err := parseTags(fieldValue(seal))
	if err != nil {
		return err
	}
	h := sha256.New()
	for i, s := range sets {
		h.Write([]byte(relaxedHeader(s.aar)))
		h.Write([]byte(relaxedHeader(s.ams)))
		if i < len(sets)-1 {
			h.Write([]byte(relaxedHeader(s.seal)))
		}
	}
	h.Write([]byte(strings.TrimSuffix(relaxedHeader(withoutSignature(seal)), "\r\n")))
	return a.verifyRSA(ctx, tags, h.Sum(nil))
}

// verifySignature checks a DKIM-style signature field (an
// ARC-Message-Signature, or a DKIM-Signature in the tests): the body hash
// and the signed header fields, picked bottom-up (RFC 6376 sections 3.7
// and 5.4.2), then the field itself with an empty b= and no final CRLF.
// arc excludes ARC-Seal from the signed fields (RFC 8617 section 4.1.2).
func (a *Auth) verifySignature(ctx context.Context, fields []string, sig string, body []byte, arc bool) error {
	tags, err := parseTags(fieldValue(sig))
	if err != nil {
		return err
	}
	headerCanon, bodyCanon, _ := strings.Cut(tags["c"], "/")
	if headerCanon == "" {
		headerCanon = "simple"
	}
	if bodyCanon == "" {
		bodyCanon = "simple"
	}
	canon := func(f string) string { return f }
	switch headerCanon {
	case "simple":
	case "relaxed":
		canon = relaxedHeader
	default:
		return fmt.Errorf("arc: header canonicalization %q", headerCanon)
	}
	bh := sha256.Sum256(canonicalBody(body, bodyCanon == "relaxed"))
	want, err := base64.StdEncoding.DecodeString(stripSpace(tags["bh"]))
	if err != nil || !bytes.Equal(want, bh[:]) {
		return errors.New("arc: body hash did not verify")
	}
	used := make([]bool, len(fields))
	h := sha256.New()
	for name := range strings.SplitSeq(tags["h"], ":") {
		name = strings.TrimSpace(name)
		if arc && strings.EqualFold(name, arcSealHeader) {
			return errors.New("arc: message signature covers ARC-Seal")
		}
		for i := len(fields) - 1; i >= 0; i-- {
			if !used[i] && fields[i] != sig && strings.EqualFold(fieldName(fields[i]), name) {
				used[i] = true
				h.Write([]byte(canon(fields[i])))
				break
			}
		}
	}
	h.Write([]byte(strings.TrimSuffix(canon(withoutSignature(sig)), "\r\n")))
	return a.verifyRSA(ctx, tags, h.Sum(nil))
}

// verifyRSA checks tags' b= over digest with the key at s._domainkey.d.
func (a *Auth) verifyRSA(ctx context.Context, tags map[string]string, digest []byte) error {
	if tags["a"] != "rsa-sha256" {
		return fmt.Errorf("arc: algorithm %q", tags["a"])
	}
	sig, err := base64.StdEncoding.DecodeString(stripSpace(tags["b"]))
	if err != nil {
		return fmt.Errorf("arc: signature: %w", err)
	}
	key, err := a.rsaKey(ctx, tags["s"], tags["d"])
	if err != nil {
		return err
	}
	return rsa.VerifyPKCS1v15(key, crypto.SHA256, digest, sig)
}

// rsaKey fetches an RSA key record (RFC 6376 section 3.6.1).
func (a *Auth) rsaKey(ctx context.Context, selector, domain string) (*rsa.PublicKey, error) {
	if selector == "" || domain == "" {
		return nil, errors.New("arc: no selector or domain")
	}
	txts, err := a.cfg.Resolver.LookupTXT(ctx, selector+"._domainkey."+domain)
	if err != nil {
		return nil, err
	}
	if len(txts) != 1 {
		return nil, fmt.Errorf("arc: %d key records", len(txts))
	}
	tags, err := parseTags(txts[0])
	if err != nil {
		return nil, err
	}
	if k := tags["k"]; k != "" && k != "rsa" {
		return nil, fmt.Errorf("arc: key type %q", k)
	}
	der, err := base64.StdEncoding.DecodeString(stripSpace(tags["p"]))
	if err != nil || len(der) == 0 {
		return nil, errors.New("arc: bad or revoked key")
	}
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		if k, ok := pub.(*rsa.PublicKey); ok {
			return k, nil
		}
		return nil, errors.New("arc: not an RSA key")
	}
	return x509.ParsePKCS1PublicKey(der)
}

// splitFields returns a header block's fields, raw: each with its
// continuation lines and line end.
func splitFields(hdr []byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(hdr); {
		next := len(hdr)
		if nl := bytes.IndexByte(hdr[i:], '\n'); nl >= 0 {
			next = i + nl + 1
		}
		if i > start && hdr[i] != ' ' && hdr[i] != '\t' {
			out = append(out, string(hdr[start:i]))
			start = i
		}
		i = next
	}
	if len(hdr) > start {
		out = append(out, string(hdr[start:]))
	}
	return out
}

func fieldName(f string) string {
	name, _, _ := strings.Cut(f, ":")
	return strings.TrimSpace(name)
}

func fieldValue(f string) string {
	_, v, _ := strings.Cut(f, ":")
	return v
}

// relaxedHeader is RFC 6376 section 3.4.2: the name lower case, the value
// unfolded with white space runs as one space and none at the ends.
func relaxedHeader(f string) string {
	name, value, _ := strings.Cut(f, ":")
	value = strings.NewReplacer("\r", "", "\n", "").Replace(value)
	return asciiLower(strings.TrimSpace(name)) + ":" + strings.Join(strings.FieldsFunc(value, isWSP), " ") + "\r\n"
}

func isWSP(r rune) bool { return r == ' ' || r == '\t' }

// canonicalBody is RFC 6376 sections 3.4.3 (simple) and 3.4.4 (relaxed:
// white space runs within a line as one space, none at line ends).
func canonicalBody(body []byte, relaxed bool) []byte {
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	if relaxed {
		for i, l := range lines {
			var b strings.Builder
			wsp := false
			for j := 0; j < len(l); j++ {
				if c := l[j]; c == ' ' || c == '\t' {
					wsp = true
					continue
				}
				if wsp {
					b.WriteByte(' ')
					wsp = false
				}
				b.WriteByte(l[j])
			}
			lines[i] = b.String()
		}
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		if relaxed {
			return nil
		}
		return []byte("\r\n")
	}
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// withoutSignature returns a signature field with its b= tag emptied
// (RFC 6376 section 3.7), everything else as it was.
func withoutSignature(f string) string {
	name, value, _ := strings.Cut(f, ":")
	parts := strings.Split(value, ";")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && strings.TrimSpace(k) == "b" {
			// The value and the white space around it go, a final line
			// end too: the callers drop it anyway.
			parts[i] = p[:strings.IndexByte(p, '=')+1]
		}
	}
	return name + ":" + strings.Join(parts, ";")
}

// parseTags reads a tag=value list (RFC 6376 section 3.2).
func parseTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	for part := range strings.SplitSeq(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("arc: malformed tag %q", printable(part, 40))
		}
		tags[strings.TrimSpace(k)] = strings.TrimSpace(strings.NewReplacer("\r\n", "").Replace(v))
	}
	return tags, nil
}

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}
