package web

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func TestParseView(t *testing.T) {
	tests := []struct {
		name        string
		msg         string
		subject     string
		from        string
		text        string
		fromHTML    bool
		attachments []string // filename (type, size)
	}{
		{
			name:    "plain",
			msg:     "From: Alice <a@example.com>\nTo: b@example.com\nSubject: Hello\nDate: Mon, 2 Mar 2026 10:00:00 +0000\n\nHi there.\n",
			subject: "Hello", from: "Alice <a@example.com>", text: "Hi there.\n",
		},
		{
			name: "encoded words and latin-1 quoted-printable",
			msg: "From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.com>\nSubject: =?UTF-8?B?w4ljb2xl?= =?windows-1252?Q?_=80?=\n" +
				"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nCaf=E9 cr=E8me=\n br=FBl=E9e\n",
			subject: "École €", from: "André <andre@example.com>", text: "Café crème brûlée\n",
		},
		{
			name: "alternative and attachment",
			msg: "From: x@example.com\nSubject: report\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=out\n\n" +
				"--out\nContent-Type: multipart/alternative; boundary=in\n\n" +
				"--in\nContent-Type: text/plain; charset=utf-8\n\nThe plain text.\n--in\nContent-Type: text/html\n\n<p>The <b>HTML</b>.</p>\n--in--\n" +
				"--out\nContent-Type: application/pdf; name=\"r.pdf\"\nContent-Disposition: attachment; filename=\"report.pdf\"\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n" +
				"--out\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0K\n--out--\n",
			subject: "report", from: "x@example.com", text: "The plain text.",
			attachments: []string{"report.pdf (application/pdf, 9)", "part-2.png (image/png, 6)"},
		},
		{
			name: "html only, with a script",
			msg: "From: x@example.com\nSubject: news\nContent-Type: text/html; charset=utf-8\n\n" +
				"<html><head><title>t</title><style>p{}</style></head><body><script>alert(1)</script><p>Tom &amp; Jerry</p><div>line&nbsp;two<br>three</div><img src=x onerror=alert(2)></body></html>",
			subject: "news", from: "x@example.com", text: "Tom & Jerry\n\nline\u00a0two\nthree", fromHTML: true,
		},
		{
			name:    "header injection stays text",
			msg:     "From: <script>alert(1)</script>\nSubject: <img src=x onerror=alert(1)>\n\n<b>not bold</b>\n",
			subject: "<img src=x onerror=alert(1)>", from: "<script>alert(1)</script>", text: "<b>not bold</b>\n",
		},
	}
	for _, tc := range tests {
		v := ParseView("id1", crlf(tc.msg))
		assert.Equal(t, tc.subject, v.Subject, tc.name)
		assert.Equal(t, tc.from, v.From, tc.name)
		assert.Equal(t, strings.TrimSpace(tc.text), strings.TrimSpace(v.Text), tc.name)
		assert.Equal(t, tc.fromHTML, v.FromHTML, tc.name)
		var got []string
		for _, a := range v.Attachments {
			got = append(got, a.Filename+" ("+a.ContentType+", "+strconv.Itoa(a.Size)+")")
		}
		assert.Equal(t, tc.attachments, got, tc.name)
		assert.Empty(t, v.Problems, tc.name)
	}
}

func TestParseViewLimits(t *testing.T) {
	// Nesting deeper than MaxMIMEDepth is cut, with a problem noted.
	var b strings.Builder
	b.WriteString("Subject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n")
	for i := 0; i < MaxMIMEDepth+2; i++ {
		b.WriteString("--b" + strconv.Itoa(i) + "\nContent-Type: multipart/mixed; boundary=b" + strconv.Itoa(i+1) + "\n\n")
	}
	b.WriteString("--b" + strconv.Itoa(MaxMIMEDepth+2) + "\n\ntoo deep\n")
	for i := MaxMIMEDepth + 2; i >= 0; i-- {
		b.WriteString("--b" + strconv.Itoa(i) + "--\n")
	}
	v := ParseView("deep", crlf(b.String()))
	require.Len(t, v.Problems, 1, "%q", v.Problems)
	assert.Contains(t, v.Problems[0], "nested deeper")
	assert.Empty(t, v.Text)

	// Text beyond MaxTextBytes is cut at a character boundary.
	long := "Subject: long\nContent-Type: text/plain; charset=utf-8\n\n" + strings.Repeat("é", MaxTextBytes)
	v = ParseView("long", crlf(long))
	assert.True(t, v.TextTruncated)
	assert.LessOrEqual(t, len(v.Text), MaxTextBytes)
	assert.True(t, strings.HasSuffix(v.Text, "é"), "cut between characters")

	// Many text parts: the text stops growing once it is past what is
	// shown, rather than being copied again for every part (the square of
	// the message's size: ~500 MB for this 10 MB message).
	var many strings.Builder
	many.WriteString("Subject: parts\nContent-Type: multipart/mixed; boundary=p\n\n")
	for range MaxMIMEParts {
		many.WriteString("--p\nContent-Type: text/plain\n\n" + strings.Repeat("x", 100<<10) + "\n")
	}
	many.WriteString("--p--\n")
	msg := crlf(many.String())
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	v = ParseView("parts", msg)
	runtime.ReadMemStats(&after)
	assert.True(t, v.TextTruncated)
	assert.Len(t, v.Text, MaxTextBytes)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(10*len(msg)), "bytes allocated to parse a %d-byte message", len(msg))

	// Not a message at all: shown as text, with the problem.
	v = ParseView("junk", []byte("\x00\x01 no header here"))
	assert.NotEmpty(t, v.Problems)

	// A broken base64 attachment is listed with what decoded.
	broken := "Subject: b\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nhi\n--x\nContent-Type: application/zip\nContent-Disposition: attachment; filename=a.zip\nContent-Transfer-Encoding: base64\n\nUEsDB!!!\n--x--\n"
	v = ParseView("b", crlf(broken))
	require.Len(t, v.Attachments, 1)
	assert.Equal(t, "a.zip", v.Attachments[0].Filename)
	assert.NotEmpty(t, v.Problems)
}

func TestParseSummary(t *testing.T) {
	recv := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := ParseSummary("x", crlf("From: =?utf-8?q?J=C3=BCrgen?= <j@example.com>\nSubject: Hi\n\tthere\nDate: Tue, 3 Mar 2026 11:00:00 +0100\n\nbody\n"), 42, recv)
	assert.Equal(t, "Jürgen", s.From)
	assert.Equal(t, "Hi there", s.Subject, "folded header unfolded")
	assert.True(t, s.Date.Equal(time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)))
	s = ParseSummary("y", crlf("Subject: no date\n\nbody\n"), 42, recv)
	assert.True(t, s.Date.Equal(recv), "no Date: the time received")
}

func FuzzParseView(f *testing.F) {
	f.Add([]byte("Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nhi\r\n--b--\r\n"))
	f.Add([]byte("From: =?utf-8?b?w6k=?=\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v := ParseView("f", data)
		if len(v.Text) > MaxTextBytes {
			t.Fatalf("text of %d bytes", len(v.Text))
		}
		for _, a := range v.Attachments {
			if a.Filename == "" {
				t.Fatal("attachment without a name")
			}
		}
	})
}
