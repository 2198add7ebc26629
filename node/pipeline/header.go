package pipeline

import (
	"bufio"
	"bytes"
	"mime"
	"net/mail"
	"net/textproto"
	"strings"
)

// InsertHeaders returns data with fields inserted after its first header
// field, which in the pipeline is our Received header (RFC 5321 section
// 4.4: trace fields are prepended, so what we add sits just below our own
// trace and above everything the sender wrote). Each field gets a CRLF. With
// no fields, data itself is returned. A message without a header section
// (starting with an empty line) gets the fields at its start.
func InsertHeaders(data []byte, fields []string) []byte {
	if len(fields) == 0 {
		return data
	}
	at := firstFieldEnd(data)
	n := len(data)
	for _, f := range fields {
		n += len(f) + 2
	}
	out := make([]byte, 0, n+2)
	out = append(out, data[:at]...)
	if at > 0 && data[at-1] != '\n' {
		out = append(out, '\r', '\n') // a header that ended without a line end
	}
	for _, f := range fields {
		out = append(out, f...)
		out = append(out, '\r', '\n')
	}
	return append(out, data[at:]...)
}

// firstFieldEnd returns the offset just after the first header field of
// data, continuation lines included (RFC 5322 section 2.2.3), or 0 when data
// starts with the empty line that ends the header.
func firstFieldEnd(data []byte) int {
	if len(data) == 0 || data[0] == '\n' || bytes.HasPrefix(data, []byte("\r\n")) {
		return 0
	}
	i := 0
	for {
		nl := bytes.IndexByte(data[i:], '\n')
		if nl < 0 {
			return len(data)
		}
		i += nl + 1
		if i >= len(data) || (data[i] != ' ' && data[i] != '\t') {
			return i
		}
	}
}

// checkHeaderField checks "Name: value" (RFC 5322 section 2.2): a name of
// printable ASCII without ':', and a value whose only line breaks are CRLF
// followed by white space (folding). It returns "" when f is acceptable.
func checkHeaderField(f string) string {
	if len(f) > MaxHeaderFieldBytes {
		return "too long"
	}
	name, value, ok := strings.Cut(f, ":")
	if !ok || name == "" {
		return "want Name: value"
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 {
			return "bad character in name"
		}
	}
	lineLen := len(name) + 1
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '\r':
			if i+2 >= len(value) || value[i+1] != '\n' || (value[i+2] != ' ' && value[i+2] != '\t') {
				return "line break that is not folding"
			}
			i++
			lineLen = 0
		case '\n', 0:
			return "bare LF or NUL"
		default:
			lineLen++
			if lineLen > 998 {
				return "line longer than 998 characters"
			}
		}
	}
	return ""
}

// headerEnd returns where the header section of raw ends (just after the
// last field's line end) and where the body starts (after the empty line).
// Both are len(raw) when there is no empty line: all header, no body. Bare
// LF line ends are accepted so that fuzzed and foreign input parses too.
func headerEnd(raw []byte) (hdrEnd, bodyStart int) {
	if bytes.HasPrefix(raw, []byte("\r\n")) {
		return 0, 2
	}
	if len(raw) > 0 && raw[0] == '\n' {
		return 0, 1
	}
	i := 0
	for i < len(raw) {
		nl := bytes.IndexByte(raw[i:], '\n')
		if nl < 0 {
			break
		}
		i += nl + 1
		switch {
		case bytes.HasPrefix(raw[i:], []byte("\r\n")):
			return i, i + 2
		case i < len(raw) && raw[i] == '\n':
			return i, i + 1
		}
	}
	return len(raw), len(raw)
}

// parseHeader parses a header block (without the empty line). Malformed
// fields end the parse; what was read before them is kept, since a scanner
// must look at broken mail too.
func parseHeader(hdr []byte) textproto.MIMEHeader {
	if len(hdr) > MaxPartHeaderBytes {
		hdr = hdr[:MaxPartHeaderBytes]
	}
	// The block is in memory: a reader as large as the block reads it at
	// once, where the default 4 KiB buffer was most of the allocation.
	block := headerBlockReader(hdr)
	r := textproto.NewReader(bufio.NewReaderSize(block, block.Len()))
	h, _ := r.ReadMIMEHeader()
	if h == nil {
		h = textproto.MIMEHeader{}
	}
	return h
}

// headerBlockReader returns hdr followed by the empty line ReadMIMEHeader needs to stop.
func headerBlockReader(hdr []byte) *bytes.Reader {
	b := make([]byte, 0, len(hdr)+4)
	b = append(b, hdr...)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\r', '\n')
	}
	b = append(b, '\r', '\n')
	return bytes.NewReader(b)
}

// messageHeader parses the top-level header of a message.
func messageHeader(data []byte) textproto.MIMEHeader {
	end, _ := headerEnd(data)
	return parseHeader(data[:end])
}

// domainOf returns the lower-case domain of an address ("" when there is
// none), without a trailing dot or surrounding brackets.
func domainOf(addr string) string {
	addr = strings.TrimSpace(addr)
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return asciiLower(strings.TrimSuffix(addr[at+1:], "."))
}

// asciiLower lowers ASCII letters only: strings.ToLower would fold U+212A
// KELVIN SIGN to 'k' and let a non-ASCII name pass for a listed one.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// headerFromDomains returns the domains of the From field's addresses (RFC
// 5322 section 3.6.2), distinct, in order. An unparsable field falls back
// to the text after its last '@', so a malformed From cannot hide a domain.
func headerFromDomains(h textproto.MIMEHeader) []string {
	var out []string
	add := func(d string) {
		if d != "" && validDomain(d) {
			for _, o := range out {
				if o == d {
					return
				}
			}
			out = append(out, d)
		}
	}
	for _, v := range h.Values("From") {
		list, err := mail.ParseAddressList(v)
		if err == nil {
			for _, a := range list {
				add(domainOf(a.Address))
			}
			continue
		}
		at := strings.LastIndexByte(v, '@')
		if at < 0 {
			continue
		}
		rest := v[at+1:]
		end := strings.IndexFunc(rest, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.')
		})
		if end >= 0 {
			rest = rest[:end]
		}
		add(asciiLower(strings.TrimSuffix(rest, ".")))
	}
	return out
}

// decodeWords decodes RFC 2047 encoded words for display; on failure the
// text is kept as it is.
func decodeWords(s string) string {
	var d mime.WordDecoder
	if out, err := d.DecodeHeader(s); err == nil {
		return out
	}
	return s
}

// validDomain accepts LDH labels of 1 to 63 characters separated by single
// dots, 253 characters at most (RFC 1035 section 2.3.4, RFC 1123 section
// 2.1), lower case.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
