package pipeline

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestVerifySignatureAgainstDKIM checks the ARC code's canonicalization
// and signature checking on go-msgauth's DKIM signatures, an independent
// implementation of the same RFC 6376 algorithm: both canonicalizations,
// a body with trailing blank lines and runs of white space.
func TestVerifySignatureAgainstDKIM(t *testing.T) {
	key := newRSAKey(t)
	r := authWorld(key)
	a := newAuth(t, r, DMARCMark)
	raw := []byte("From: Alice <alice@sender.test>\r\nTo:  bob@mx.test \r\nSubject: a\r\n  folded  subject\r\n\r\n  Line \t with  space  \r\n\r\nend\r\n\r\n\r\n")
	for _, c := range []dkim.Canonicalization{dkim.CanonicalizationSimple, dkim.CanonicalizationRelaxed} {
		t.Run(string(c), func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, dkim.Sign(&out, bytes.NewReader(raw), &dkim.SignOptions{Domain: "sender.test", Selector: "sel", Signer: key.signer,
				HeaderCanonicalization: c, BodyCanonicalization: c, HeaderKeys: []string{"From", "To", "Subject"}}))
			signed := received(out.Bytes())
			verify := func(data []byte) error {
				hdrEnd, bodyStart := headerEnd(data)
				fields := splitFields(data[:hdrEnd])
				require.True(t, strings.HasPrefix(fields[1], "DKIM-Signature:"), fields[1])
				return a.verifySignature(context.Background(), fields, fields[1], data[bodyStart:], false)
			}
			require.NoError(t, verify(signed))
			assert.ErrorContains(t, verify(bytes.Replace(signed, []byte("\r\nend\r\n"), []byte("\r\nEnd\r\n"), 1)), "body hash")
			assert.Error(t, verify(bytes.Replace(signed, []byte("Subject: a"), []byte("Subject: b"), 1)), "a signed field changed")
		})
	}
}

// arcSeal adds ARC set i to msg as a forwarder sealing with domain's key
// (selector "arc") would: ARC-Authentication-Results, an
// ARC-Message-Signature over the author fields and the body, and an
// ARC-Seal with chain validation cv over every set.
func arcSeal(t testing.TB, msg []byte, i int, domain string, key *rsa.PrivateKey, cv string) []byte {
	t.Helper()
	hdrEnd, bodyStart := headerEnd(msg)
	fields := splitFields(msg[:hdrEnd])
	sign := func(h []byte) string {
		sum := sha256.Sum256(h)
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
		require.NoError(t, err)
		return base64.StdEncoding.EncodeToString(sig)
	}
	aar := fmt.Sprintf("ARC-Authentication-Results: i=%d; %s; dkim=pass header.d=sender.test\r\n", i, domain)
	bh := sha256.Sum256(canonicalBody(msg[bodyStart:], true))
	ams := fmt.Sprintf("ARC-Message-Signature: i=%d; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=arc;\r\n\th=from:to:subject:date:message-id; bh=%s; b=", i, domain, base64.StdEncoding.EncodeToString(bh[:]))
	var h bytes.Buffer
	used := map[int]bool{}
	for _, name := range []string{"from", "to", "subject", "date", "message-id"} {
		for j := len(fields) - 1; j >= 0; j-- {
			if !used[j] && strings.EqualFold(fieldName(fields[j]), name) {
				used[j] = true
				h.WriteString(relaxedHeader(fields[j]))
				break
			}
		}
	}
	h.WriteString(strings.TrimSuffix(relaxedHeader(ams), "\r\n"))
	ams += sign(h.Bytes()) + "\r\n"

	prev, err := arcSets(fields)
	require.NoError(t, err)
	seal := fmt.Sprintf("ARC-Seal: i=%d; a=rsa-sha256; cv=%s; d=%s; s=arc; b=", i, cv, domain)
	h.Reset()
	for _, s := range prev {
		h.WriteString(relaxedHeader(s.aar) + relaxedHeader(s.ams) + relaxedHeader(s.seal))
	}
	h.WriteString(relaxedHeader(aar) + relaxedHeader(ams) + strings.TrimSuffix(relaxedHeader(seal), "\r\n"))
	seal += sign(h.Bytes()) + "\r\n"
	return append([]byte(seal+ams+aar), msg...)
}

// TestAuthARC: a mailing list (list.test) rewrites the subject and adds a
// footer to a DKIM-signed message from sender.test (p=reject), then seals
// it; at the array SPF passes only for list.test, unaligned, and the
// author signature fails, so DMARC fails. A valid chain from a trusted
// sealer keeps the configured reject to a mark.
func TestAuthARC(t *testing.T) {
	author := newEd25519Key(t)
	listKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	listPub := newRSARecord(t, &listKey.PublicKey)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)

	signed := dkimSign(t, rawMessage("alice@sender.test", "Figures attached.\r\n"), "sender.test", author)
	forwarded := bytes.Replace(signed, []byte("Subject: quarterly report"), []byte("Subject: [team] quarterly report"), 1)
	forwarded = append(forwarded, []byte("--\r\nteam mailing list\r\n")...)
	oneHop := arcSeal(t, forwarded, 1, "list.test", listKey, "none")
	twoHops := arcSeal(t, oneHop, 2, "relay.test", listKey, "pass")

	tests := []struct {
		name    string
		data    []byte
		trusted []string
		want    Action
		arc     string // the arc result (in the field, or the reason of a reject)
	}{
		{"trusted sealer: marked, not rejected", oneHop, []string{"list.test"}, Accept, "arc=pass header.d=list.test"},
		{"two hops, newest trusted", twoHops, []string{"relay.test"}, Accept, "arc=pass header.d=relay.test"},
		{"valid chain, untrusted sealer: rejected", oneHop, []string{"other.test"}, Reject, "arc=pass"},
		{"altered after sealing: rejected", bytes.Replace(oneHop, []byte("team mailing list"), []byte("team mailing lisp"), 1), []string{"list.test"}, Reject, "arc=fail"},
		{"seal by another key: rejected", arcSeal(t, forwarded, 1, "list.test", otherKey, "none"), []string{"list.test"}, Reject, "arc=fail"},
		{"first seal claiming cv=pass: rejected", arcSeal(t, forwarded, 1, "list.test", listKey, "pass"), []string{"list.test"}, Reject, "arc=fail"},
		{"no chain: rejected", forwarded, []string{"list.test"}, Reject, "arc=none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := authWorld(author)
			r.txt["list.test"] = []string{"v=spf1 ip4:198.51.100.9 -all"}
			r.txt["arc._domainkey.list.test"] = []string{listPub}
			r.txt["arc._domainkey.relay.test"] = []string{listPub}
			cfg := DefaultAuthConfig()
			cfg.AuthservID, cfg.Resolver, cfg.DMARCPolicy = "mx.test", r, DMARCReject
			cfg.ARCTrustedSealers = tt.trusted
			a, err := NewAuth(cfg, nil)
			require.NoError(t, err)
			v := check(t, a, authMessage(received(tt.data), "team-bounces@list.test", otherIP))
			require.Equal(t, tt.want, v.Action, v.Reason)
			if tt.want == Accept {
				field := authHeader(t, v)
				assert.Contains(t, field, "spf=pass smtp.mailfrom=team-bounces@list.test;\r\n\tdkim=fail header.d=sender.test")
				assert.Contains(t, field, "dmarc=fail header.from=sender.test policy.dmarc=reject;\r\n\t"+tt.arc)
				assert.Contains(t, v.Reason, "dmarc reject waived: trusted ARC sealer")
			} else {
				assert.Contains(t, v.Reason, "dmarc=fail "+tt.arc+";", "rejected for the chain's reason")
			}
		})
	}
}

func newRSARecord(t testing.TB, pub *rsa.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
}
