package ddns

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestZoneFilesEntries(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "example.com.zone"), []byte("@ TXT \"a\"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("not a zone"), 0o644))
	other := filepath.Join(t.TempDir(), "other")
	require.NoError(t, os.WriteFile(other, []byte("@ TXT \"b\"\n"), 0o644))
	domains := []string{"example.com", "other.org"}

	zf := ZoneFiles{Entries: []string{dir, "Other.Org.=" + other}, Domains: domains, Node: "n1"}
	files, err := zf.Files()
	require.NoError(t, err)
	assert.Equal(t, []ZoneFile{{Domain: "example.com", Path: filepath.Join(dir, "example.com.zone")}, {Domain: "other.org", Path: other}}, files)
	zs, err := zf.Load()
	require.NoError(t, err)
	assert.Equal(t, []string{"example.com", "other.org"}, zs.Domains())
	assert.Equal(t, 2, zs.Records())

	for _, tt := range []struct{ entry, want string }{
		{"example.net=" + other, "example.net is not a hosted domain"},
		{"example.com=", "has no path"},
		{"", "empty entry"},
	} {
		assert.ErrorContains(t, CheckZoneEntry(tt.entry, domains), tt.want, tt.entry)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "example.net.zone"), []byte("@ TXT \"a\"\n"), 0o644))
	_, err = zf.Load()
	assert.ErrorContains(t, err, "example.net is not a hosted domain")
	_, err = ZoneFiles{Entries: []string{dir, "example.com=" + other}, Domains: []string{"example.com", "example.net"}}.Load()
	assert.ErrorContains(t, err, "example.com has two files")

	// Records of a hosted subdomain belong in its own file.
	nested := filepath.Join(t.TempDir(), "nested")
	require.NoError(t, os.WriteFile(nested, []byte("@ TXT \"a\"\n\nwww.sub TXT \"b\"\n"), 0o644))
	_, err = ZoneFiles{Entries: []string{"example.com=" + nested}, Domains: []string{"example.com", "sub.example.com"}}.Load()
	assert.ErrorContains(t, err, "line 3: owner is outside the zone: www.sub.example.com. is in hosted domain sub.example.com")
}

// A changed zone file is served once it settles; a bad change is logged
// with its line and the zone in use stays.
func TestWatchZones(t *testing.T) {
	path := filepath.Join(t.TempDir(), "example.com.zone")
	// Replaced as an operator should (docs/deploy.md): write aside, then
	// rename. An in-place write is truncated first, and a watcher that
	// polls every 5 ms on a loaded machine can see the empty file settle
	// (make test saw the zone served empty once).
	write := func(s string) {
		require.NoError(t, os.WriteFile(path+".new", []byte(s), 0o644))
		require.NoError(t, os.Rename(path+".new", path))
	}
	write("@ TXT \"v1\"\n")
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	s := New(DefaultConfig(), testCluster(), nil, nil)
	s.log = log
	zf := ZoneFiles{Entries: []string{"example.com=" + path}, Domains: []string{"example.com"}, Node: "n1"}
	_, err := s.LoadZones(zf)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.WatchZones(ctx, zf, 5*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	txt := func() string {
		r := s.Answer(query("example.com.", dns.TypeTXT))
		if len(r.Answer) != 1 {
			return ""
		}
		return r.Answer[0].(*dns.TXT).Txt[0]
	}
	require.Equal(t, "v1", txt())
	write("@ TXT \"v2\"\n; a longer file, so the size changes too\n")
	require.Eventually(t, func() bool { return txt() == "v2" }, 10*time.Second, 5*time.Millisecond)

	write("@ TXT \"v3\"\n@ MX 10 elsewhere.example.net.\n")
	require.Eventually(t, func() bool { return bytesContain(&buf, "line 2: record is the array's: MX at the apex") }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, "v2", txt(), "the bad version is not served")
	assert.Contains(t, buf.String(), "keeping the zones in use")

	write("@ TXT \"v4\"\n")
	require.Eventually(t, func() bool { return txt() == "v4" }, 10*time.Second, 5*time.Millisecond)
}

func bytesContain(b *syncBuffer, s string) bool { return strings.Contains(b.String(), s) }
