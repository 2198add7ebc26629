package web

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding/htmlindex"
)

// Limits of the parser: a message is untrusted input.
const (
	// MaxMIMEDepth bounds nested multiparts.
	MaxMIMEDepth = 10
	// MaxMIMEParts bounds the leaf parts looked at.
	MaxMIMEParts = 100
	// MaxTextBytes bounds the text shown of one message; the raw message
	// can still be downloaded whole.
	MaxTextBytes = 1 << 20
	// maxHeaderChars bounds one displayed header value.
	maxHeaderChars = 2000
)

// Summary is a message as the list shows it.
type Summary struct {
	ID       string    `json:"id"`
	From     string    `json:"from"`
	Subject  string    `json:"subject"`
	Date     time.Time `json:"date"` // the Date field, or the time received when it has none
	Received time.Time `json:"received"`
	Size     int64     `json:"size"`
}

// View is a message taken apart for reading: header fields decoded to
// UTF-8, the text body, and the attachments. Every string is text to show
// as text, never markup.
type View struct {
	ID        string `json:"id"`
	From      string `json:"from"`
	To        string `json:"to"`
	Cc        string `json:"cc,omitempty"`
	Subject   string `json:"subject"`
	Date      string `json:"date"`
	MessageID string `json:"message_id,omitempty"`
	Size      int64  `json:"size"`
	// Text is the first inline text/plain part, or failing that the
	// first text/html part reduced to text (FromHTML).
	Text          string       `json:"text"`
	FromHTML      bool         `json:"from_html,omitempty"`
	TextTruncated bool         `json:"text_truncated,omitempty"`
	Attachments   []Attachment `json:"attachments"`
	// Problems says what could not be parsed (shown, never fatal).
	Problems []string `json:"problems,omitempty"`
}

// Attachment is one downloadable part.
type Attachment struct {
	Index       int    `json:"index"`
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        int    `json:"size"` // decoded bytes
	data        []byte
}

// wordDecoder decodes RFC 2047 encoded words in any charset the WHATWG
// encoding index knows (what browsers and mail readers accept).
var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, fmt.Errorf("web: unknown charset %q", charset)
	}
	return enc.NewDecoder().Reader(input), nil
}

// decodeHeader decodes encoded words, replaces invalid UTF-8 and control
// characters, and bounds the length.
func decodeHeader(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		s = d
	}
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\r' || r == '\n' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	s = strings.TrimSpace(s)
	if len(s) > maxHeaderChars {
		s = truncateUTF8(s, maxHeaderChars) + "…"
	}
	return s
}

// senderName is how the list names a sender: the display name, or the
// address when there is none; the field as it is when it does not parse.
func senderName(from string) string {
	as, err := (&mail.AddressParser{WordDecoder: wordDecoder}).ParseList(from)
	if err != nil || len(as) == 0 {
		return decodeHeader(from)
	}
	names := make([]string, len(as))
	for i, a := range as {
		names[i] = a.Name
		if names[i] == "" {
			names[i] = a.Address
		}
	}
	return decodeHeader(strings.Join(names, ", "))
}

// ParseSummary reads the header fields the list shows.
func ParseSummary(id string, data []byte, size int64, received time.Time) Summary {
	s := Summary{ID: id, Size: size, Received: received, Date: received}
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		s.Subject = "(unreadable header)"
		return s
	}
	s.From = senderName(m.Header.Get("From"))
	s.Subject = decodeHeader(m.Header.Get("Subject"))
	if d, err := m.Header.Date(); err == nil {
		s.Date = d
	}
	return s
}

// ParseView takes a whole message apart for reading.
func ParseView(id string, data []byte) View {
	v := View{ID: id, Size: int64(len(data)), Attachments: []Attachment{}}
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		v.Problems = append(v.Problems, "header: "+err.Error())
		v.Text = strings.ToValidUTF8(string(data[:min(len(data), MaxTextBytes)]), "\uFFFD")
		v.TextTruncated = len(data) > MaxTextBytes
		return v
	}
	h := m.Header
	v.From, v.To, v.Cc = decodeHeader(h.Get("From")), decodeHeader(h.Get("To")), decodeHeader(h.Get("Cc"))
	v.Subject, v.Date, v.MessageID = decodeHeader(h.Get("Subject")), decodeHeader(h.Get("Date")), decodeHeader(h.Get("Message-Id"))
	body, _ := io.ReadAll(m.Body)
	w := &walker{v: &v}
	w.part(textproto.MIMEHeader(h), body, 0)
	switch {
	case w.plain != nil:
		v.Text = *w.plain
	case w.html != nil:
		v.Text, v.FromHTML = htmlToText(*w.html), true
	}
	if len(v.Text) > MaxTextBytes {
		v.Text, v.TextTruncated = truncateUTF8(v.Text, MaxTextBytes), true
	}
	return v
}

// walker visits the MIME tree depth first, in order.
type walker struct {
	v           *View
	leaves      int
	plain, html *string
}

func (w *walker) problem(f string, a ...any) {
	if len(w.v.Problems) < 10 {
		w.v.Problems = append(w.v.Problems, fmt.Sprintf(f, a...))
	}
}

func (w *walker) part(h textproto.MIMEHeader, body []byte, depth int) {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		mt, params = "text/plain", map[string]string{} // RFC 2045 section 5.2
	}
	if strings.HasPrefix(mt, "multipart/") {
		if depth >= MaxMIMEDepth {
			w.problem("parts nested deeper than %d not shown", MaxMIMEDepth)
			return
		}
		if params["boundary"] == "" {
			w.problem("%s without a boundary", mt)
			return
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := mr.NextRawPart() // raw: we decode the transfer encoding ourselves, for every part alike
			if err == io.EOF {
				return
			}
			if err != nil {
				w.problem("%s: %v", mt, err)
				return
			}
			b, err := io.ReadAll(p)
			if err != nil {
				// A cut message: show what arrived of the part.
				w.problem("%s: %v", mt, err)
				w.part(p.Header, b, depth+1)
				return
			}
			w.part(p.Header, b, depth+1)
		}
	}
	if w.leaves == MaxMIMEParts {
		w.problem("more than %d parts: the rest are not shown", MaxMIMEParts)
		w.leaves++
		return
	}
	if w.leaves > MaxMIMEParts {
		return
	}
	w.leaves++
	data, err := decodeTransfer(h.Get("Content-Transfer-Encoding"), body)
	if err != nil {
		w.problem("part %d: %v", w.leaves, err)
	}
	disp, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	name := decodeHeader(dparams["filename"])
	if name == "" {
		name = decodeHeader(params["name"])
	}
	inline := disp != "attachment" && name == ""
	switch {
	case inline && mt == "text/plain":
		if w.plain != nil && len(*w.plain) > MaxTextBytes {
			// Already more than is shown: copying the text again for every
			// further part would cost the square of the message's size.
			return
		}
		s := toUTF8(params["charset"], data)
		if w.plain != nil {
			s = *w.plain + "\n\n" + s // a list footer, say: shown after the text
		}
		w.plain = &s
		return
	case inline && mt == "text/html":
		// Shown (as text) only when there is no text/plain part; later
		// ones are alternatives or related parts of the first.
		if w.html == nil {
			s := toUTF8(params["charset"], data)
			w.html = &s
		}
		return
	}
	if name == "" {
		name = fmt.Sprintf("part-%d%s", len(w.v.Attachments)+1, extension(mt))
	}
	w.v.Attachments = append(w.v.Attachments, Attachment{Index: len(w.v.Attachments), Filename: name, ContentType: mt, Size: len(data), data: data})
}

// decodeTransfer undoes a Content-Transfer-Encoding (RFC 2045 section 6).
// Damaged encodings yield what could be decoded and an error.
func decodeTransfer(cte string, body []byte) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, body)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(out, clean)
		if err != nil {
			return out[:n], fmt.Errorf("base64: %w", err)
		}
		return out[:n], nil
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return out, fmt.Errorf("quoted-printable: %w", err)
		}
		return out, nil
	}
	return body, nil
}

// toUTF8 decodes text in charset (us-ascii when unset, RFC 2045 section
// 5.2); unknown charsets and invalid bytes become U+FFFD.
func toUTF8(charset string, b []byte) string {
	cs := strings.ToLower(strings.TrimSpace(charset))
	if cs != "" && cs != "utf-8" && cs != "us-ascii" && cs != "ascii" {
		if enc, err := htmlindex.Get(cs); err == nil {
			if d, err := enc.NewDecoder().Bytes(b); err == nil {
				b = d
			}
		}
	}
	s := string(b)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.ReplaceAll(s, "\r\n", "\n")
}

var (
	htmlDropRE  = regexp.MustCompile(`(?is)<(script|style|head|title)\b.*?</(script|style|head|title)\s*>|<!--.*?-->`)
	htmlBreakRE = regexp.MustCompile(`(?i)<(br|/p|/div|/tr|/h[1-6]|/li|p|div|tr|li|h[1-6])\b[^>]*>`)
	htmlTagRE   = regexp.MustCompile(`(?s)<[^>]*>`)
	blankRE     = regexp.MustCompile(`\n[ \t]*(\n[ \t]*)+\n`)
)

// htmlToText reduces an HTML body to its text, for messages that have no
// text/plain part. The result is shown as text, so nothing here needs to
// be safe HTML; it only needs to read well.
func htmlToText(s string) string {
	s = htmlDropRE.ReplaceAllString(s, "")
	s = htmlBreakRE.ReplaceAllString(s, "\n")
	s = htmlTagRE.ReplaceAllString(s, "")
	s = html.UnescapeString(s)
	s = blankRE.ReplaceAllString(s, "\n\n")
	return strings.TrimSpace(s)
}

// extensions name unnamed parts by their type. A fixed table: the
// system's mime.types would name them differently on different hosts.
var extensions = map[string]string{
	"text/plain": ".txt", "text/html": ".html", "text/calendar": ".ics", "message/rfc822": ".eml",
	"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/tiff": ".tif",
	"audio/wav": ".wav", "audio/x-wav": ".wav", "audio/mpeg": ".mp3", "application/pdf": ".pdf",
}

func extension(mediaType string) string {
	if e, ok := extensions[mediaType]; ok {
		return e
	}
	return ".bin"
}

func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}
