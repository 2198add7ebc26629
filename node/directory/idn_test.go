package directory

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLookupInternationalised: a file naming mailboxes with UTF-8 local
// parts and IDN domains (in either form) answers lookups and logins in any
// equivalent spelling, and reports its domains as A-labels (what the DNS
// serves).
func TestLookupInternationalised(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeFile(t, path, "Jörg@Bücher.example:{PLAIN}pw1\n"+
		"δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp:{PLAIN}pw2:alias=用户@例子.广告\n"+
		"alice@example.com:{PLAIN}pw3\n")
	d, err := Open(path, nil)
	require.NoError(t, err)
	assert.Equal(t, 3, d.Len())
	assert.Equal(t, []string{"example.com", "xn--bcher-kva.example", "xn--fsqu00a.xn--4rr70v", "xn--hxajbheg2az3al.xn--jxalpdlp"}, d.Domains())
	for _, tt := range []struct{ in, want string }{
		{"jörg@bücher.example", "jörg@xn--bcher-kva.example"},
		{"jörg@xn--bcher-kva.example", "jörg@xn--bcher-kva.example"},
		{"JÖRG@XN--BCHER-KVA.EXAMPLE", ""}, // Ö is not folded (ö is the mailbox)
		{"Jörg@BÜCHER.example", "jörg@xn--bcher-kva.example"},
		{"jo\u0308rg@bücher.example", "jörg@xn--bcher-kva.example"}, // NFD
		{"δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp"},
		{"用户@xn--fsqu00a.xn--4rr70v", "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp"}, // alias
		{"joerg@bücher.example", ""},
		{"jörg@bucher.example", ""},
		{"\xff@bücher.example", ""},
	} {
		got, ok := d.Lookup(tt.in)
		assert.Equal(t, tt.want != "", ok, "Lookup(%q) found", tt.in)
		assert.Equal(t, tt.want, got.Address, "Lookup(%q)", tt.in)
	}
	mb, err := d.Authenticate("jörg@xn--bcher-kva.example", "pw1")
	require.NoError(t, err, "login by the A-label form")
	assert.Equal(t, "jörg@xn--bcher-kva.example", mb.Address)
	_, err = d.Authenticate("Jörg@bücher.example", "pw1")
	require.NoError(t, err, "login by the U-label form")
	_, err = d.Authenticate("jörg@bücher.example", "pw2")
	assert.ErrorIs(t, err, ErrAuth)
}

// TestLookupFreshLoadsAChangedFile: a mailbox added to the file is found
// by LookupFresh at once, without Watch (which would take two polls), and
// an address still unknown is reported as recent only while the file's
// change is recent.
func TestLookupFreshLoadsAChangedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeFile(t, path, "a@example.com:{PLAIN}apw\n")
	cfg := DefaultConfig()
	cfg.RecentChange = time.Minute
	d, err := OpenWithConfig(path, cfg, nil)
	require.NoError(t, err)

	_, ok, recent := d.LookupFresh("b@example.com")
	assert.False(t, ok, "b is not in the file")
	assert.False(t, recent, "the file has not changed since it was opened: b is unknown for good")

	replaceFile(t, path, "a@example.com:{PLAIN}apw\nb@example.com:{PLAIN}bpw\n")
	_, ok = d.Lookup("b@example.com")
	require.False(t, ok, "Lookup alone does not see the change")
	mb, ok, recent := d.LookupFresh("B@example.com")
	assert.True(t, ok, "LookupFresh loads the changed file")
	assert.False(t, recent)
	assert.Equal(t, "b@example.com", mb.Address)
	assert.Equal(t, uint64(2), d.Stats().Generation)

	_, ok, recent = d.LookupFresh("c@example.com")
	assert.False(t, ok)
	assert.True(t, recent, "the file changed a moment ago: c may be on its way")
	assert.Equal(t, uint64(2), d.Stats().Generation, "an unchanged file is not loaded again")

	cfg.RecentChange = 0
	d, err = OpenWithConfig(path, cfg, nil)
	require.NoError(t, err)
	replaceFile(t, path, "a@example.com:{PLAIN}apw\nx@example.com:{PLAIN}xpw\n")
	_, ok, recent = d.LookupFresh("zz@example.com")
	assert.False(t, ok)
	assert.False(t, recent, "RecentChange 0: never recent")
	_, ok = d.Lookup("x@example.com")
	assert.True(t, ok, "the changed file was loaded")

	fromEntries, err := NewFromEntries(DefaultConfig(), nil, Entry{Mailbox: Mailbox{Address: "a@example.com"}, Scheme: SchemePlain, Secret: "x"})
	require.NoError(t, err)
	_, ok, recent = fromEntries.LookupFresh("b@example.com")
	assert.False(t, ok)
	assert.False(t, recent, "no file, nothing on its way")
}
