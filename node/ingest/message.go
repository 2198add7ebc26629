package ingest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	"net/mail"
	"regexp"
	"strings"
	"time"
)

// Kind is a kind of document the gateway takes: its endpoint, its media
// type and how it is checked and described.
type Kind struct {
	// Name is the endpoint's last path element: POST /v1/ingest/<Name>.
	Name string
	// Noun names the document in the subject and text ("Fax").
	Noun string
	// Sender is the local part of the From address (at the recipient's
	// domain).
	Sender string
	// ContentType and Ext are the attachment's media type and file name
	// extension.
	ContentType, Ext string
	// Inspect validates the document and returns what the subject and
	// the text say of it ("3 pages"; "42 s" and "8000 Hz, mono, ...").
	Inspect func(data []byte) (Summary, error)
}

// Summary is what Kind.Inspect learned of a document.
type Summary struct {
	Short  string // for the subject, "3 pages"
	Detail string // for the text, a sentence fragment
	// Fields are extra facts for the JSON answer ("pages": 3).
	Fields map[string]any
}

// Kinds returns the explicit list of what the gateway takes (STYLE.md
// rule 11), a fresh copy each call (no package-level mutable state).
func Kinds() []Kind {
	return []Kind{
		{Name: "fax", Noun: "Fax", Sender: "fax", ContentType: "image/tiff", Ext: ".tif", Inspect: inspectFax},
		{Name: "voice", Noun: "Voicemail", Sender: "voicemail", ContentType: "audio/wav", Ext: ".wav", Inspect: inspectVoice},
	}
}

func inspectFax(data []byte) (Summary, error) {
	t, err := ParseTIFF(data)
	if err != nil {
		return Summary{}, err
	}
	pages := fmt.Sprintf("%d pages", t.Pages)
	if t.Pages == 1 {
		pages = "1 page"
	}
	return Summary{Short: pages, Detail: pages, Fields: map[string]any{"pages": t.Pages}}, nil
}

func inspectVoice(data []byte) (Summary, error) {
	w, err := ParseWAV(data)
	if err != nil {
		return Summary{}, err
	}
	secs := int64(w.Duration.Round(time.Second) / time.Second)
	return Summary{
		Short:  fmt.Sprintf("%d s", secs),
		Detail: fmt.Sprintf("%d s of audio (%s)", secs, w.Describe()),
		Fields: map[string]any{"duration_ms": w.Duration.Milliseconds(), "sample_rate": w.SampleRate, "channels": w.Channels, "format": w.FormatName()},
	}, nil
}

// callerRE is what a caller id may be: a phone number with its usual
// punctuation, or a short name, in printable ASCII without quotes or
// angle brackets, so it can stand in a header field as it is.
var callerRE = regexp.MustCompile(`^[A-Za-z0-9+*#.() _-]{1,64}$`)

// ValidCaller reports whether s may be used as a caller id.
func ValidCaller(s string) bool {
	return callerRE.MatchString(s) && strings.TrimSpace(s) == s
}

// Envelope is what the built message says about where it comes from and
// goes to.
type Envelope struct {
	ID       string    // transaction id: Received, Message-ID, file name
	Caller   string    // caller id ("" when unknown), valid per ValidCaller
	To       string    // the recipient's address, lower case
	Hostname string    // this node's name in Received and Message-ID
	Remote   string    // the client's IP, for Received
	Date     time.Time // when it was received
}

// From is the envelope sender and From address of kind's messages to
// env.To: <sender>@<the recipient's domain>.
func (k *Kind) From(to string) string {
	return k.Sender + "@" + to[strings.LastIndexByte(to, '@')+1:]
}

// Subject is the message's subject: "Fax from +1 555 0100 (3 pages)".
func (k *Kind) Subject(caller string, s Summary) string {
	if caller == "" {
		return fmt.Sprintf("%s (%s)", k.Noun, s.Short)
	}
	return fmt.Sprintf("%s from %s (%s)", k.Noun, caller, s.Short)
}

// base64LineChars is the longest base64 line (RFC 2045 section 6.8).
const base64LineChars = 76

// Build returns the message that carries doc to env.To: our Received
// header first (the pipeline inserts its fields after it, as for SMTP),
// then a multipart/mixed message (RFC 2046 section 5.1.3) of a text/plain
// part that says what arrived and the document as a base64 attachment.
// Lines end in CRLF. The boundary is made from the transaction id (no
// randomness needed): it starts with "=_", which neither base64 nor the
// ASCII text part can contain.
func (k *Kind) Build(env Envelope, s Summary, doc []byte) []byte {
	boundary := "=_mailarray_" + env.ID
	filename := k.Name + "-" + env.ID + k.Ext
	date := env.Date.Format(time.RFC1123Z)
	var b bytes.Buffer
	b.Grow(len(doc)*4/3 + len(doc)/base64LineChars*2 + 2048)
	// RFC 5321 section 4.4: the trace field; "with HTTP" names the protocol.
	fmt.Fprintf(&b, "Received: from [%s] by %s (mailarray) with HTTP id %s\r\n\tfor <%s>; %s\r\n",
		env.Remote, env.Hostname, env.ID, env.To, date)
	from := mail.Address{Name: k.Noun + " gateway", Address: k.From(env.To)}
	if env.Caller != "" {
		from.Name = k.Noun + " " + env.Caller
	}
	fmt.Fprintf(&b, "From: %s\r\n", from.String())
	fmt.Fprintf(&b, "To: <%s>\r\n", env.To)
	fmt.Fprintf(&b, "Subject: %s\r\n", k.Subject(env.Caller, s))
	fmt.Fprintf(&b, "Date: %s\r\n", date)
	fmt.Fprintf(&b, "Message-ID: <%s.%s@%s>\r\n", env.ID, k.Name, env.Hostname)
	b.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: %s\r\n", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": boundary}))
	if env.Caller != "" {
		fmt.Fprintf(&b, "X-Mailarray-Caller: %s\r\n", env.Caller)
	}
	b.WriteString("\r\nThis is a MIME message.\r\n")

	fmt.Fprintf(&b, "\r\n--%s\r\n", boundary)
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	caller := "an unknown caller"
	if env.Caller != "" {
		caller = env.Caller
	}
	fmt.Fprintf(&b, "%s from %s: %s, %d bytes.\r\n", k.Noun, caller, s.Detail, len(doc))
	fmt.Fprintf(&b, "Received by %s on %s.\r\n", env.Hostname, date)
	fmt.Fprintf(&b, "It is attached as %s.\r\n", filename)

	fmt.Fprintf(&b, "\r\n--%s\r\n", boundary)
	fmt.Fprintf(&b, "Content-Type: %s\r\n", mime.FormatMediaType(k.ContentType, map[string]string{"name": filename}))
	fmt.Fprintf(&b, "Content-Disposition: %s\r\n", mime.FormatMediaType("attachment", map[string]string{"filename": filename}))
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	line := make([]byte, base64.StdEncoding.EncodedLen(base64LineChars/4*3))
	for len(doc) > 0 {
		chunk := doc[:min(len(doc), base64LineChars/4*3)]
		doc = doc[len(chunk):]
		n := base64.StdEncoding.EncodedLen(len(chunk))
		base64.StdEncoding.Encode(line, chunk)
		b.Write(line[:n])
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	return b.Bytes()
}

// MessageBytes is the size of the message Build makes for a document of
// docBytes, within a few hundred bytes (the headers): how the handler
// refuses a document too big before reading it all.
func MessageBytes(docBytes int64) int64 {
	lines := (docBytes + base64LineChars/4*3 - 1) / (base64LineChars / 4 * 3)
	return (docBytes+2)/3*4 + lines*2
}
