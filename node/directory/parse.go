package directory

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"mailarray/node/mailaddr"
)

// Limits of the directory file format. Each one bounds what a single line can
// make the node do or hold.
const (
	// MaxLineBytes bounds one line of the file (after the newline is
	// removed). A longer line is reported and skipped.
	MaxLineBytes = 4096
	// MaxAddressBytes is the longest address accepted: RFC 5321 section
	// 4.5.3.1.3 limits a path to 256 octets including the angle brackets.
	MaxAddressBytes = 254
	// MaxLocalBytes is the longest local part (RFC 5321 section 4.5.3.1.1).
	MaxLocalBytes = 64
	// MaxLabelBytes is the longest DNS label (RFC 1035 section 2.3.4).
	MaxLabelBytes = 63
	// MaxAliases bounds the alias= options of one mailbox.
	MaxAliases = 32
	// MaxHashCost is the highest bcrypt cost accepted in the file. Each step
	// doubles the time of a login; cost 16 already takes seconds, so a
	// higher cost is a typo that would turn every login into a denial of
	// service.
	MaxHashCost = 16
)

// Scheme says how a mailbox's Secret is to be checked.
type Scheme string

// The password schemes of the file, written between braces: {BCRYPT}, {PLAIN}.
// Scheme names are case-insensitive in the file and upper case here.
const (
	// SchemeBcrypt: Secret is a bcrypt hash ($2a$, $2b$ or $2y$).
	SchemeBcrypt Scheme = "BCRYPT"
	// SchemePlain: Secret is the password itself. For tests and the
	// simulator; loading a file that uses it logs a warning.
	SchemePlain Scheme = "PLAIN"
)

// Secret is a password hash or, for SchemePlain, a password. It prints as
// [REDACTED] through fmt and slog so that an Entry can be logged or dumped in
// a test failure without disclosing it; use string(s) for the value.
type Secret string

// String implements fmt.Stringer without disclosing the secret.
func (Secret) String() string { return "[REDACTED]" }

// GoString implements fmt.GoStringer (%#v) without disclosing the secret.
func (Secret) GoString() string { return `directory.Secret("[REDACTED]")` }

// LogValue implements slog.LogValuer without disclosing the secret.
func (Secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// Options are a mailbox's settings from the third field of its line.
type Options struct {
	// Notify is where to signal new mail: an http or https URL (a webhook)
	// or "sms:+" and an E.164 number. Empty: no notification.
	Notify string
	// QuotaBytes bounds the mailbox's stored size. 0: no quota.
	QuotaBytes int64
	// Aliases are further addresses that deliver to this mailbox (and log in
	// to it), canonical like Mailbox.Address.
	Aliases []string
	// Extra holds option keys this version does not know, kept so that a
	// newer file still loads; each load logs them as a warning. Nil when
	// there are none.
	Extra map[string]string
}

// Mailbox is one local mailbox as the rest of the node sees it.
type Mailbox struct {
	// Address is the canonical (lower case) address, local@domain.
	Address string
	// Local and Domain are the two halves of Address.
	Local  string
	Domain string
	// Options are the mailbox's settings.
	Options Options
}

// clone returns m with its own copies of the option slices and maps, so a
// caller cannot change the directory's copy.
func (m Mailbox) clone() Mailbox {
	if m.Options.Aliases != nil {
		m.Options.Aliases = slices.Clone(m.Options.Aliases)
	}
	if m.Options.Extra != nil {
		m.Options.Extra = maps.Clone(m.Options.Extra)
	}
	return m
}

// Entry is one mailbox with its credential, as read from a line of the file
// or built by a test or the simulator for NewFromEntries.
type Entry struct {
	Mailbox Mailbox
	Scheme  Scheme
	Secret  Secret
	// Line is the 1-based line of the file the entry came from; 0 when it
	// did not come from a file.
	Line int
}

// FileLine returns e as a line of the directory file (without newline), the
// inverse of Parse. It contains the secret: write it only to the file.
// Extra options are written in key order.
func (e Entry) FileLine() string {
	var b strings.Builder
	b.WriteString(e.Mailbox.Address)
	b.WriteString(":{")
	b.WriteString(string(e.Scheme))
	b.WriteString("}")
	b.WriteString(string(e.Secret))
	var opts []string
	o := e.Mailbox.Options
	if o.Notify != "" {
		opts = append(opts, "notify="+o.Notify)
	}
	if o.QuotaBytes != 0 {
		opts = append(opts, "quota_bytes="+strconv.FormatInt(o.QuotaBytes, 10))
	}
	for _, a := range o.Aliases {
		opts = append(opts, "alias="+a)
	}
	for _, k := range slices.Sorted(maps.Keys(o.Extra)) {
		opts = append(opts, k+"="+o.Extra[k])
	}
	if len(opts) > 0 {
		b.WriteString(":")
		b.WriteString(strings.Join(opts, ","))
	}
	return b.String()
}

// Problem is a line of the file that was skipped, and why. Reason never
// contains a password or a hash.
type Problem struct {
	File   string
	Line   int
	Reason string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Reason)
}

// Parse reads a directory file from r. name is the file's name, copied into
// each Problem. Parse is pure: it neither logs nor touches anything but r.
//
// The format, one mailbox per line:
//
//	address:{SCHEME}secret[:options]
//
// Leading and trailing white space of a line is removed; blank lines and
// lines starting with '#' are ignored. The address is local@domain, compared
// without regard to ASCII case (RFC 5321 section 2.4 allows a server to treat
// local parts so, and this directory does) and in its normal form (see
// CanonicalAddress). The secret runs from '}' to the
// next ':' or the end of the line, so a {PLAIN} password cannot contain ':'
// (bcrypt hashes never do), and white space around it is removed, so it
// cannot start or end with a space (inner spaces are kept). Options are
// comma-separated key=value pairs: notify=URL-or-sms:+E164,
// quota_bytes=N, alias=address (repeatable); other keys are kept in
// Options.Extra. A value cannot contain ',' (percent-encode it in a URL).
//
// A bad line is reported as a Problem and skipped; so is a line whose address
// or an alias was already claimed by an earlier line. Entries come back in
// file order. A read error from r ends the parse with a Problem on the line
// after the last one read.
func Parse(r io.Reader, name string) (entries []Entry, problems []Problem) {
	br := bufio.NewReaderSize(r, MaxLineBytes+2)
	claims := make(map[string]int) // address or alias -> line that claimed it
	lineNo := 0
	for {
		line, tooLong, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			problems = append(problems, Problem{File: name, Line: lineNo + 1, Reason: "read error: " + err.Error()})
			return entries, problems
		}
		if err != nil && len(line) == 0 && !tooLong {
			return entries, problems
		}
		lineNo++
		if tooLong {
			problems = append(problems, Problem{File: name, Line: lineNo, Reason: fmt.Sprintf("line longer than %d bytes", MaxLineBytes)})
		} else if e, reason, ok := parseLine(line, lineNo == 1); reason != "" {
			problems = append(problems, Problem{File: name, Line: lineNo, Reason: reason})
		} else if ok {
			e.Line = lineNo
			if reason := claim(claims, e, lineNo, onLine); reason != "" {
				problems = append(problems, Problem{File: name, Line: lineNo, Reason: reason})
			} else {
				entries = append(entries, e)
			}
		}
		if err != nil {
			return entries, problems
		}
	}
}

// readLine returns the next line without its line ending. A line longer than
// MaxLineBytes is consumed up to its newline and reported as tooLong, without
// its bytes. err is io.EOF when the input ended on this line.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			buf = append(buf, chunk...)
			// +2 leaves room for the "\r\n" that is not part of the line.
			if len(buf) > MaxLineBytes+2 {
				tooLong, buf = true, nil
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong {
			return nil, true, err
		}
		buf = bytes.TrimSuffix(buf, []byte("\n"))
		buf = bytes.TrimSuffix(buf, []byte("\r"))
		if len(buf) > MaxLineBytes {
			return nil, true, err
		}
		return buf, false, err
	}
}

// parseLine parses one line. It returns ok=false for a line to ignore
// (blank, comment) and a non-empty reason for a bad one. Reasons never quote
// the secret, nor any field that might be one by mistake.
func parseLine(raw []byte, first bool) (e Entry, reason string, ok bool) {
	s := string(raw)
	if first {
		s = strings.TrimPrefix(s, "\ufeff") // a byte order mark some editors write
	}
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '#' {
		return Entry{}, "", false
	}
	addr, rest, found := strings.Cut(s, ":")
	if !found {
		return Entry{}, "missing ':' after the address", false
	}
	if addr == "" {
		return Entry{}, "empty address", false
	}
	e.Mailbox.Address = addr
	if rest == "" || rest[0] != '{' {
		return Entry{}, "missing {SCHEME} before the password", false
	}
	end := strings.IndexByte(rest, '}')
	if end < 0 {
		return Entry{}, "unterminated {SCHEME}", false
	}
	e.Scheme = Scheme(strings.ToUpper(rest[1:end]))
	secret, opts, _ := strings.Cut(rest[end+1:], ":")
	e.Secret = Secret(strings.TrimSpace(secret))
	if e.Mailbox.Options, reason = parseOptions(opts); reason != "" {
		return Entry{}, reason, false
	}
	if e, reason = validateEntry(e); reason != "" {
		return Entry{}, reason, false
	}
	return e, "", true
}

// parseOptions splits the options field into Options, checking syntax only;
// validateEntry checks the values. Empty items are ignored, so a trailing
// ':' or ',' is harmless.
func parseOptions(s string) (o Options, reason string) {
	seen := make(map[string]bool)
	n := 0
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		n++
		k, v, found := strings.Cut(item, "=")
		if !found {
			return Options{}, fmt.Sprintf("bad option %d: missing '='", n)
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !validOptionKey(k) {
			return Options{}, fmt.Sprintf("bad option %d: key must be 1 to 32 of a-z 0-9 _ . -", n)
		}
		if seen[k] && k != "alias" {
			return Options{}, fmt.Sprintf("bad option %s: given twice", k)
		}
		seen[k] = true
		switch k {
		case "notify":
			if v == "" {
				return Options{}, "bad option notify: empty"
			}
			o.Notify = v
		case "quota_bytes":
			q, err := strconv.ParseInt(v, 10, 64)
			if err != nil || q <= 0 {
				return Options{}, "bad option quota_bytes: want an integer > 0"
			}
			o.QuotaBytes = q
		case "alias":
			if v == "" {
				return Options{}, "bad option alias: empty"
			}
			o.Aliases = append(o.Aliases, v)
		default:
			if o.Extra == nil {
				o.Extra = make(map[string]string)
			}
			o.Extra[k] = v
		}
	}
	return o, ""
}

func validOptionKey(k string) bool {
	if k == "" || len(k) > 32 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// validateEntry checks e's values and returns it in canonical form (lower
// case address and aliases, Local and Domain filled in). Parse and
// NewFromEntries both go through it, so a file and the simulator accept
// exactly the same mailboxes.
func validateEntry(e Entry) (Entry, string) {
	addr, local, domain, reason := canonAddress(e.Mailbox.Address)
	if reason != "" {
		return Entry{}, "bad address: " + reason
	}
	e.Mailbox.Address, e.Mailbox.Local, e.Mailbox.Domain = addr, local, domain
	switch e.Scheme {
	case SchemeBcrypt:
		if reason := checkBcryptHash(string(e.Secret)); reason != "" {
			return Entry{}, "bad bcrypt hash: " + reason
		}
	case SchemePlain:
		if e.Secret == "" {
			return Entry{}, "empty password"
		}
		if strings.ContainsRune(string(e.Secret), ':') {
			return Entry{}, "password contains ':'"
		}
		if string(e.Secret) != strings.TrimSpace(string(e.Secret)) {
			return Entry{}, "password starts or ends with white space"
		}
	default:
		if validSchemeName(string(e.Scheme)) {
			return Entry{}, fmt.Sprintf("unknown scheme {%s}", e.Scheme)
		}
		return Entry{}, "unknown scheme"
	}
	o := &e.Mailbox.Options
	if o.Notify != "" {
		if reason := checkNotify(o.Notify); reason != "" {
			return Entry{}, "bad option notify: " + reason
		}
		if len(o.Notify) > 4 && strings.EqualFold(o.Notify[:4], "sms:") {
			o.Notify = "sms:" + o.Notify[4:]
		}
	}
	if o.QuotaBytes < 0 {
		return Entry{}, "bad option quota_bytes: want an integer > 0"
	}
	if len(o.Aliases) > MaxAliases {
		return Entry{}, fmt.Sprintf("bad option alias: more than %d", MaxAliases)
	}
	if o.Aliases != nil {
		aliases := make([]string, len(o.Aliases))
		for i, a := range o.Aliases {
			canon, _, _, reason := canonAddress(a)
			if reason != "" {
				return Entry{}, "bad option alias: " + reason
			}
			aliases[i] = canon
		}
		o.Aliases = aliases
	}
	if len(o.Extra) == 0 {
		o.Extra = nil
	} else {
		extra := make(map[string]string, len(o.Extra))
		for k, v := range o.Extra {
			if !validOptionKey(k) || strings.ContainsAny(v, ",") || v != strings.TrimSpace(v) {
				return Entry{}, "bad option: key must be 1 to 32 of a-z 0-9 _ . -, value without ',' or surrounding space"
			}
			if k == "notify" || k == "quota_bytes" || k == "alias" {
				return Entry{}, fmt.Sprintf("bad option %s: a known key in Extra", k)
			}
			extra[k] = v
		}
		o.Extra = extra
	}
	return e, ""
}

func validSchemeName(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// checkBcryptHash checks the modular crypt form $2x$CC$ + 22 characters of
// salt + 31 of hash, all in bcrypt's base64 alphabet, so that a hash that
// could never match is refused at load rather than failing every login.
func checkBcryptHash(h string) string {
	const hashLen = 60
	if len(h) != hashLen {
		return fmt.Sprintf("want %d characters", hashLen)
	}
	switch h[:4] {
	case "$2a$", "$2b$", "$2y$":
	default:
		return "want prefix $2a$, $2b$ or $2y$"
	}
	if h[6] != '$' || h[4] < '0' || h[4] > '9' || h[5] < '0' || h[5] > '9' {
		return "want a two-digit cost"
	}
	cost := int(h[4]-'0')*10 + int(h[5]-'0')
	if cost < minHashCost || cost > MaxHashCost {
		return fmt.Sprintf("cost %d outside %d..%d", cost, minHashCost, MaxHashCost)
	}
	for i := 7; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '/') {
			return "character outside the bcrypt alphabet"
		}
	}
	return ""
}

// checkNotify accepts an http(s) URL with a host, or sms:+ followed by an
// E.164 number: a country code not starting with 0 and 7 to 15 digits in all
// (ITU-T E.164 section 6).
func checkNotify(v string) string {
	if len(v) >= 4 && strings.EqualFold(v[:4], "sms:") {
		num := v[4:]
		if len(num) < 8 || len(num) > 16 || num[0] != '+' || num[1] == '0' {
			return "want sms:+ and an E.164 number of 7 to 15 digits"
		}
		for i := 1; i < len(num); i++ {
			if num[i] < '0' || num[i] > '9' {
				return "want sms:+ and an E.164 number of 7 to 15 digits"
			}
		}
		return ""
	}
	u, err := url.Parse(v)
	if err != nil {
		return "not a URL"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "want an http or https URL, or sms:+E164"
	}
	if u.Hostname() == "" {
		return "URL without a host"
	}
	return ""
}

// CanonicalAddress checks that s is a plausible mailbox address and returns
// it in the directory's canonical form, that of package mailaddr: the local
// part in NFC with ASCII letters lowered, the domain as A-labels in lower
// case. It accepts a dot-atom local part (RFC 5322 section 3.2.3), UTF-8
// included (RFC 6531 section 3.3), and a domain of LDH labels (RFC 1035
// section 2.3.1, RFC 1123 section 2.1) or its U-label form (RFC 5890);
// quoted local parts and address literals are refused.
func CanonicalAddress(s string) (string, error) {
	addr, _, _, reason := canonAddress(s)
	if reason != "" {
		return "", fmt.Errorf("directory: bad address: %s", reason)
	}
	return addr, nil
}

func canonAddress(s string) (addr, local, domain, reason string) {
	if s == "" {
		return "", "", "", "empty"
	}
	if len(s) > MaxAddressBytes {
		return "", "", "", fmt.Sprintf("longer than %d bytes", MaxAddressBytes)
	}
	local, domain, found := strings.Cut(s, "@")
	if !found {
		return "", "", "", "no '@'"
	}
	if strings.Contains(domain, "@") {
		return "", "", "", "more than one '@'"
	}
	if local == "" {
		return "", "", "", "empty local part"
	}
	if domain == "" {
		return "", "", "", "empty domain"
	}
	if strings.HasSuffix(domain, ".") {
		return "", "", "", "empty label in domain"
	}
	addr, local, domain, err := mailaddr.Address(s)
	if err != nil {
		return "", "", "", strings.TrimPrefix(err.Error(), mailaddr.ErrBad.Error()+": ")
	}
	if len(addr) > MaxAddressBytes {
		// An A-label domain is longer than its U-labels.
		return "", "", "", fmt.Sprintf("longer than %d bytes as A-labels", MaxAddressBytes)
	}
	return addr, local, domain, ""
}

// asciiLower lowers ASCII letters only (see mailaddr.ASCIILower).
func asciiLower(s string) string { return mailaddr.ASCIILower(s) }

// claim records e's address and aliases in claims (name -> position) and
// returns a reason if any of them was already claimed, in which case claims
// is left unchanged. where describes a position in the reason.
func claim(claims map[string]int, e Entry, pos int, where func(int) string) string {
	names := make([]string, 0, 1+len(e.Mailbox.Options.Aliases))
	names = append(names, e.Mailbox.Address)
	names = append(names, e.Mailbox.Options.Aliases...)
	for i, n := range names {
		if first, ok := claims[n]; ok {
			return fmt.Sprintf("duplicate address %s (first %s)", n, where(first))
		}
		if slices.Contains(names[:i], n) {
			return fmt.Sprintf("duplicate address %s (repeated on this line)", n)
		}
	}
	for _, n := range names {
		claims[n] = pos
	}
	return ""
}

func onLine(n int) string { return fmt.Sprintf("on line %d", n) }
