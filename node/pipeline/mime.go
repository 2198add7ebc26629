package pipeline

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"strconv"
	"strings"
)

// Limits of the MIME walker. Each bounds what one crafted message can make
// the scanner do.
const (
	// MaxMIMEDepth bounds nesting (multipart in multipart, or a
	// message/rfc822 part). Real mail rarely nests past 5 levels; a part
	// deeper than this is scanned as one opaque leaf (its raw bytes still
	// go through the raw scan) and the walk reports the limit.
	MaxMIMEDepth = 16
	// MaxMIMEParts bounds the parts walked in one message; parts beyond it
	// are not decoded, and the walk reports the limit.
	MaxMIMEParts = 1000
	// MaxPartHeaderBytes bounds the header block of one part that is
	// parsed; the rest of a longer header is ignored.
	MaxPartHeaderBytes = 64 << 10
	// DefaultMaxScanBytes bounds, by default, both the prefix of the raw
	// message that is scanned and the total of decoded part bytes scanned
	// (AVConfig.MaxScanBytes). The SMTP listener accepts 25 MiB messages;
	// their decoded parts are smaller than that.
	DefaultMaxScanBytes = 32 << 20
)

// mimePart is one part of a message located in its raw bytes. Offsets are
// into the message: the header block is raw[Start:BodyStart] (with the
// empty line), the body raw[BodyStart:End]. The line break before a
// boundary delimiter belongs to the delimiter (RFC 2046 section 5.1.1), so
// it is not part of End.
type mimePart struct {
	// Path numbers the part like IMAP does (RFC 3501 section 6.4.5): ""
	// for the whole message, "1", "2", "2.1", ...
	Path      string
	Depth     int
	Start     int
	BodyStart int
	End       int
	MediaType string // lower case, "text/plain" by default (RFC 2045 section 5.2)
	Boundary  string
	Encoding  string // lower case Content-Transfer-Encoding, "" when absent
	Filename  string // from Content-Disposition or Content-Type's name, for reasons
	// Leaf parts have a body of their own to decode and scan; the others
	// are multiparts or message/rfc822 containers walked into.
	Leaf bool
}

// describe names the part for reasons and notices.
func (p *mimePart) describe() string {
	s := "part " + p.Path
	if p.Path == "" {
		s = "message body"
	}
	if p.Filename != "" {
		s += " (" + strconv.Quote(p.Filename) + ")"
	}
	return s
}

// walkResult is the outcome of walkMIME.
type walkResult struct {
	Parts []mimePart // in document order, containers before their children
	// Limit names the limit that cut the walk ("depth", "parts"), or "".
	Limit string
}

// walkMIME locates every part of raw, following nested multiparts and
// message/rfc822 parts up to maxDepth levels and maxParts parts. It works on
// the raw bytes so that a part can later be replaced in place; it never
// fails: what cannot be parsed is a leaf. Its work is bounded by
// maxDepth * len(raw) byte comparisons.
func walkMIME(raw []byte, maxDepth, maxParts int) walkResult {
	w := walker{raw: raw, maxDepth: maxDepth, maxParts: maxParts}
	w.part(0, len(raw), 0, "")
	return w.out
}

type walker struct {
	raw                []byte
	maxDepth, maxParts int
	out                walkResult
}

func (w *walker) limit(name string) {
	if w.out.Limit == "" {
		w.out.Limit = name
	}
}

func childPath(parent string, n int) string {
	if parent == "" {
		return strconv.Itoa(n)
	}
	return parent + "." + strconv.Itoa(n)
}

func (w *walker) part(start, end, depth int, path string) {
	if len(w.out.Parts) >= w.maxParts {
		w.limit("parts")
		return
	}
	hdrEnd, bodyStart := headerEnd(w.raw[start:end])
	hdrEnd += start
	bodyStart += start
	h := parseHeader(w.raw[start:hdrEnd])
	p := mimePart{Path: path, Depth: depth, Start: start, BodyStart: bodyStart, End: end, MediaType: "text/plain", Leaf: true}
	var ctParams map[string]string
	if ct := h.Get("Content-Type"); ct != "" {
		// ParseMediaType returns the media type even when a parameter is
		// broken (ErrInvalidMediaParameter); keep whatever it gives.
		mt, params, err := mime.ParseMediaType(ct)
		if mt != "" && (err == nil || errors.Is(err, mime.ErrInvalidMediaParameter)) {
			p.MediaType, ctParams = mt, params
		}
	}
	p.Encoding = strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	if _, params, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil && params["filename"] != "" {
		p.Filename = params["filename"]
	} else if ctParams["name"] != "" {
		p.Filename = ctParams["name"]
	}
	p.Filename = printable(decodeWords(p.Filename), 128)
	idx := len(w.out.Parts)
	identity := p.Encoding == "" || p.Encoding == "7bit" || p.Encoding == "8bit" || p.Encoding == "binary"
	switch {
	case strings.HasPrefix(p.MediaType, "multipart/") && ctParams["boundary"] != "" && identity:
		if depth >= w.maxDepth {
			w.limit("depth")
			break
		}
		p.Boundary = ctParams["boundary"]
		p.Leaf = false
		w.out.Parts = append(w.out.Parts, p)
		if w.multipart(p.Boundary, bodyStart, end, depth, path) == 0 {
			// No delimiter at all: scan the body as it is.
			w.out.Parts[idx].Leaf = true
		}
		return
	case p.MediaType == "message/rfc822" && identity && bodyStart < end:
		// RFC 2046 section 5.2.1: the body is a whole message; encoded
		// forms are not allowed, so an encoded one is scanned as a leaf.
		if depth >= w.maxDepth {
			w.limit("depth")
			break
		}
		p.Leaf = false
		w.out.Parts = append(w.out.Parts, p)
		w.part(bodyStart, end, depth+1, childPath(path, 1))
		return
	}
	w.out.Parts = append(w.out.Parts, p)
}

// multipart walks the body parts between boundary delimiters in
// raw[bodyStart:end] (RFC 2046 section 5.1.1): a delimiter is "--" boundary
// at the start of a line, followed only by linear white space; the close
// delimiter adds "--". Preamble and epilogue are not parts. A missing close
// delimiter ends the last part at end. It returns the number of
// delimiters found.
func (w *walker) multipart(boundary string, bodyStart, end, depth int, path string) int {
	delim := []byte("--" + boundary)
	raw := w.raw
	pos, partStart, n, found := bodyStart, -1, 0, 0
	for pos < end {
		i := bytes.Index(raw[pos:end], delim)
		if i < 0 {
			break
		}
		at := pos + i
		if at != bodyStart && raw[at-1] != '\n' {
			pos = at + 1
			continue
		}
		after := at + len(delim)
		closing := after+2 <= end && raw[after] == '-' && raw[after+1] == '-'
		if closing {
			after += 2
		}
		lineEnd, next := after, end
		if nl := bytes.IndexByte(raw[after:end], '\n'); nl >= 0 {
			lineEnd, next = after+nl, after+nl+1
		} else {
			lineEnd = end
		}
		if !onlyLWSP(raw[after:lineEnd]) {
			pos = at + 1
			continue
		}
		found++
		if partStart >= 0 {
			pe := at
			if pe > partStart && raw[pe-1] == '\n' {
				pe--
				if pe > partStart && raw[pe-1] == '\r' {
					pe--
				}
			}
			n++
			w.part(partStart, pe, depth+1, childPath(path, n))
		}
		if closing {
			return found
		}
		partStart, pos = next, next
	}
	if partStart >= 0 {
		n++
		w.part(partStart, end, depth+1, childPath(path, n))
	}
	return found
}

func onlyLWSP(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// decodeBody returns the part's body decoded from its transfer encoding
// (RFC 2045 section 6), at most max bytes of it; truncated says there was
// more. Decoding is lenient, as mail readers are: base64 skips characters
// outside its alphabet and restarts after padding; quoted-printable keeps
// an invalid escape as it is (RFC 2045 section 6.7, note 1) and what
// decoded before a read error (the raw scan still sees the rest).
func decodeBody(enc string, body []byte, max int64) (out []byte, truncated bool) {
	if max <= 0 {
		return nil, len(body) > 0
	}
	switch enc {
	case "base64":
		return decodeBase64(body, max)
	case "quoted-printable":
		r := io.LimitReader(quotedprintable.NewReader(bytes.NewReader(body)), max+1)
		out, _ = io.ReadAll(r)
		if int64(len(out)) > max {
			return out[:max], true
		}
		return out, false
	default:
		if int64(len(body)) > max {
			return body[:max], true
		}
		return body, false
	}
}

// decodeBase64 decodes RFC 2045 section 6.8 base64, skipping characters
// outside the alphabet, as the RFC asks, and decoding each padded run on
// its own, so that concatenated encodings decode too.
func decodeBase64(body []byte, max int64) ([]byte, bool) {
	out := make([]byte, 0, min(int64(len(body))*3/4+3, max+3))
	run := make([]byte, 0, min(int64(len(body)), max*4/3+8))
	// flush decodes the run collected so far; a lone sixth of a byte
	// (one character past a quantum) decodes to nothing.
	flush := func() {
		if len(run)%4 == 1 {
			run = run[:len(run)-1]
		}
		n := base64.RawStdEncoding.DecodedLen(len(run))
		k, _ := base64.RawStdEncoding.Decode(out[len(out):len(out)+n:len(out)+n], run)
		out = out[:len(out)+k]
		run = run[:0]
	}
	grow := func() {
		if need := len(out) + len(run)*3/4 + 3; need > cap(out) {
			out = append(out[:cap(out)], make([]byte, need-cap(out))...)[:len(out)]
		}
	}
scan:
	for _, c := range body {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			run = append(run, c)
			if int64(len(out)+len(run)*3/4) > max {
				break scan // more than max decodes already
			}
		case c == '=':
			grow()
			flush()
		}
	}
	grow()
	flush()
	if int64(len(out)) > max {
		return out[:max], true
	}
	return out, false
}

// printable keeps printable ASCII of s, at most max bytes, for reasons and
// header values built from message content.
func printable(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}
