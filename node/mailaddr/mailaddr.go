package mailaddr

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Limits of the normal form, in octets of its UTF-8 or ASCII encoding.
const (
	// MaxLocalBytes: RFC 5321 section 4.5.3.1.1; RFC 6531 section 3.3 keeps
	// the limit in octets.
	MaxLocalBytes = 64
	// MaxDomainBytes: RFC 5321 section 4.5.3.1.2, of the A-label form.
	MaxDomainBytes = 255
	// MaxLabelBytes: RFC 1035 section 2.3.4.
	MaxLabelBytes = 63
)

// ErrBad is wrapped by every error of this package.
var ErrBad = errors.New("mailaddr: bad address")

// profile maps a domain to its A-label form: UTS #46 mapping (lower case,
// width folding), NFC, IDNA2008 validity (bidi and joiner rules), and
// STD3 rules (letters, digits and '-' only, as host names).
var profile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.StrictDomainName(true),
	idna.VerifyDNSLength(true),
	idna.Transitional(false),
)

// display maps an A-label domain back to its U-labels, for humans.
var display = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false))

// Domain returns d in its normal form: A-labels, ASCII lower case, without a
// trailing dot. Either the U-label or the A-label form of an IDN domain
// gives the same result.
func Domain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", fmt.Errorf("%w: empty domain", ErrBad)
	}
	if isASCII(d) {
		d = ASCIILower(d)
		if !strings.Contains(d, "xn--") {
			// Plain LDH: the check below is what IDNA would do, without
			// its cost.
			if r := checkLDH(d); r != "" {
				return "", fmt.Errorf("%w: %s", ErrBad, r)
			}
			return d, nil
		}
	}
	if !utf8.ValidString(d) {
		return "", fmt.Errorf("%w: domain is not UTF-8", ErrBad)
	}
	a, err := profile.ToASCII(d)
	if err == nil {
		// The A-labels must name the same domain when read back (the
		// normal form is a fixed point); idna lets a few odd inputs
		// through that fail this.
		var again string
		if again, err = profile.ToASCII(a); err == nil && again != a {
			err = errors.New("not a fixed point")
		}
	}
	if err != nil {
		// The idna error quotes decoded label bytes, which confuse more
		// than help; the domain as given is what a person can fix.
		return "", fmt.Errorf("%w: domain %q is not a valid internationalised domain name", ErrBad, d)
	}
	if r := checkLDH(a); r != "" {
		return "", fmt.Errorf("%w: %s", ErrBad, r)
	}
	return a, nil
}

// DomainUnicode returns the U-label form of a normal-form domain, for logs
// and display; d itself when it has no A-labels or they do not decode.
func DomainUnicode(d string) string {
	if !strings.Contains(d, "xn--") {
		return d
	}
	u, err := display.ToUnicode(d)
	if err != nil {
		return d
	}
	return u
}

// Local returns the local part l in its normal form: NFC, ASCII letters
// lowered. It accepts a dot-atom (RFC 5322 section 3.2.3) whose atext may
// include any non-ASCII character that is not a control, space or
// formatting character (RFC 6531 section 3.3, RFC 6532 section 3.2);
// quoted local parts are refused (no mailbox here needs one).
func Local(l string) (string, error) {
	if l == "" {
		return "", fmt.Errorf("%w: empty local part", ErrBad)
	}
	if !isASCII(l) {
		if !utf8.ValidString(l) {
			return "", fmt.Errorf("%w: local part is not UTF-8", ErrBad)
		}
		l = norm.NFC.String(l)
	}
	if len(l) > MaxLocalBytes {
		return "", fmt.Errorf("%w: local part longer than %d bytes", ErrBad, MaxLocalBytes)
	}
	if l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return "", fmt.Errorf("%w: local part with a leading, trailing or double '.'", ErrBad)
	}
	for _, r := range l {
		switch {
		case r == '.':
		case r < utf8.RuneSelf:
			if !isAtext(byte(r)) {
				return "", fmt.Errorf("%w: invalid character in local part", ErrBad)
			}
		case unicode.IsControl(r), unicode.IsSpace(r), unicode.Is(unicode.Cf, r), r == utf8.RuneError:
			return "", fmt.Errorf("%w: invalid character U+%04X in local part", ErrBad, r)
		}
	}
	return ASCIILower(l), nil
}

// Address returns addr (local@domain, no angle brackets) in its normal form,
// and its two halves. The domain is what follows the last '@'.
func Address(addr string) (norm, local, domain string, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", "", "", fmt.Errorf("%w: no '@'", ErrBad)
	}
	if local, err = Local(addr[:at]); err != nil {
		return "", "", "", err
	}
	if strings.HasSuffix(addr, ".") {
		// A root-relative domain is no mailbox's (RFC 5321 section 4.1.2).
		return "", "", "", fmt.Errorf("%w: empty label in domain", ErrBad)
	}
	if domain, err = Domain(addr[at+1:]); err != nil {
		return "", "", "", err
	}
	return local + "@" + domain, local, domain, nil
}

// Key returns the normal form of addr for a lookup, or "" when addr cannot
// be normalised (so it matches nothing). An all-ASCII address without
// A-labels only has its case lowered: the caller's table holds normal forms,
// which such an address can only match if it is one.
func Key(addr string) string {
	if isASCII(addr) && !strings.Contains(ASCIILower(addr), "xn--") {
		return ASCIILower(addr)
	}
	n, _, _, err := Address(addr)
	if err != nil {
		return ""
	}
	return n
}

// IsASCII reports whether s is all ASCII: an address that is not needs the
// SMTPUTF8 extension (RFC 6531 section 3.2).
func IsASCII(s string) bool { return isASCII(s) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// ASCIILower lowers ASCII letters only. strings.ToLower would also fold
// letters such as U+212A KELVIN SIGN to 'k', letting a non-ASCII string
// match an ASCII address.
func ASCIILower(s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// isAtext reports whether c is atext (RFC 5322 section 3.2.3), ASCII only.
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// checkLDH accepts lower-case LDH labels of 1 to 63 characters, not starting
// or ending with '-', separated by single dots (RFC 1035 section 2.3.1,
// RFC 1123 section 2.1), at most MaxDomainBytes in all.
func checkLDH(d string) string {
	if len(d) > MaxDomainBytes {
		return fmt.Sprintf("domain longer than %d bytes", MaxDomainBytes)
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return "empty label in domain"
		}
		if len(label) > MaxLabelBytes {
			return fmt.Sprintf("domain label longer than %d bytes", MaxLabelBytes)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "domain label starting or ending with '-'"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "invalid character in domain"
			}
		}
	}
	return ""
}
