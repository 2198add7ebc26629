package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logRecorder is a slog.Handler keeping every record as "LEVEL msg k=v ...".
type logRecorder struct {
	mu   sync.Mutex
	recs []string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%s", a.Key, a.Value.Resolve().String())
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, b.String())
	return nil
}

// matching returns the records containing every one of parts.
func (h *logRecorder) matching(parts ...string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
next:
	for _, r := range h.recs {
		for _, p := range parts {
			if !strings.Contains(r, p) {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

func (h *logRecorder) all() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.recs, "\n")
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

// replaceFile writes content to a new file renamed over path, as editors do.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	require.NoError(t, os.Rename(tmp, path))
}

func hashOf(t *testing.T, pw string) string {
	t.Helper()
	h, err := HashPassword(pw, minHashCost)
	require.NoError(t, err)
	return h
}

const usersFile = `# test users
alice@example.com:{BCRYPT}` + hunter2Cost4 + `:notify=https://hook.example/a,quota_bytes=1000,alias=Ali@Example.org
bob@example.com:{PLAIN}bobpw
this line is bad
carol@other.example:{PLAIN}carolpw:colour=red
bob@example.com:{PLAIN}s3cond
dave@example.com:{MD5}s3cret
`

func TestOpenLoadsAndLogs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeFile(t, path, usersFile)
	rec := &logRecorder{}
	d, err := Open(path, slog.New(rec))
	require.NoError(t, err)

	assert.Equal(t, 3, d.Len())
	assert.Equal(t, []string{"example.com", "example.org", "other.example"}, d.Domains())
	assert.Equal(t, uint64(1), d.Stats().Generation)

	for _, want := range [][]string{
		{"WARN", "bad line skipped", "file=" + path, "line=4", "reason=missing ':' after the address"},
		{"WARN", "bad line skipped", "line=6", "reason=duplicate address bob@example.com (first on line 3)"},
		{"WARN", "bad line skipped", "line=7", "reason=unknown scheme {MD5}"},
		{"WARN", "plain-text passwords", "lines=3,5"},
		{"WARN", "unknown option keys", "line=5", "keys=colour"},
		{"INFO", "directory: loaded", "mailboxes=3", "bad_lines=3"},
	} {
		assert.Len(t, rec.matching(want...), 1, "want one log record with %q in\n%s", want, rec.all())
	}
	logs := rec.all()
	for _, secret := range []string{"bobpw", "carolpw", "s3cond", "s3cret", hunter2Cost4} {
		assert.NotContains(t, logs, secret, "the log must not show a password")
	}
}

func TestOpenFails(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	writeFile(t, big, strings.Repeat("# padding\n", 20))
	tests := []struct {
		name string
		path string
		cfg  Config
		want string
	}{
		{"missing file", filepath.Join(dir, "nope"), DefaultConfig(), "no such file"},
		{"a directory", dir, DefaultConfig(), "is a directory"},
		{"too big", big, Config{MaxFileBytes: 100}, "more than the limit of 100"},
		{"bad config", big, Config{}, "MaxFileBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := OpenWithConfig(tt.path, tt.cfg, nil)
			require.Error(t, err)
			assert.Nil(t, d)
			assert.Contains(t, err.Error(), tt.want)
			assert.True(t, strings.HasPrefix(err.Error(), "directory: "), "got %q", err)
		})
	}
}

func TestLookup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeFile(t, path, usersFile)
	d, err := Open(path, nil)
	require.NoError(t, err)
	tests := []struct {
		in       string
		wantAddr string // "" for not found
	}{
		{"alice@example.com", "alice@example.com"},
		{"ALICE@EXAMPLE.COM", "alice@example.com"},
		{"Alice@Example.Com", "alice@example.com"},
		{"ali@example.org", "alice@example.com"}, // alias
		{"CAROL@other.example", "carol@other.example"},
		{"alice@example.net", ""},
		{"dave@example.com", ""}, // its line was bad
		{" alice@example.com", ""},
		{"\u212Aarol@other.example", ""}, // not folded to k... nor to c
		{"", ""},
	}
	for _, tt := range tests {
		got, ok := d.Lookup(tt.in)
		assert.Equal(t, tt.wantAddr != "", ok, "Lookup(%q) found", tt.in)
		assert.Equal(t, tt.wantAddr, got.Address, "Lookup(%q)", tt.in)
	}

	alice, _ := d.Lookup("alice@example.com")
	assert.Equal(t, Mailbox{Address: "alice@example.com", Local: "alice", Domain: "example.com", Options: Options{
		Notify: "https://hook.example/a", QuotaBytes: 1000, Aliases: []string{"ali@example.org"},
	}}, alice)

	// The caller's copy is its own.
	alice.Options.Aliases[0] = "changed@example.com"
	carol, _ := d.Lookup("carol@other.example")
	carol.Options.Extra["colour"] = "blue"
	alice2, _ := d.Lookup("alice@example.com")
	carol2, _ := d.Lookup("carol@other.example")
	assert.Equal(t, "ali@example.org", alice2.Options.Aliases[0])
	assert.Equal(t, "red", carol2.Options.Extra["colour"])
}

func TestAuthenticate(t *testing.T) {
	d, err := NewFromEntries(DefaultConfig(), nil,
		Entry{Mailbox: Mailbox{Address: "Alice@Example.com", Options: Options{Aliases: []string{"ali@example.com"}}}, Scheme: SchemeBcrypt, Secret: hunter2Cost4},
		Entry{Mailbox: Mailbox{Address: "bob@example.com"}, Scheme: SchemePlain, Secret: "bobpw"},
		Entry{Mailbox: Mailbox{Address: "long@example.com"}, Scheme: SchemeBcrypt, Secret: Secret(strings.TrimPrefix(hashOf(t, strings.Repeat("x", 72)), "{BCRYPT}"))},
	)
	require.NoError(t, err)
	tests := []struct {
		name     string
		addr, pw string
		wantAddr string // "" for ErrAuth
	}{
		{"bcrypt right", "alice@example.com", "hunter2", "alice@example.com"},
		{"bcrypt right, address case", "ALICE@example.COM", "hunter2", "alice@example.com"},
		{"bcrypt right, alias", "ali@example.com", "hunter2", "alice@example.com"},
		{"bcrypt wrong", "alice@example.com", "hunter3", ""},
		{"bcrypt password case matters", "alice@example.com", "HUNTER2", ""},
		{"bcrypt empty", "alice@example.com", "", ""},
		{"plain right", "bob@example.com", "bobpw", "bob@example.com"},
		{"plain wrong", "bob@example.com", "bobpw2", ""},
		{"plain prefix", "bob@example.com", "bob", ""},
		{"unknown", "eve@example.com", "hunter2", ""},
		{"unknown, empty", "eve@example.com", "", ""},
		{"72 bytes right", "long@example.com", strings.Repeat("x", 72), "long@example.com"},
		{"73 bytes sharing the first 72", "long@example.com", strings.Repeat("x", 73), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Authenticate(tt.addr, tt.pw)
			if tt.wantAddr == "" {
				assert.ErrorIs(t, err, ErrAuth)
				assert.Equal(t, Mailbox{}, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantAddr, got.Address)
		})
	}
}

func TestNewFromEntriesRefusesBadEntries(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
		want    string
	}{
		{"bad address", []Entry{{Mailbox: Mailbox{Address: "nobody"}, Scheme: SchemePlain, Secret: "x"}}, "directory: entry 1: bad address: no '@'"},
		{"duplicate", []Entry{
			{Mailbox: Mailbox{Address: "a@example.com"}, Scheme: SchemePlain, Secret: "x"},
			{Mailbox: Mailbox{Address: "A@example.com"}, Scheme: SchemePlain, Secret: "y"},
		}, "directory: entry 2: duplicate address a@example.com (first in entry 1)"},
		{"no scheme", []Entry{{Mailbox: Mailbox{Address: "a@example.com"}, Secret: "x"}}, "directory: entry 1: unknown scheme"},
		{"plain with colon", []Entry{{Mailbox: Mailbox{Address: "a@example.com"}, Scheme: SchemePlain, Secret: "a:b"}}, "directory: entry 1: password contains ':'"},
		{"negative quota", []Entry{{Mailbox: Mailbox{Address: "a@example.com", Options: Options{QuotaBytes: -1}}, Scheme: SchemePlain, Secret: "x"}}, "directory: entry 1: bad option quota_bytes: want an integer > 0"},
		{"known key in extra", []Entry{{Mailbox: Mailbox{Address: "a@example.com", Options: Options{Extra: map[string]string{"notify": "x"}}}, Scheme: SchemePlain, Secret: "x"}}, "directory: entry 1: bad option notify: a known key in Extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewFromEntries(DefaultConfig(), nil, tt.entries...)
			assert.Nil(t, d)
			require.Error(t, err)
			assert.Equal(t, tt.want, err.Error())
		})
	}
}

func TestNewFromEntriesHasNoFile(t *testing.T) {
	d, err := NewFromEntries(DefaultConfig(), nil)
	require.NoError(t, err)
	assert.Equal(t, 0, d.Len())
	assert.Empty(t, d.Domains())
	assert.ErrorIs(t, d.Reload(), ErrNoFile)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d.Watch(ctx, time.Millisecond) // returns at once: ctx is done
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	writeFile(t, path, "a@example.com:{PLAIN}apw\nb@example.com:{PLAIN}bpw\n")
	d, err := Open(path, nil)
	require.NoError(t, err)
	_, err = d.Authenticate("a@example.com", "apw")
	require.NoError(t, err)

	// Changed: b gone, c new, a's password changed.
	writeFile(t, path, "a@example.com:{PLAIN}apw2\nc@other.example:{PLAIN}cpw\n")
	require.NoError(t, d.Reload())
	_, okB := d.Lookup("b@example.com")
	_, okC := d.Lookup("c@other.example")
	assert.False(t, okB, "b removed")
	assert.True(t, okC, "c added")
	assert.Equal(t, []string{"example.com", "other.example"}, d.Domains())
	_, err = d.Authenticate("a@example.com", "apw")
	assert.ErrorIs(t, err, ErrAuth, "old password")
	_, err = d.Authenticate("a@example.com", "apw2")
	assert.NoError(t, err, "new password")
	assert.Equal(t, uint64(2), d.Stats().Generation)

	// Unreadable: removed, then replaced by a directory.
	require.NoError(t, os.Remove(path))
	assert.ErrorIs(t, d.Reload(), os.ErrNotExist)
	require.NoError(t, os.Mkdir(path, 0o700))
	assert.ErrorContains(t, d.Reload(), "is a directory")
	assert.Equal(t, 2, d.Len(), "old contents kept")
	_, okC = d.Lookup("c@other.example")
	assert.True(t, okC, "old contents kept")
	assert.Equal(t, uint64(2), d.Stats().Generation)

	// Readable again.
	require.NoError(t, os.Remove(path))
	writeFile(t, path, "z@example.com:{PLAIN}zpw\n")
	require.NoError(t, d.Reload())
	assert.Equal(t, 1, d.Len())
}

func TestWatchReloadsChangedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeFile(t, path, "a@example.com:{PLAIN}apw\n")
	rec := &logRecorder{}
	d, err := Open(path, slog.New(rec))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Watch(ctx, 5*time.Millisecond)
	}()
	defer func() {
		cancel()
		<-done
	}()

	// Replaced by rename (new inode).
	replaceFile(t, path, "a@example.com:{PLAIN}apw\nb@example.com:{PLAIN}bpw\n")
	require.Eventually(t, func() bool { _, ok := d.Lookup("b@example.com"); return ok }, 10*time.Second, time.Millisecond)
	assert.Equal(t, uint64(2), d.Stats().Generation)

	// Rewritten in place with a different size.
	writeFile(t, path, "c@example.com:{PLAIN}cpw\n")
	require.Eventually(t, func() bool { return d.Stats().Generation == 3 }, 10*time.Second, time.Millisecond)
	_, ok := d.Lookup("c@example.com")
	assert.True(t, ok)
	assert.Equal(t, 1, d.Len())

	// Removed: the contents stay, and the failure is logged.
	require.NoError(t, os.Remove(path))
	require.Eventually(t, func() bool { return len(rec.matching("file unavailable")) > 0 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, 1, d.Len())

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}

// TestWatchPolling runs Watch under the fake clock of a synctest bubble, so
// that "nothing happens over many intervals" can be checked exactly.
func TestWatchPolling(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeFile(t, path, "a@example.com:{PLAIN}apw\n")
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		rec := &logRecorder{}
		d, err := Open(path, slog.New(rec))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.Watch(ctx, interval)
		}()
		step := func(n int) {
			time.Sleep(time.Duration(n)*interval + interval/2)
			synctest.Wait()
		}

		step(10)
		assert.Equal(t, uint64(1), d.Stats().Generation, "an unchanged file is not reloaded")

		require.NoError(t, os.Remove(path))
		step(10)
		assert.Len(t, rec.matching("WARN", "file unavailable", "mailboxes=1", "no such file"), 1, "logged once, not every interval:\n%s", rec.all())
		assert.Equal(t, 1, d.Len())

		writeFile(t, path, "a@example.com:{PLAIN}apw\nb@example.com:{PLAIN}bpw\n")
		step(1)
		assert.Equal(t, uint64(1), d.Stats().Generation, "a change is loaded only once it stayed the same for an interval")
		step(1)
		assert.Equal(t, uint64(2), d.Stats().Generation)
		assert.Equal(t, 2, d.Len())
		assert.Len(t, rec.matching("INFO", "file available again"), 1, "%s", rec.all())

		cancel()
		<-done
	})
}

func TestAuthCache(t *testing.T) {
	entries := []Entry{
		{Mailbox: Mailbox{Address: "a@example.com"}, Scheme: SchemeBcrypt, Secret: hunter2Cost4},
		{Mailbox: Mailbox{Address: "b@example.com"}, Scheme: SchemeBcrypt, Secret: hunter2Cost4},
		{Mailbox: Mailbox{Address: "c@example.com"}, Scheme: SchemeBcrypt, Secret: hunter2Cost4},
		{Mailbox: Mailbox{Address: "p@example.com"}, Scheme: SchemePlain, Secret: "hunter2"},
	}
	type login struct {
		addr, pw string
		ok       bool
	}
	tests := []struct {
		name       string
		cfg        Config
		logins     []login
		wantHits   uint64
		wantMisses uint64
		wantSize   int
	}{
		{
			name:       "second login is a hit",
			cfg:        DefaultConfig(),
			logins:     []login{{"a@example.com", "hunter2", true}, {"A@example.com", "hunter2", true}},
			wantHits:   1,
			wantMisses: 1,
			wantSize:   1,
		},
		{
			name: "failures are not cached and do not evict",
			cfg:  DefaultConfig(),
			logins: []login{
				{"a@example.com", "wrong", false}, {"a@example.com", "wrong", false},
				{"a@example.com", "hunter2", true}, {"a@example.com", "wrong", false}, {"a@example.com", "hunter2", true},
			},
			wantHits:   1,
			wantMisses: 4,
			wantSize:   1,
		},
		{
			name:     "plain and unknown users do not use the cache",
			cfg:      DefaultConfig(),
			logins:   []login{{"p@example.com", "hunter2", true}, {"p@example.com", "hunter2", true}, {"x@example.com", "hunter2", false}},
			wantSize: 0,
		},
		{
			name: "least recently used is evicted",
			cfg:  Config{AuthCacheTTL: time.Minute, AuthCacheMaxEntries: 2, MaxFileBytes: 1},
			logins: []login{
				{"a@example.com", "hunter2", true}, {"b@example.com", "hunter2", true}, // miss, miss
				{"a@example.com", "hunter2", true}, // hit: b is now the oldest
				{"c@example.com", "hunter2", true}, // miss, evicts b
				{"a@example.com", "hunter2", true}, // hit
				{"b@example.com", "hunter2", true}, // miss, evicts c
			},
			wantHits:   2,
			wantMisses: 4,
			wantSize:   2,
		},
		{
			name:       "off",
			cfg:        Config{MaxFileBytes: 1},
			logins:     []login{{"a@example.com", "hunter2", true}, {"a@example.com", "hunter2", true}},
			wantMisses: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewFromEntries(tt.cfg, nil, entries...)
			require.NoError(t, err)
			for i, l := range tt.logins {
				_, err := d.Authenticate(l.addr, l.pw)
				assert.Equal(t, l.ok, err == nil, "login %d (%s): got err %v", i, l.addr, err)
			}
			st := d.Stats()
			assert.Equal(t, tt.wantHits, st.CacheHits, "hits")
			assert.Equal(t, tt.wantMisses, st.CacheMisses, "misses")
			assert.Equal(t, tt.wantSize, st.CacheEntries, "entries")
		})
	}
}

func TestAuthCacheExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		d, err := NewFromEntries(cfg, nil, Entry{Mailbox: Mailbox{Address: "a@example.com"}, Scheme: SchemeBcrypt, Secret: hunter2Cost4})
		require.NoError(t, err)
		login := func() {
			_, err := d.Authenticate("a@example.com", "hunter2")
			require.NoError(t, err)
		}
		login()
		time.Sleep(cfg.AuthCacheTTL - time.Second)
		login()
		assert.Equal(t, uint64(1), d.Stats().CacheHits, "hit before the TTL")
		time.Sleep(time.Second)
		login()
		assert.Equal(t, uint64(1), d.Stats().CacheHits, "no hit at the TTL")
		assert.Equal(t, uint64(2), d.Stats().CacheMisses)
	})
}

func TestReloadEmptiesAuthCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeFile(t, path, "a@example.com:{BCRYPT}"+hunter2Cost4+"\n")
	d, err := Open(path, nil)
	require.NoError(t, err)
	_, err = d.Authenticate("a@example.com", "hunter2")
	require.NoError(t, err)
	require.Equal(t, 1, d.Stats().CacheEntries)

	// hunter2 was cached; after the reload only the new password works.
	writeFile(t, path, "a@example.com:"+hashOf(t, "correct horse")+"\n")
	require.NoError(t, d.Reload())
	assert.Equal(t, 0, d.Stats().CacheEntries)
	_, err = d.Authenticate("a@example.com", "hunter2")
	assert.ErrorIs(t, err, ErrAuth)
	_, err = d.Authenticate("a@example.com", "correct horse")
	assert.NoError(t, err)
}

func TestConcurrentUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeFile(t, path, "a@example.com:{BCRYPT}"+hunter2Cost4+"\nb@example.com:{PLAIN}bpw\n")
	d, err := Open(path, nil)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				if i == 0 && j%5 == 0 {
					if err := d.Reload(); err != nil {
						errs <- err
					}
				}
				if _, err := d.Authenticate("a@example.com", "hunter2"); err != nil {
					errs <- fmt.Errorf("a: %w", err)
				}
				if _, ok := d.Lookup("B@example.com"); !ok {
					errs <- errors.New("b not found")
				}
				_ = d.Domains()
				_ = d.Stats()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
