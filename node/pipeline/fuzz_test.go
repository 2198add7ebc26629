package pipeline

import (
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
