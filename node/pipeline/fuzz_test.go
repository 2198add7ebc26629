package pipeline

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzWalkMIME feeds arbitrary messages to the MIME walker and the
// scanner: no panic, parts located inside the message, nesting and part
// counts within their limits, decoding within its budget, and a defanged
// message that scans clean. The seed corpus runs with go test.
func FuzzWalkMIME(f *testing.F) {
	f.Add(buildMessage(f, "a@example.org", "s", textPart("plain")))
	f.Add(mixedWithAttachment(f, []byte(eicar)))
	f.Add(buildMessage(f, "a@example.org", "s", textPart("x"),
		part{ctype: "multipart/alternative", children: []part{
			{ctype: "text/plain", enc: "quoted-printable", body: []byte("caf\u00e9 " + eicar)},
			{ctype: "text/html", enc: "base64", body: []byte("<p>hi</p>")},
		}}))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Type: message/rfc822\r\n\r\n" +
		"Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n\r\n" + eicar + "\r\n--X--\r\n--X--\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n\r\n--\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\n\n--a\n--a\n--a--\n--a\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte("Content-Transfer-Encoding: base64\r\n\r\n===A=B=C=\r\n"))
	f.Add([]byte(""))

	cfg := DefaultAVConfig()
	cfg.MaxScanBytes = 1 << 20
	a, err := NewAntivirus(cfg, nil)
	require.NoError(f, err)
	const budget = 4096

	f.Fuzz(func(t *testing.T, raw []byte) {
		w := walkMIME(raw, MaxMIMEDepth, MaxMIMEParts)
		require.NotEmpty(t, w.Parts)
		require.LessOrEqual(t, len(w.Parts), MaxMIMEParts)
		decoded := int64(0)
		for _, p := range w.Parts {
			require.True(t, 0 <= p.Start && p.Start <= p.BodyStart && p.BodyStart <= p.End && p.End <= len(raw), "%+v", p)
			require.LessOrEqual(t, p.Depth, MaxMIMEDepth)
			if p.Leaf {
				body, _ := decodeBody(p.Encoding, raw[p.BodyStart:p.End], budget-decoded)
				decoded += int64(len(body))
				require.LessOrEqual(t, decoded, int64(budget))
			}
		}

		m := &Message{ID: "F", Data: raw, To: []string{"bob@mx.test"}}
		v, err := a.Check(context.Background(), m)
		require.NoError(t, err)
		if v.Action != Modify || len(raw) > 64<<10 {
			return
		}
		again, err := a.Check(context.Background(), &Message{ID: "F", Data: v.Data, To: m.To})
		require.NoError(t, err)
		require.Equal(t, Accept, again.Action, "defanged message still infected: %s", again.Reason)
	})
}

// FuzzAuthHeaders feeds arbitrary messages to the auth filter's header
// handling: removing fields claiming our authserv-id leaves none behind
// and never touches the body, and the ARC parser and the whole check
// never panic and always return a valid verdict.
func FuzzAuthHeaders(f *testing.F) {
	f.Add([]byte(testReceived + "Authentication-Results: mx.test; none\r\nFrom: a@sender.test\r\n\r\nbody\r\n"))
	f.Add([]byte("ARC-Seal: i=1; cv=none; d=list.test\r\nARC-Message-Signature: i=1; h=from; bh=; b=\r\nARC-Authentication-Results: i=1; x\r\n\r\n"))
	f.Add([]byte("Authentication-Results:\r\n (c) mx.test\r\n\r\n"))
	f.Add([]byte("ARC-Seal: i=99\r\n\n"))
	f.Add([]byte(""))
	a := newAuth(f, authWorld(newEd25519Key(f)), DMARCMark)
	a.cfg.ARCTrustedSealers = []string{"list.test"}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, n := stripAuthResults(raw, "mx.test")
		_, bodyStart := headerEnd(raw)
		require.True(t, bytes.HasSuffix(out, raw[bodyStart:]), "the body is kept")
		again, m := stripAuthResults(out, "mx.test")
		require.Zero(t, m, "nothing left to remove after %d", n)
		require.Equal(t, out, again)
		a.checkARC(context.Background(), raw)
		v, err := a.Check(context.Background(), authMessage(raw, "a@sender.test", senderIP))
		require.NoError(t, err)
		require.NoError(t, v.validate())
	})
}
