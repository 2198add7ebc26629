package mailaddr

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDomain(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.com", "example.com"},
		{"Example.COM.", "example.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"BÜCHER.example", "xn--bcher-kva.example"}, // UTS #46 maps case in domains
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"XN--BCHER-KVA.Example", "xn--bcher-kva.example"},
		{"пример.испытание", "xn--e1afmkfd.xn--80akhbyknj4f"},
		{"ｅｘａｍｐｌｅ.com", "example.com"}, // full-width letters (UTS #46 width mapping)
	} {
		got, err := Domain(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, "Domain(%q)", tc.in)
	}
	for _, bad := range []string{"", ".", "a..b", "-a.com", "a_b.com", "xn--zz-.example", "xn--a.example", "a b.com", "bücher..example"} {
		_, err := Domain(bad)
		assert.ErrorIs(t, err, ErrBad, "Domain(%q) must fail", bad)
	}
}

func TestAddress(t *testing.T) {
	const nfd = "jo\u0308rg" // o + COMBINING DIAERESIS
	for _, tc := range []struct{ in, want string }{
		{"Alice@Example.COM", "alice@example.com"},
		{"jörg@bücher.example", "jörg@xn--bcher-kva.example"},
		{nfd + "@xn--bcher-kva.example", "jörg@xn--bcher-kva.example"}, // NFD local part: NFC
		{"JÖRG@bücher.example", "jÖrg@xn--bcher-kva.example"},          // only ASCII case is folded
		{"δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp"},
		{"用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"},
		// U+212A KELVIN SIGN is canonically equivalent to 'K' (NFC maps it).
		{"\u212Aate@example.com", "kate@example.com"},
	} {
		got, _, _, err := Address(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, "Address(%q)", tc.in)
		assert.Equal(t, tc.want, Key(tc.in), "Key(%q)", tc.in)
	}
	// Case folding beyond ASCII is not applied: U+017F LONG S folds to 's'
	// but is a different character, and Ö is not ö.
	for _, in := range []string{"\u017Fam@example.com", "JÖRG@example.com"} {
		got, _, _, err := Address(in)
		require.NoError(t, err)
		assert.NotEqual(t, "sam@example.com", got)
		assert.NotEqual(t, "jörg@example.com", got)
	}
	for _, bad := range []string{"", "a", "@example.com", "a@", "a@example.com.", ".a@example.com", "a..b@example.com",
		"a b@example.com", "a\u200b@example.com", "a\x00@example.com", "\xff@example.com", "a@b@", "a\u0085@example.com"} {
		_, _, _, err := Address(bad)
		assert.ErrorIs(t, err, ErrBad, "Address(%q) must fail", bad)
		// Key skips the checks for plain ASCII, but what it returns for a
		// bad address is never a normal form, so it matches nothing.
		if k := Key(bad); k != "" {
			_, _, _, err := Address(k)
			assert.Error(t, err, "Key(%q) = %q must not be a normal form", bad, k)
		}
	}
}

func TestDomainUnicode(t *testing.T) {
	assert.Equal(t, "bücher.example", DomainUnicode("xn--bcher-kva.example"))
	assert.Equal(t, "example.com", DomainUnicode("example.com"))
}

func FuzzAddress(f *testing.F) {
	for _, s := range []string{"a@b.c", "jörg@bücher.example", "xn--@xn--.x", "\u212A@K.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, l, d, err := Address(s)
		if err != nil {
			return
		}
		// The normal form is a fixed point, and Key agrees with Address.
		n2, l2, d2, err := Address(n)
		if err != nil || n2 != n || l2 != l || d2 != d {
			t.Fatalf("Address(%q) = %q, but Address(%q) = %q, %v", s, n, n, n2, err)
		}
		if k := Key(s); k != n {
			t.Fatalf("Key(%q) = %q, Address = %q", s, k, n)
		}
	})
}
