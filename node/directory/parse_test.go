package directory

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hashes of "hunter2" made with bcrypt at costs 4 and 10.
const (
	hunter2Cost4  = "$2a$04$uQrgD3Nnvap9c4x1e0P12uNQ7GPEJ2EapZIkXbbSdLNHivJXs9lpW"
	hunter2Cost10 = "$2a$10$TJtCa2kiEVn75uwWT7fr..a8yD9whFvRzYjYT3VKVhlX4zgDmKyy."
)

func TestParseGoodLines(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Entry
	}{
		{
			name: "bcrypt 2a",
			line: "alice@example.com:{BCRYPT}" + hunter2Cost10,
			want: Entry{Mailbox: Mailbox{Address: "alice@example.com", Local: "alice", Domain: "example.com"}, Scheme: SchemeBcrypt, Secret: hunter2Cost10, Line: 1},
		},
		{
			name: "bcrypt 2b and 2y, scheme in lower case",
			line: "b@example.com:{bcrypt}$2y$" + hunter2Cost4[4:],
			want: Entry{Mailbox: Mailbox{Address: "b@example.com", Local: "b", Domain: "example.com"}, Scheme: SchemeBcrypt, Secret: Secret("$2y$" + hunter2Cost4[4:]), Line: 1},
		},
		{
			name: "plain, address lowered, spaces kept inside the password",
			line: "  Bob.Smith+tag@Mail.Example.COM:{PLAIN}two words  ",
			want: Entry{Mailbox: Mailbox{Address: "bob.smith+tag@mail.example.com", Local: "bob.smith+tag", Domain: "mail.example.com"}, Scheme: SchemePlain, Secret: "two words", Line: 1},
		},
		{
			name: "all known options",
			line: "c@example.com:{PLAIN}pw:notify=https://hook.example/x?a=b,quota_bytes=104857600,alias=C2@Example.com,alias=c3@other.example",
			want: Entry{Mailbox: Mailbox{Address: "c@example.com", Local: "c", Domain: "example.com", Options: Options{
				Notify: "https://hook.example/x?a=b", QuotaBytes: 104857600, Aliases: []string{"c2@example.com", "c3@other.example"},
			}}, Scheme: SchemePlain, Secret: "pw", Line: 1},
		},
		{
			name: "sms notify, spaces around options, unknown key kept",
			line: "d@example.com:{PLAIN}pw: notify = SMS:+15551234567 , Color=blue,",
			want: Entry{Mailbox: Mailbox{Address: "d@example.com", Local: "d", Domain: "example.com", Options: Options{
				Notify: "sms:+15551234567", Extra: map[string]string{"color": "blue"},
			}}, Scheme: SchemePlain, Secret: "pw", Line: 1},
		},
		{
			name: "empty options field",
			line: "e@localhost:{PLAIN}pw:",
			want: Entry{Mailbox: Mailbox{Address: "e@localhost", Local: "e", Domain: "localhost"}, Scheme: SchemePlain, Secret: "pw", Line: 1},
		},
		{
			name: "http notify with port and path",
			line: "f@example.com:{PLAIN}pw:notify=http://10.0.0.1:8080/hook",
			want: Entry{Mailbox: Mailbox{Address: "f@example.com", Local: "f", Domain: "example.com", Options: Options{Notify: "http://10.0.0.1:8080/hook"}}, Scheme: SchemePlain, Secret: "pw", Line: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, problems := Parse(strings.NewReader(tt.line), "f")
			require.Empty(t, problems, "problems")
			require.Len(t, entries, 1)
			assert.Equal(t, tt.want, entries[0], "got entry, want entry")
			assert.Equal(t, string(tt.want.Secret), string(entries[0].Secret), "secret") // Secret prints redacted
		})
	}
}

func TestParseBadLines(t *testing.T) {
	const good = "ok@example.com:{PLAIN}s3cret"
	tests := []struct {
		name  string
		input string // lines; the bad one is the last
		want  Problem
	}{
		{"missing colon", "alice@example.com {PLAIN}s3cret", Problem{Line: 1, Reason: "missing ':' after the address"}},
		{"only a password", "s3cret", Problem{Line: 1, Reason: "missing ':' after the address"}},
		{"empty address", ":{PLAIN}s3cret", Problem{Line: 1, Reason: "empty address"}},
		{"no at", "alice.example.com:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: no '@'"}},
		{"two ats", "a@b@example.com:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: more than one '@'"}},
		{"empty local", "@example.com:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: empty local part"}},
		{"empty domain", "alice@:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: empty domain"}},
		{"space in local", "al ice@example.com:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: invalid character in local part"}},
		{"double dot", "al..ice@example.com:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: local part with a leading, trailing or double '.'"}},
		{"underscore in domain", "alice@ex_ample.com:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: invalid character in domain"}},
		{"hyphen label", "alice@-example.com:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: domain label starting or ending with '-'"}},
		{"trailing dot", "alice@example.com.:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: empty label in domain"}},
		{"non-ascii control", "ålice\u0085@example.com:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: invalid character U+0085 in local part"}},
		{"bad idn", "alice@xn--a.example:{PLAIN}s3cret", Problem{Line: 1, Reason: `bad address: domain "xn--a.example" is not a valid internationalised domain name`}},
		{"long label", "a@" + strings.Repeat("x", 64) + ".com:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: domain label longer than 63 bytes"}},
		{"long local", strings.Repeat("x", 65) + "@example.com:{PLAIN}s3cret", Problem{Line: 1, Reason: "bad address: local part longer than 64 bytes"}},
		{"no scheme", "alice@example.com:s3cret", Problem{Line: 1, Reason: "missing {SCHEME} before the password"}},
		{"unterminated scheme", "alice@example.com:{PLAIN s3cret", Problem{Line: 1, Reason: "unterminated {SCHEME}"}},
		{"unknown scheme", "alice@example.com:{MD5}s3cret", Problem{Line: 1, Reason: "unknown scheme {MD5}"}},
		{"unknown scheme not echoed when odd", "alice@example.com:{s3cret pass}x", Problem{Line: 1, Reason: "unknown scheme"}},
		{"empty plain", "alice@example.com:{PLAIN}", Problem{Line: 1, Reason: "empty password"}},
		{"empty plain before options", "alice@example.com:{PLAIN}:quota_bytes=1", Problem{Line: 1, Reason: "empty password"}},
		{"bcrypt short", "alice@example.com:{BCRYPT}$2a$10$abc", Problem{Line: 1, Reason: "bad bcrypt hash: want 60 characters"}},
		{"bcrypt prefix", "alice@example.com:{BCRYPT}$2x$" + hunter2Cost4[4:], Problem{Line: 1, Reason: "bad bcrypt hash: want prefix $2a$, $2b$ or $2y$"}},
		{"bcrypt cost digits", "alice@example.com:{BCRYPT}$2a$x4$" + hunter2Cost4[7:], Problem{Line: 1, Reason: "bad bcrypt hash: want a two-digit cost"}},
		{"bcrypt cost too high", "alice@example.com:{BCRYPT}$2a$20$" + hunter2Cost4[7:], Problem{Line: 1, Reason: "bad bcrypt hash: cost 20 outside 4..16"}},
		{"bcrypt cost too low", "alice@example.com:{BCRYPT}$2a$03$" + hunter2Cost4[7:], Problem{Line: 1, Reason: "bad bcrypt hash: cost 3 outside 4..16"}},
		{"bcrypt alphabet", "alice@example.com:{BCRYPT}" + hunter2Cost4[:59] + "!", Problem{Line: 1, Reason: "bad bcrypt hash: character outside the bcrypt alphabet"}},
		{"option without equals", "alice@example.com:{PLAIN}s3cret:quota_bytes=5,loud", Problem{Line: 1, Reason: "bad option 2: missing '='"}},
		{"option empty key", "alice@example.com:{PLAIN}s3cret:=5", Problem{Line: 1, Reason: "bad option 1: key must be 1 to 32 of a-z 0-9 _ . -"}},
		{"option repeated", "alice@example.com:{PLAIN}s3cret:quota_bytes=5,quota_bytes=6", Problem{Line: 1, Reason: "bad option quota_bytes: given twice"}},
		{"quota zero", "alice@example.com:{PLAIN}s3cret:quota_bytes=0", Problem{Line: 1, Reason: "bad option quota_bytes: want an integer > 0"}},
		{"quota text", "alice@example.com:{PLAIN}s3cret:quota_bytes=lots", Problem{Line: 1, Reason: "bad option quota_bytes: want an integer > 0"}},
		{"notify empty", "alice@example.com:{PLAIN}s3cret:notify=", Problem{Line: 1, Reason: "bad option notify: empty"}},
		{"notify ftp", "alice@example.com:{PLAIN}s3cret:notify=ftp://x.example/", Problem{Line: 1, Reason: "bad option notify: want an http or https URL, or sms:+E164"}},
		{"notify no host", "alice@example.com:{PLAIN}s3cret:notify=https:///x", Problem{Line: 1, Reason: "bad option notify: URL without a host"}},
		{"notify bare word", "alice@example.com:{PLAIN}s3cret:notify=hook", Problem{Line: 1, Reason: "bad option notify: want an http or https URL, or sms:+E164"}},
		{"notify sms no plus", "alice@example.com:{PLAIN}s3cret:notify=sms:15551234567", Problem{Line: 1, Reason: "bad option notify: want sms:+ and an E.164 number of 7 to 15 digits"}},
		{"notify sms too long", "alice@example.com:{PLAIN}s3cret:notify=sms:+1234567890123456", Problem{Line: 1, Reason: "bad option notify: want sms:+ and an E.164 number of 7 to 15 digits"}},
		{"notify sms letters", "alice@example.com:{PLAIN}s3cret:notify=sms:+1555CALLME", Problem{Line: 1, Reason: "bad option notify: want sms:+ and an E.164 number of 7 to 15 digits"}},
		{"bad alias", "alice@example.com:{PLAIN}s3cret:alias=nobody", Problem{Line: 1, Reason: "bad option alias: no '@'"}},
		{"duplicate", good + "\n#x\nOK@Example.com:{PLAIN}s3cret2", Problem{Line: 3, Reason: "duplicate address ok@example.com (first on line 1)"}},
		{"alias taken by earlier mailbox", good + "\nx@example.com:{PLAIN}s3cret:alias=ok@example.com", Problem{Line: 2, Reason: "duplicate address ok@example.com (first on line 1)"}},
		{"mailbox taken by earlier alias", "x@example.com:{PLAIN}s3cret:alias=ok@example.com\n" + good, Problem{Line: 2, Reason: "duplicate address ok@example.com (first on line 1)"}},
		{"alias of itself", "x@example.com:{PLAIN}s3cret:alias=X@example.com", Problem{Line: 1, Reason: "duplicate address x@example.com (repeated on this line)"}},
		{"too long", good + "\n" + strings.Repeat("a", MaxLineBytes+1), Problem{Line: 2, Reason: "line longer than 4096 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, problems := Parse(strings.NewReader(tt.input), "users.txt")
			tt.want.File = "users.txt"
			require.Len(t, problems, 1, "problems: %v", problems)
			assert.Equal(t, tt.want, problems[0], "got problem, want problem")
			assert.NotContains(t, problems[0].Reason, "s3cret", "a reason must not quote the password")
			assert.Len(t, entries, strings.Count(tt.input, "\n")-strings.Count(tt.input, "\n#"), "the good lines still load")
		})
	}
}

func TestParseSkipsCommentsAndBlankLines(t *testing.T) {
	input := "\ufeff# users\r\n\r\n   \n\talice@example.com:{PLAIN}a\r\n  # indented comment\nbob@example.com:{PLAIN}b"
	entries, problems := Parse(strings.NewReader(input), "f")
	require.Empty(t, problems)
	var got []string
	for _, e := range entries {
		got = append(got, fmt.Sprintf("%d %s %s", e.Line, e.Mailbox.Address, string(e.Secret)))
	}
	assert.Equal(t, []string{"4 alice@example.com a", "6 bob@example.com b"}, got)
}

func TestParseContinuesAfterLongLine(t *testing.T) {
	input := strings.Repeat("#", 3*MaxLineBytes) + "\nalice@example.com:{PLAIN}a\n" + strings.Repeat("x", MaxLineBytes) + "\n"
	entries, problems := Parse(strings.NewReader(input), "f")
	assert.Equal(t, []Problem{{File: "f", Line: 1, Reason: "line longer than 4096 bytes"}, {File: "f", Line: 3, Reason: "missing ':' after the address"}}, problems)
	require.Len(t, entries, 1)
	assert.Equal(t, 2, entries[0].Line)
}

func TestParseReadError(t *testing.T) {
	r := io.MultiReader(strings.NewReader("alice@example.com:{PLAIN}a\n"), iotest.ErrReader(errors.New("disk on fire")))
	entries, problems := Parse(r, "f")
	assert.Len(t, entries, 1)
	assert.Equal(t, []Problem{{File: "f", Line: 2, Reason: "read error: disk on fire"}}, problems)
}

func TestCanonicalAddress(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "Alice@Example.COM", want: "alice@example.com"},
		{in: "o'brien+x@a-b.example", want: "o'brien+x@a-b.example"},
		{in: "postmaster@localhost", want: "postmaster@localhost"},
		// KELVIN SIGN is canonically equivalent to K (NFC), then lowered.
		{in: "\u212Aelly@example.com", want: "kelly@example.com"},
		{in: "Jörg@Bücher.example", want: "jörg@xn--bcher-kva.example"},
		{in: "jo\u0308rg@xn--bcher-kva.example", want: "jörg@xn--bcher-kva.example"}, // NFD in, NFC out
		{in: "JÖRG@bücher.example", want: "jÖrg@xn--bcher-kva.example"},              // Ö is not folded
		{in: "用户@例子.广告", want: "用户@xn--fsqu00a.xn--4rr70v"},
		{in: "a\u200b@example.com", wantErr: true}, // a format character
		{in: "a@xn--a.example", wantErr: true},     // an A-label that does not decode
		{in: "a@b..c", wantErr: true},
		{in: ".a@b.c", wantErr: true},
		{in: "a.@b.c", wantErr: true},
		{in: "a@[127.0.0.1]", wantErr: true},
		{in: `"a b"@example.com`, wantErr: true},
		{in: "a@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("e", 61), wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := CanonicalAddress(tt.in)
		if tt.wantErr {
			assert.Error(t, err, "CanonicalAddress(%q)", tt.in)
			continue
		}
		require.NoError(t, err, "CanonicalAddress(%q)", tt.in)
		assert.Equal(t, tt.want, got, "CanonicalAddress(%q)", tt.in)
	}
}

func TestFileLineRoundTrip(t *testing.T) {
	input := "a@example.com:{BCRYPT}" + hunter2Cost4 + ":notify=sms:+15551234567,quota_bytes=7,alias=b@example.com,alias=c@example.com,zeta=1,alpha=x:y\n" +
		"d@example.com:{PLAIN}p w\n"
	entries, problems := Parse(strings.NewReader(input), "f")
	require.Empty(t, problems)
	var lines []string
	for _, e := range entries {
		lines = append(lines, e.FileLine())
	}
	want := []string{
		"a@example.com:{BCRYPT}" + hunter2Cost4 + ":notify=sms:+15551234567,quota_bytes=7,alias=b@example.com,alias=c@example.com,alpha=x:y,zeta=1",
		"d@example.com:{PLAIN}p w",
	}
	assert.Equal(t, want, lines)
}

func TestSecretIsRedacted(t *testing.T) {
	entries, _ := Parse(strings.NewReader("a@example.com:{PLAIN}s3cret"), "f")
	require.Len(t, entries, 1)
	e := entries[0]
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		assert.NotContains(t, fmt.Sprintf(verb, e), "s3cret", verb)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("entry", "entry", e, "secret", e.Secret)
	assert.NotContains(t, b.String(), "s3cret")
	assert.Contains(t, b.String(), "[REDACTED]")
}

// FuzzParse checks that Parse never panics and that whatever it accepts is
// canonical, unique, accepted again by NewFromEntries, and survives a trip
// through FileLine.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"alice@example.com:{BCRYPT}" + hunter2Cost4,
		"bob@Example.com:{PLAIN}pw:notify=https://h.example/x,quota_bytes=10,alias=b2@example.com",
		"c@example.com:{plain}pw:notify=sms:+15551234567,color=blue",
		"# comment\n\n  d@example.com:{PLAIN}pw  \r\n",
		"e@example.com:{PLAIN}pw\ne@example.com:{PLAIN}pw2",
		"x@example.com:{PLAIN}a:alias=x@example.com",
		"missing-colon",
		":{PLAIN}x",
		"a@b:{MD5}x",
		"a@b:{BCRYPT}$2a$99$" + hunter2Cost4[7:],
		"a@b:{PLAIN}x:notify=ftp://x",
		"a@b:{PLAIN}x:quota_bytes=-1,=,a=b=c",
		"\ufeffa@b:{PLAIN}x",
		"a@b:{PLAIN} x :",
		strings.Repeat("a", MaxLineBytes+5),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		entries, problems := Parse(strings.NewReader(input), "fuzz")
		for _, p := range problems {
			if p.Line < 1 || p.Reason == "" || p.File != "fuzz" {
				t.Fatalf("bad problem %+v", p)
			}
		}
		seen := map[string]bool{}
		last := 0
		for _, e := range entries {
			mb := e.Mailbox
			if e.Line <= last {
				t.Fatalf("line %d after %d", e.Line, last)
			}
			last = e.Line
			if mb.Address != strings.ToLower(mb.Address) || strings.Count(mb.Address, "@") != 1 || mb.Address != mb.Local+"@"+mb.Domain {
				t.Fatalf("address not canonical: %q (%q, %q)", mb.Address, mb.Local, mb.Domain)
			}
			if e.Scheme != SchemePlain && e.Scheme != SchemeBcrypt || e.Secret == "" {
				t.Fatalf("line %d: scheme %q, secret empty %v", e.Line, e.Scheme, e.Secret == "")
			}
			for _, a := range append([]string{mb.Address}, mb.Options.Aliases...) {
				if seen[a] {
					t.Fatalf("address %q accepted twice", a)
				}
				seen[a] = true
			}
			again, problems := Parse(strings.NewReader(e.FileLine()), "fuzz")
			if len(problems) > 0 || len(again) != 1 {
				t.Fatalf("FileLine of line %d does not parse back: %v", e.Line, problems)
			}
			again[0].Line = e.Line
			if !assert.Equal(t, e, again[0]) || again[0].Secret != e.Secret {
				t.Fatalf("FileLine of line %d changes the entry", e.Line)
			}
		}
		d, err := NewFromEntries(Config{MaxFileBytes: 1, AuthCacheTTL: 0}, nil, entries...)
		if err != nil {
			t.Fatalf("NewFromEntries refuses what Parse accepted: %v", err)
		}
		if d.Len() != len(entries) {
			t.Fatalf("Len %d, want %d", d.Len(), len(entries))
		}
		for _, e := range entries {
			if got, ok := d.Lookup(strings.ToUpper(e.Mailbox.Address)); !ok || got.Address != e.Mailbox.Address {
				t.Fatalf("Lookup(%q) = %q, %v", e.Mailbox.Address, got.Address, ok)
			}
		}
	})
}
