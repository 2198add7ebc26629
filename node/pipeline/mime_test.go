package pipeline

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// leafSummary is what a test asserts about a walked leaf: its path, type,
// encoding and decoded body.
type leafSummary struct {
	Path, MediaType, Encoding, Body string
}

func leaves(t *testing.T, raw []byte) []leafSummary {
	t.Helper()
	w := walkMIME(raw, MaxMIMEDepth, MaxMIMEParts)
	var out []leafSummary
	for _, p := range w.Parts {
		require.LessOrEqual(t, 0, p.Start)
		require.LessOrEqual(t, p.Start, p.BodyStart)
		require.LessOrEqual(t, p.BodyStart, p.End)
		require.LessOrEqual(t, p.End, len(raw))
		if p.Leaf {
			body, truncated := decodeBody(p.Encoding, raw[p.BodyStart:p.End], 1<<20)
			require.False(t, truncated)
			out = append(out, leafSummary{p.Path, p.MediaType, p.Encoding, string(body)})
		}
	}
	return out
}

func TestWalkMIME(t *testing.T) {
	bin := []byte("\x00\x01binary\xff attachment bytes that are long enough to wrap the base64 lines at least once or twice")
	tests := []struct {
		name string
		raw  []byte
		want []leafSummary
	}{{
		name: "single part",
		raw:  buildMessage(t, "a@example.org", "s", textPart("just text\r\n")),
		want: []leafSummary{{"", "text/plain", "", "just text\r\n\r\n"}},
	}, {
		name: "mixed text and base64",
		raw:  buildMessage(t, "a@example.org", "s", textPart("hello"), attachment("a.bin", bin)),
		want: []leafSummary{{"1", "text/plain", "", "hello"}, {"2", "application/octet-stream", "base64", string(bin)}},
	}, {
		name: "quoted-printable",
		raw: buildMessage(t, "a@example.org", "s", part{ctype: "text/plain; charset=utf-8", enc: "quoted-printable",
			body: []byte(strings.Repeat("caf\u00e9 = cr\u00e8me ", 10))}),
		want: []leafSummary{{"", "text/plain", "quoted-printable", strings.Repeat("caf\u00e9 = cr\u00e8me ", 10) + "\r\n"}},
	}, {
		name: "nested alternative",
		raw: buildMessage(t, "a@example.org", "s",
			part{ctype: "multipart/alternative", children: []part{
				{ctype: "text/plain", enc: "quoted-printable", body: []byte("plain")},
				{ctype: "text/html", enc: "quoted-printable", body: []byte("<p>html</p>")},
			}},
			attachment("b.bin", []byte("payload"))),
		want: []leafSummary{
			{"1.1", "text/plain", "quoted-printable", "plain"},
			{"1.2", "text/html", "quoted-printable", "<p>html</p>"},
			{"2", "application/octet-stream", "base64", "payload"},
		},
	}, {
		name: "message/rfc822 walked into",
		raw: []byte("Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Type: message/rfc822\r\n\r\n" +
			"Subject: inner\r\nContent-Type: multipart/mixed; boundary=Y\r\n\r\n--Y\r\nContent-Transfer-Encoding: base64\r\n\r\naW5uZXI=\r\n--Y--\r\n" +
			"\r\n--X--\r\n"),
		want: []leafSummary{{"1.1.1", "text/plain", "base64", "inner"}},
	}, {
		name: "bare LF line ends",
		raw:  []byte("Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\none\n--b\n\ntwo\n--b--\n"),
		want: []leafSummary{{"1", "text/plain", "", "one"}, {"2", "text/plain", "", "two"}},
	}, {
		name: "missing close delimiter and look-alike lines",
		raw:  []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx --b\r\n--bb\r\n--b\r\n\r\nlast"),
		want: []leafSummary{{"1", "text/plain", "", "x --b\r\n--bb"}, {"2", "text/plain", "", "last"}},
	}, {
		name: "multipart without delimiters is a leaf",
		raw:  []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\nno parts here\r\n"),
		want: []leafSummary{{"", "multipart/mixed", "", "no parts here\r\n"}},
	}, {
		name: "broken header still walks",
		raw:  []byte("Content-Type: text/plain; charset=\"unterminated\r\nno colon line\r\n\r\nbody"),
		want: []leafSummary{{"", "text/plain", "", "body"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := leaves(t, tt.raw)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestWalkMIMELimits(t *testing.T) {
	// 40 levels of nesting: walked to MaxMIMEDepth, the rest is a leaf.
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=b0\r\n\r\n")
	const levels = 40
	for i := 1; i <= levels; i++ {
		b.WriteString("--b" + strconv.Itoa(i-1) + "\r\nContent-Type: multipart/mixed; boundary=b" + strconv.Itoa(i) + "\r\n\r\n")
	}
	b.WriteString("--b" + strconv.Itoa(levels) + "\r\n\r\ndeep\r\n")
	w := walkMIME([]byte(b.String()), MaxMIMEDepth, MaxMIMEParts)
	assert.Equal(t, "depth", w.Limit)
	maxDepth := 0
	for _, p := range w.Parts {
		maxDepth = max(maxDepth, p.Depth)
	}
	assert.Equal(t, MaxMIMEDepth, maxDepth)

	// Many parts: cut at the limit.
	var m bytes.Buffer
	m.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for range 50 {
		m.WriteString("--b\r\n\r\nx\r\n")
	}
	w = walkMIME(m.Bytes(), MaxMIMEDepth, 10)
	assert.Equal(t, "parts", w.Limit)
	assert.Len(t, w.Parts, 10)
}

func TestDecodeBody(t *testing.T) {
	tests := []struct {
		name, enc, in string
		max           int64
		want          string
		truncated     bool
	}{
		{"base64 with junk and lines", "base64", "aGVs\r\nbG8g!!d29y\r\nbGQ=", 100, "hello world", false},
		{"base64 concatenated runs", "base64", "aGk=aGk=", 100, "hihi", false},
		{"base64 unpadded tail", "base64", "aGVsbG8", 100, "hello", false},
		{"base64 truncated", "base64", "aGVsbG8gd29ybGQ=", 5, "hello", true},
		{"qp soft breaks", "quoted-printable", "a=\r\nb=3Dc", 100, "ab=c", false},
		{"qp invalid escape kept as is", "quoted-printable", "ok=ZZrest", 100, "ok=ZZrest", false},
		{"identity truncated", "7bit", "abcdef", 3, "abc", true},
		{"unknown encoding is raw", "x-uuencode", "begin 644", 100, "begin 644", false},
		{"zero budget", "base64", "aGk=", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, truncated := decodeBody(tt.enc, []byte(tt.in), tt.max)
			assert.Equal(t, tt.want, string(got))
			assert.Equal(t, tt.truncated, truncated)
		})
	}
}

func TestInsertHeaders(t *testing.T) {
	tests := []struct {
		name, in string
		fields   []string
		want     string
	}{
		{"after folded Received", testReceived + "Subject: x\r\n\r\nbody", []string{"X-A: 1", "X-B: 2"},
			testReceived + "X-A: 1\r\nX-B: 2\r\nSubject: x\r\n\r\nbody"},
		{"no header section", "\r\nbody", []string{"X-A: 1"}, "X-A: 1\r\n\r\nbody"},
		{"header without line end", "Subject: x", []string{"X-A: 1"}, "Subject: x\r\nX-A: 1\r\n"},
		{"nothing to add", "Subject: x\r\n\r\n", nil, "Subject: x\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, string(InsertHeaders([]byte(tt.in), tt.fields)))
		})
	}
}

func TestCheckHeaderField(t *testing.T) {
	tests := []struct {
		field string
		ok    bool
	}{
		{"X-Spam-Flag: YES", true},
		{"X-Long: a\r\n\tb", true},
		{"X-Bad: a\r\nInjected: b", false},
		{"X-Bad: a\nb", false},
		{"no colon", false},
		{": empty name", false},
		{"Bad Name: x", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.ok, checkHeaderField(tt.field) == "", "%q", tt.field)
	}
}
