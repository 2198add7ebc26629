package pipeline

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// testReceived is our Received header, folded as node/smtp writes it.
const testReceived = "Received: from client.example ([192.0.2.7])\r\n\tby mx.test (mailarray) with ESMTP id T1\r\n\tfor <bob@mx.test>; Mon, 02 Jan 2006 15:04:05 +0000\r\n"

// part is one body part of a test message.
type part struct {
	ctype    string // Content-Type value
	enc      string // "base64", "quoted-printable" or "" (7bit, as is)
	filename string // Content-Disposition: attachment; filename=...
	body     []byte // the content before encoding
	children []part // for multipart/* ctype: the nested parts
}

// encodeBody encodes b for enc with the line lengths of RFC 2045 (76).
func encodeBody(t testing.TB, enc string, b []byte) []byte {
	switch enc {
	case "base64":
		s := base64.StdEncoding.EncodeToString(b)
		var out bytes.Buffer
		for len(s) > 76 {
			out.WriteString(s[:76] + "\r\n")
			s = s[76:]
		}
		out.WriteString(s)
		return out.Bytes()
	case "quoted-printable":
		var out bytes.Buffer
		w := quotedprintable.NewWriter(&out)
		_, err := w.Write(b)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		return out.Bytes()
	}
	return b
}

// writeParts writes parts as the body of a multipart with mw, recursing
// into nested multiparts, and returns nothing: mw holds the boundary.
func writeParts(t testing.TB, mw *multipart.Writer, parts []part) {
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		if len(p.children) > 0 {
			var inner bytes.Buffer
			cw := multipart.NewWriter(&inner)
			writeParts(t, cw, p.children)
			require.NoError(t, cw.Close())
			h.Set("Content-Type", p.ctype+"; boundary="+cw.Boundary())
			w, err := mw.CreatePart(h)
			require.NoError(t, err)
			_, err = w.Write(inner.Bytes())
			require.NoError(t, err)
			continue
		}
		h.Set("Content-Type", p.ctype)
		if p.enc != "" {
			h.Set("Content-Transfer-Encoding", p.enc)
		}
		if p.filename != "" {
			h.Set("Content-Disposition", `attachment; filename="`+p.filename+`"`)
		}
		w, err := mw.CreatePart(h)
		require.NoError(t, err)
		_, err = w.Write(encodeBody(t, p.enc, p.body))
		require.NoError(t, err)
	}
}

// buildMessage returns a complete message with our Received header first:
// a multipart/mixed of parts, or, with one part and no children, a
// single-part message.
func buildMessage(t testing.TB, from, subject string, parts ...part) []byte {
	var b bytes.Buffer
	b.WriteString(testReceived)
	fmt.Fprintf(&b, "From: %s\r\nTo: Bob <bob@mx.test>\r\nSubject: %s\r\nMessage-ID: <m1@example.org>\r\nMIME-Version: 1.0\r\n", from, subject)
	if len(parts) == 1 && len(parts[0].children) == 0 {
		p := parts[0]
		fmt.Fprintf(&b, "Content-Type: %s\r\n", p.ctype)
		if p.enc != "" {
			fmt.Fprintf(&b, "Content-Transfer-Encoding: %s\r\n", p.enc)
		}
		b.WriteString("\r\n")
		b.Write(encodeBody(t, p.enc, p.body))
		b.WriteString("\r\n")
		return b.Bytes()
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	writeParts(t, mw, parts)
	require.NoError(t, mw.Close())
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%s\r\n\r\nThis is a multi-part message in MIME format.\r\n", mw.Boundary())
	b.Write(body.Bytes())
	return b.Bytes()
}

// textPart is a plain text part.
func textPart(s string) part {
	return part{ctype: "text/plain; charset=utf-8", body: []byte(s)}
}

// attachment is a base64 attachment.
func attachment(name string, data []byte) part {
	return part{ctype: "application/octet-stream", enc: "base64", filename: name, body: data}
}

// mixedWithAttachment is the common case: a text part and a base64
// attachment.
func mixedWithAttachment(t testing.TB, data []byte) []byte {
	return buildMessage(t, "Alice <alice@example.org>", "report", textPart("Hello Bob,\r\nthe report is attached.\r\n"), attachment("report.bin", data))
}

// testMessage wraps data as a Message from alice to the recipients.
func testMessage(data []byte, to ...string) *Message {
	if len(to) == 0 {
		to = []string{"bob@mx.test"}
	}
	return &Message{ID: "T1", From: "alice@example.org", Helo: "client.example", To: to,
		Remote: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}, Data: data}
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// funcFilter is a Filter made of a function, for pipeline tests.
type funcFilter struct {
	name string
	fn   func(ctx context.Context, m *Message) (Verdict, error)
}

func (f funcFilter) Name() string { return f.name }
func (f funcFilter) Check(ctx context.Context, m *Message) (Verdict, error) {
	return f.fn(ctx, m)
}

// headerSection returns the header block of a message (without the empty
// line) for assertions.
func headerSection(data []byte) string {
	end, _ := headerEnd(data)
	return string(data[:end])
}

// partBounds returns where the n-th (1-based) part of the top multipart
// starts (its header) and ends (before the CRLF of the next delimiter),
// located by the test itself, independently of the walker.
func partBounds(t testing.TB, data []byte, n int) (start, end int) {
	t.Helper()
	hdr := headerSection(data)
	i := strings.Index(hdr, "boundary=")
	require.GreaterOrEqual(t, i, 0)
	boundary := strings.Fields(hdr[i+len("boundary="):])[0]
	delim := []byte("\r\n--" + boundary)
	pos := 0
	for k := 0; k < n; k++ {
		j := bytes.Index(data[pos:], delim)
		require.GreaterOrEqual(t, j, 0, "delimiter %d", k+1)
		pos += j + len(delim)
	}
	start = pos + bytes.Index(data[pos:], []byte("\r\n")) + 2
	end = start + bytes.Index(data[start:], delim)
	return start, end
}
