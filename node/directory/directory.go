package directory

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailarray/node/mailaddr"
)

// Config tunes a Directory. The zero value is not valid: start from
// DefaultConfig.
type Config struct {
	// AuthCacheTTL is how long a successful bcrypt verification is reused
	// for the same address and password (see authCache for the trade-off).
	// 0 turns the cache off: every login costs a bcrypt comparison.
	AuthCacheTTL time.Duration
	// AuthCacheMaxEntries bounds the cache; the least recently used entry
	// goes first. Needed when AuthCacheTTL > 0.
	AuthCacheMaxEntries int
	// MaxFileBytes bounds the file; a larger file is not loaded (Open fails,
	// Reload keeps the old contents), since it is read whole into memory.
	MaxFileBytes int64
	// MaxLoggedProblems bounds the bad lines one load logs one by one; the
	// rest are only counted, so a broken file cannot flood the log.
	MaxLoggedProblems int
	// RecentChange is how long after loading a changed file LookupFresh
	// reports an unknown address as possibly not loaded yet (see there).
	// 0: never.
	RecentChange time.Duration
}

// DefaultConfig returns the settings of a real node.
func DefaultConfig() Config {
	return Config{
		// Long enough that a POP3 client polling every minute or a benchmark
		// pays bcrypt once per user, short enough to bound the window
		// described at authCache.
		AuthCacheTTL: 5 * time.Minute,
		// About 1 MB of memory at most.
		AuthCacheMaxEntries: 10_000,
		// Room for about a million mailboxes with bcrypt hashes.
		MaxFileBytes: 128 << 20,
		// Enough to see what kind of mistake a file has.
		MaxLoggedProblems: 50,
		// A file being written in place settles within one Watch poll
		// (DefaultWatchInterval); five of them is ample, and a sender told
		// to retry comes back minutes later, when it has long settled.
		RecentChange: 5 * DefaultWatchInterval,
	}
}

// Validate reports a setting that makes no sense.
func (c Config) Validate() error {
	switch {
	case c.AuthCacheTTL < 0:
		return fmt.Errorf("directory: config: AuthCacheTTL %v < 0", c.AuthCacheTTL)
	case c.AuthCacheTTL > 0 && c.AuthCacheMaxEntries <= 0:
		return fmt.Errorf("directory: config: AuthCacheMaxEntries %d <= 0 with the cache on", c.AuthCacheMaxEntries)
	case c.MaxFileBytes <= 0:
		return fmt.Errorf("directory: config: MaxFileBytes %d <= 0", c.MaxFileBytes)
	case c.MaxLoggedProblems < 0:
		return fmt.Errorf("directory: config: MaxLoggedProblems %d < 0", c.MaxLoggedProblems)
	case c.RecentChange < 0:
		return fmt.Errorf("directory: config: RecentChange %v < 0", c.RecentChange)
	}
	return nil
}

// DefaultWatchInterval is the polling interval Watch uses when given 0.
const DefaultWatchInterval = 2 * time.Second

// maxLoggedPlainLines bounds the line numbers listed by the warning about
// {PLAIN} passwords.
const maxLoggedPlainLines = 20

// ErrNoFile is returned by Reload for a Directory made by NewFromEntries.
var ErrNoFile = errors.New("directory: no file to reload")

// Directory is the set of local mailboxes. It is safe for concurrent use.
// Lookups and authentications read an immutable snapshot through an atomic
// pointer, without locks (except the small auth cache's); a load builds a
// new snapshot and swaps it in, so a reader sees either the old file or the
// new one, never a mix.
type Directory struct {
	cfg  Config
	log  *slog.Logger
	path string // "" when made by NewFromEntries
	// cacheKey keys the auth cache's MACs; random per Directory, never
	// leaves it.
	cacheKey []byte

	cur atomic.Pointer[snapshot]

	cacheHits   atomic.Uint64
	cacheMisses atomic.Uint64

	mu     sync.Mutex  // serialises loads; guards the fields below
	loaded os.FileInfo // the file as it was when last loaded
	// changedAt is when a load last found the file changed since the load
	// before (zero until then: the first load is no change).
	changedAt time.Time
	pending   os.FileInfo // a changed file seen by the last poll, loaded once it stays the same
	gen       uint64      // successful loads
}

// snapshot is one loaded version of the directory, never changed after
// being published.
type snapshot struct {
	gen       uint64
	mailboxes int
	byAddr    map[string]*record // addresses and aliases
	domains   []string           // sorted
	// dummy is compared against for unknown addresses; nil when no mailbox
	// uses bcrypt (then a known address costs no bcrypt either).
	dummy []byte
	cache *authCache
}

type record struct {
	mb     Mailbox
	scheme Scheme
	hash   []byte            // SchemeBcrypt
	plain  [sha256.Size]byte // SchemePlain: digest of the password
}

// Stats describe the directory for logs and reports.
type Stats struct {
	// Generation counts successful loads (1 after Open or NewFromEntries).
	Generation uint64
	// Mailboxes is the number of mailboxes (aliases not counted).
	Mailboxes int
	// CacheHits counts logins answered from the auth cache, CacheMisses
	// those of known bcrypt mailboxes that ran bcrypt; both since creation.
	CacheHits   uint64
	CacheMisses uint64
	// CacheEntries is the current size of the auth cache.
	CacheEntries int
}

// Open loads the directory file at path with DefaultConfig. See
// OpenWithConfig.
func Open(path string, log *slog.Logger) (*Directory, error) {
	return OpenWithConfig(path, DefaultConfig(), log)
}

// OpenWithConfig loads the directory file at path. It fails only if cfg is
// invalid or the file cannot be read at all; bad lines are logged (warning,
// with file and line) and skipped. A nil log discards.
func OpenWithConfig(path string, cfg Config, log *slog.Logger) (*Directory, error) {
	d, err := newDirectory(cfg, log)
	if err != nil {
		return nil, err
	}
	d.path = path
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.loadLocked(); err != nil {
		return nil, err
	}
	return d, nil
}

// NewFromEntries makes a Directory from entries instead of a file, for tests
// and the simulator. Entries are checked as file lines are (only
// Mailbox.Address, Scheme, Secret and Options need to be set); unlike a file,
// any bad or duplicate entry is an error, since the caller built them. Using
// {PLAIN} here is expected and logged at debug level only.
func NewFromEntries(cfg Config, log *slog.Logger, entries ...Entry) (*Directory, error) {
	d, err := newDirectory(cfg, log)
	if err != nil {
		return nil, err
	}
	checked := make([]Entry, 0, len(entries))
	claims := make(map[string]int, len(entries))
	var errs []error
	plain := 0
	for i, e := range entries {
		e, reason := validateEntry(e)
		if reason == "" {
			reason = claim(claims, e, i+1, func(n int) string { return fmt.Sprintf("in entry %d", n) })
		}
		if reason != "" {
			errs = append(errs, fmt.Errorf("directory: entry %d: %s", i+1, reason))
			continue
		}
		if e.Scheme == SchemePlain {
			plain++
		}
		checked = append(checked, e)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.publishLocked(checked)
	d.log.Debug("directory: loaded from entries", "mailboxes", len(checked), "plain_passwords", plain)
	return d, nil
}

func newDirectory(cfg Config, log *slog.Logger) (*Directory, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand: it crashes the program instead)
	return &Directory{cfg: cfg, log: log, cacheKey: key}, nil
}

// Lookup returns the mailbox that address (or one of its aliases) names,
// ignoring ASCII case. The Mailbox is the caller's own copy.
func (d *Directory) Lookup(address string) (Mailbox, bool) {
	r := d.cur.Load().byAddr[mailaddr.Key(address)]
	if r == nil {
		return Mailbox{}, false
	}
	return r.mb.clone(), true
}

// LookupFresh is Lookup for a caller about to refuse an unknown address
// for good, as the SMTP listener's 550 5.1.1 does, which makes the sender's
// MTA bounce the mail. A mailbox just added to the file is not known until
// Watch's next poll sees the change and the poll after that loads it (a
// few seconds), so when address is unknown LookupFresh checks whether the
// file changed since it was loaded, loads it at once if so, and looks
// again.
//
// That load skips Watch's wait for the file to settle, so it may catch a
// file being rewritten in place half-written, missing mailboxes that do
// exist. For that case recent is true when the address is still unknown
// but a load (this one, or Watch's) found the file changed less than
// Config.RecentChange ago: the caller should then refuse temporarily (450
// 4.1.1), and the sender's retry finds the settled file. The time is the
// node's, not the file's modification time, which copying tools may set
// to the past. Otherwise (no file, no change since the first load, a file
// that cannot be read) an unknown address is reported as Lookup does.
//
// Checking costs one stat of the file per unknown address, and a load only
// when the file changed, so a stream of unknown addresses (a dictionary
// attack) costs no more than before.
func (d *Directory) LookupFresh(address string) (mb Mailbox, ok, recent bool) {
	if mb, ok := d.Lookup(address); ok || d.path == "" {
		return mb, ok, false
	}
	fi, err := os.Stat(d.path)
	if err != nil {
		return Mailbox{}, false, false // Watch reports the missing file
	}
	d.mu.Lock()
	if !sameStat(d.loaded, fi) {
		d.pending = nil // loaded now: the poll need not wait for it
		if err := d.loadLocked(); err != nil {
			d.log.Warn("directory: reload for an unknown address failed, keeping the loaded mailboxes", "file", d.path, "err", err)
		}
	}
	changedAt := d.changedAt
	d.mu.Unlock()
	if mb, ok = d.Lookup(address); ok {
		return mb, true, false
	}
	return Mailbox{}, false, !changedAt.IsZero() && time.Since(changedAt) < d.cfg.RecentChange
}

// Authenticate checks password for the mailbox that address (or one of its
// aliases) names and returns the mailbox. It returns ErrAuth for an unknown
// address, an empty or wrong password alike. For an unknown address it still
// runs a bcrypt comparison at the cost most of the file uses, so that its
// answer takes about as long as for a known one (unless no mailbox uses
// bcrypt). Successful bcrypt verifications are cached (Config.AuthCacheTTL).
func (d *Directory) Authenticate(address, password string) (Mailbox, error) {
	if password == "" {
		return Mailbox{}, ErrAuth
	}
	s := d.cur.Load()
	r := s.byAddr[mailaddr.Key(address)]
	if r == nil {
		if s.dummy != nil {
			_ = bcrypt.CompareHashAndPassword(s.dummy, []byte(password))
		}
		return Mailbox{}, ErrAuth
	}
	switch r.scheme {
	case SchemePlain:
		got := plainDigest(password)
		if subtle.ConstantTimeCompare(got[:], r.plain[:]) != 1 {
			return Mailbox{}, ErrAuth
		}
		return r.mb.clone(), nil
	case SchemeBcrypt:
		digest := cacheDigest(d.cacheKey, password)
		if s.cache.hit(r.mb.Address, digest, time.Now()) {
			d.cacheHits.Add(1)
			return r.mb.clone(), nil
		}
		d.cacheMisses.Add(1)
		err := bcrypt.CompareHashAndPassword(r.hash, []byte(password))
		// bcrypt ignores bytes past the 72nd: refuse such a password even
		// when its prefix matches (after the comparison, to keep the time).
		if err != nil || len(password) > maxBcryptPasswordBytes {
			return Mailbox{}, ErrAuth
		}
		s.cache.add(r.mb.Address, digest, time.Now())
		return r.mb.clone(), nil
	}
	panic(fmt.Sprintf("directory: invariant broken: record with unchecked scheme %q", r.scheme))
}

// Domains returns the domains, sorted, of every address Lookup knows
// (mailboxes and aliases). The node hosts these and its configured ones.
func (d *Directory) Domains() []string {
	return slices.Clone(d.cur.Load().domains)
}

// Len returns the number of mailboxes (aliases not counted).
func (d *Directory) Len() int { return d.cur.Load().mailboxes }

// Stats returns the directory's counters.
func (d *Directory) Stats() Stats {
	s := d.cur.Load()
	return Stats{
		Generation:   s.gen,
		Mailboxes:    s.mailboxes,
		CacheHits:    d.cacheHits.Load(),
		CacheMisses:  d.cacheMisses.Load(),
		CacheEntries: s.cache.len(),
	}
}

// Reload reads the file again and replaces the contents with it (which also
// empties the auth cache). If the file cannot be read, the old contents stay
// and the error is returned. A Directory made by NewFromEntries returns
// ErrNoFile.
func (d *Directory) Reload() error {
	if d.path == "" {
		return ErrNoFile
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loadLocked()
}

// Watch polls the file every interval (0: DefaultWatchInterval) and reloads
// it when its identity (device and inode), size or modification time
// changed. It runs in the caller's goroutine and returns when ctx is done.
// Failures are logged once each, with the number of mailboxes kept, and
// again when they clear.
//
// Polling rather than inotify: no extra goroutine or descriptor, and under
// the simulator's fake clock it is deterministic. Its blind spot is a
// rewrite in place that keeps the size within the file system's timestamp
// granularity; writing a new file and renaming it over the old one (as
// editors and configuration tools do) always changes the inode.
func (d *Directory) Watch(ctx context.Context, interval time.Duration) {
	if d.path == "" {
		<-ctx.Done()
		return
	}
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := d.poll()
		switch {
		case err != nil && err.Error() != lastErr:
			lastErr = err.Error()
			d.log.Warn("directory: file unavailable, keeping the loaded mailboxes", "file", d.path, "mailboxes", d.Len(), "err", err)
		case err == nil && lastErr != "":
			lastErr = ""
			d.log.Info("directory: file available again", "file", d.path)
		}
	}
}

// poll reloads the file once it changed since the last load and then
// stayed the same for one poll interval: a file being rewritten in place
// (truncated, then written) is never loaded half-written, which would
// briefly refuse every mailbox.
func (d *Directory) poll() error {
	fi, err := os.Stat(d.path)
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if sameStat(d.loaded, fi) {
		d.pending = nil
		return nil
	}
	if !sameStat(d.pending, fi) {
		d.pending = fi // changed: wait one interval for it to settle
		return nil
	}
	d.pending = nil
	return d.loadLocked()
}

func sameStat(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// loadLocked reads, parses and publishes the file. d.mu must be held.
func (d *Directory) loadLocked() error {
	f, err := os.Open(d.path)
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	defer f.Close()
	// Stat before reading: a write that lands during the read then changes
	// what the next poll sees, so it is picked up.
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	if fi.IsDir() {
		return fmt.Errorf("directory: %s is a directory", d.path)
	}
	if fi.Size() > d.cfg.MaxFileBytes {
		return fmt.Errorf("directory: %s has %d bytes, more than the limit of %d", d.path, fi.Size(), d.cfg.MaxFileBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, d.cfg.MaxFileBytes+1))
	if err != nil {
		return fmt.Errorf("directory: read %s: %w", d.path, err)
	}
	if int64(len(data)) > d.cfg.MaxFileBytes {
		return fmt.Errorf("directory: %s grew past the limit of %d bytes while read", d.path, d.cfg.MaxFileBytes)
	}
	entries, problems := Parse(bytes.NewReader(data), d.path)
	d.publishLocked(entries)
	if d.loaded != nil && !sameStat(d.loaded, fi) {
		d.changedAt = time.Now()
	}
	d.loaded = fi
	d.logLoad(entries, problems)
	return nil
}

// logLoad reports what a load of the file found.
func (d *Directory) logLoad(entries []Entry, problems []Problem) {
	for i, p := range problems {
		if i == d.cfg.MaxLoggedProblems {
			d.log.Warn("directory: more bad lines skipped", "file", d.path, "count", len(problems)-i)
			break
		}
		d.log.Warn("directory: bad line skipped", "file", p.File, "line", p.Line, "reason", p.Reason)
	}
	var plain []string
	for _, e := range entries {
		if e.Scheme == SchemePlain {
			plain = append(plain, strconv.Itoa(e.Line))
		}
		if len(e.Mailbox.Options.Extra) > 0 {
			keys := slices.Sorted(maps.Keys(e.Mailbox.Options.Extra))
			d.log.Warn("directory: unknown option keys kept", "file", d.path, "line", e.Line, "keys", strings.Join(keys, ","))
		}
	}
	if len(plain) > 0 {
		lines := strings.Join(plain[:min(len(plain), maxLoggedPlainLines)], ",")
		if len(plain) > maxLoggedPlainLines {
			lines += fmt.Sprintf(" and %d more", len(plain)-maxLoggedPlainLines)
		}
		d.log.Warn("directory: plain-text passwords in use (for tests only)", "file", d.path, "lines", lines)
	}
	d.log.Info("directory: loaded", "file", d.path, "mailboxes", len(entries), "bad_lines", len(problems), "generation", d.gen)
}

// publishLocked builds a snapshot of entries, which must be checked and free
// of duplicates, and makes it current. d.mu must be held.
func (d *Directory) publishLocked(entries []Entry) {
	d.gen++
	s := &snapshot{
		gen:       d.gen,
		mailboxes: len(entries),
		byAddr:    make(map[string]*record, len(entries)),
		cache:     newAuthCache(d.cfg.AuthCacheTTL, d.cfg.AuthCacheMaxEntries),
	}
	domains := make(map[string]bool)
	costs := make(map[int]int)
	for _, e := range entries {
		r := &record{mb: e.Mailbox, scheme: e.Scheme}
		switch e.Scheme {
		case SchemeBcrypt:
			r.hash = []byte(e.Secret)
			cost, err := bcrypt.Cost(r.hash)
			if err != nil {
				panic(fmt.Sprintf("directory: invariant broken: unchecked bcrypt hash on line %d: %v", e.Line, err))
			}
			costs[cost]++
		case SchemePlain:
			r.plain = plainDigest(string(e.Secret))
		default:
			panic(fmt.Sprintf("directory: invariant broken: unchecked scheme on line %d", e.Line))
		}
		for _, a := range append([]string{e.Mailbox.Address}, e.Mailbox.Options.Aliases...) {
			if s.byAddr[a] != nil {
				panic(fmt.Sprintf("directory: invariant broken: duplicate address %s reached publish", a))
			}
			s.byAddr[a] = r
			_, dom, _ := strings.Cut(a, "@")
			domains[dom] = true
		}
	}
	s.domains = slices.Sorted(maps.Keys(domains))
	// The dummy comparison uses the most common cost (the higher on a tie),
	// so an unknown address costs what most known ones do.
	best, bestN := 0, 0
	for c, n := range costs {
		if n > bestN || n == bestN && c > best {
			best, bestN = c, n
		}
	}
	if best > 0 {
		s.dummy = dummyHash(best)
	}
	d.cur.Store(s)
}
