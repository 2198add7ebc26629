package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailarray/node/env"
)

// Antivirus policies, per recipient domain.
const (
	// PolicyDefang replaces each infected part with a text notice and
	// delivers the rest of the message intact.
	PolicyDefang = "defang"
	// PolicyQuarantine holds the whole message in the quarantine queue.
	PolicyQuarantine = "quarantine"
)

// VirusStatusHeader is the header field the antivirus adds to an infected
// message.
const VirusStatusHeader = "X-Virus-Status"

// AVConfig configures the Antivirus filter.
type AVConfig struct {
	// SignatureFile holds extra signatures (see ParseSignatures); "" means
	// the built-in ones only. It must exist when given.
	SignatureFile string
	// Policy maps a recipient domain (lower case) to PolicyDefang or
	// PolicyQuarantine. With recipients under different policies the
	// strictest wins (quarantine over defang): one copy of a message is
	// stored for all its recipients, so it cannot be both.
	Policy map[string]string
	// DefaultPolicy applies to domains not in Policy; default PolicyDefang.
	DefaultPolicy string
	// Clamd, when set, is a clamd to ask as well: "host:port" or
	// "unix:/path". Net must then be set.
	Clamd string
	Net   env.Net
	// MaxScanBytes bounds both the prefix of the raw message scanned and
	// the total of decoded part bytes scanned; default DefaultMaxScanBytes.
	MaxScanBytes int64
	// QuarantineUnscanned quarantines a message that hit a scanning limit
	// (MaxScanBytes, MaxMIMEDepth, MaxMIMEParts) instead of letting it
	// through with the limit noted in the trace.
	QuarantineUnscanned bool
}

// DefaultAVConfig returns built-in signatures, defang everywhere, no clamd.
func DefaultAVConfig() AVConfig {
	return AVConfig{DefaultPolicy: PolicyDefang, MaxScanBytes: DefaultMaxScanBytes}
}

// Validate fills defaults, lower-cases Policy, and rejects unknown
// policies and a clamd without a network.
func (c *AVConfig) Validate() error {
	d := DefaultAVConfig()
	if c.DefaultPolicy == "" {
		c.DefaultPolicy = d.DefaultPolicy
	}
	if c.MaxScanBytes == 0 {
		c.MaxScanBytes = d.MaxScanBytes
	}
	c.DefaultPolicy = asciiLower(c.DefaultPolicy)
	if !validPolicy(c.DefaultPolicy) {
		return fmt.Errorf("pipeline: antivirus: unknown default policy %q, want defang or quarantine", c.DefaultPolicy)
	}
	if c.MaxScanBytes < 0 {
		return fmt.Errorf("pipeline: antivirus: negative max scan bytes %d", c.MaxScanBytes)
	}
	if c.Clamd != "" && c.Net == nil {
		return fmt.Errorf("pipeline: antivirus: clamd %s without a network", c.Clamd)
	}
	if c.Policy != nil {
		p := make(map[string]string, len(c.Policy))
		for dom, pol := range c.Policy {
			dom, pol = asciiLower(strings.TrimSuffix(dom, ".")), asciiLower(pol)
			if !validDomain(dom) {
				return fmt.Errorf("pipeline: antivirus: bad policy domain %q", dom)
			}
			if !validPolicy(pol) {
				return fmt.Errorf("pipeline: antivirus: unknown policy %q for %s, want defang or quarantine", pol, dom)
			}
			p[dom] = pol
		}
		c.Policy = p
	}
	return nil
}

func validPolicy(p string) bool { return p == PolicyDefang || p == PolicyQuarantine }

// Antivirus is the virus filter: a built-in signature scanner over the raw
// message and every decoded MIME part, and optionally clamd. Safe for
// concurrent use; Reload swaps the signatures atomically.
type Antivirus struct {
	cfg   AVConfig
	log   *slog.Logger
	clamd *Clamd
	db    atomic.Pointer[sigDB]

	reloadMu sync.Mutex  // serialises Reload
	loaded   os.FileInfo // the signature file as last loaded
}

var _ Filter = (*Antivirus)(nil)

// NewAntivirus returns the filter with its signatures loaded. An unreadable
// signature file is an error; bad lines are logged and skipped.
func NewAntivirus(cfg AVConfig, log *slog.Logger) (*Antivirus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Antivirus{cfg: cfg, log: log}
	if cfg.Clamd != "" {
		a.clamd = &Clamd{Addr: cfg.Clamd, Net: cfg.Net}
	}
	if _, err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Name implements Filter.
func (a *Antivirus) Name() string { return "antivirus" }

// Reload reads the signature file again and swaps it in. On error the
// previous signatures stay. The problems (bad lines, skipped) are also
// logged.
func (a *Antivirus) Reload() ([]Problem, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	sigs := builtinSignatures()
	if a.cfg.SignatureFile == "" {
		a.db.Store(compileSignatures(sigs))
		return nil, nil
	}
	b, fi, err := readListFile(a.cfg.SignatureFile)
	if err != nil {
		return nil, fmt.Errorf("pipeline: antivirus: signatures: %w", err)
	}
	fromFile, problems := ParseSignatures(bytes.NewReader(b), a.cfg.SignatureFile)
	for _, p := range problems {
		a.log.Warn("antivirus: signature skipped", "file", p.File, "line", p.Line, "reason", p.Reason)
	}
	a.db.Store(compileSignatures(append(sigs, fromFile...)))
	a.loaded = fi
	a.log.Info("antivirus: signatures loaded", "file", a.cfg.SignatureFile, "signatures", len(fromFile), "skipped", len(problems))
	return problems, nil
}

// Watch reloads the signature file whenever it changes (replaced, resized
// or touched), looking every interval until ctx is done. The caller owns the
// goroutine. Without a signature file it just waits for ctx.
func (a *Antivirus) Watch(ctx context.Context, interval time.Duration) {
	if a.cfg.SignatureFile == "" {
		<-ctx.Done()
		return
	}
	watch(ctx, interval, func() bool {
		fi, err := os.Stat(a.cfg.SignatureFile)
		if err != nil {
			return false // keep what is loaded; Reload would fail too
		}
		a.reloadMu.Lock()
		defer a.reloadMu.Unlock()
		return changedSince(a.loaded, fi)
	}, func() {
		if _, err := a.Reload(); err != nil {
			a.log.Warn("antivirus: reload failed", "err", err.Error())
		}
	})
}

// Signatures returns how many signatures are loaded, built-in included.
func (a *Antivirus) Signatures() int { return len(a.db.Load().sigs) }

// scan is what the scanner found in one message.
type scan struct {
	walk      walkResult
	infected  map[int][]string // leaf part index -> signature names
	unlocated []string         // found outside any leaf body: cannot defang
	scanned   int64            // bytes scanned (raw prefix + decoded parts)
	limit     string           // the scanning limit hit, "" for none
	clamd     string           // "" without clamd, else "OK" or what it found
}

func (s *scan) add(part int, name string) {
	if part < 0 {
		if !slices.Contains(s.unlocated, name) {
			s.unlocated = append(s.unlocated, name)
		}
		return
	}
	if !slices.Contains(s.infected[part], name) {
		s.infected[part] = append(s.infected[part], name)
	}
}

// names lists every distinct signature found, in part order.
func (s *scan) names() []string {
	var out []string
	for _, i := range slices.Sorted(maps.Keys(s.infected)) {
		for _, n := range s.infected[i] {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	for _, n := range s.unlocated {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Check implements Filter.
func (a *Antivirus) Check(ctx context.Context, m *Message) (Verdict, error) {
	s, err := a.scan(ctx, m.Data)
	if err != nil {
		return Verdict{}, err
	}
	summary := fmt.Sprintf("%d parts, %d bytes scanned", len(s.walk.Parts), s.scanned)
	if s.clamd != "" {
		summary += ", clamd " + s.clamd
	}
	if s.limit != "" {
		summary += ", limit " + s.limit + " reached"
	}
	if len(s.infected) == 0 && len(s.unlocated) == 0 {
		if s.limit != "" && a.cfg.QuarantineUnscanned {
			return Verdict{Action: Quarantine, Headers: []string{VirusStatusHeader + ": Unscanned (" + s.limit + " limit); quarantined"},
				Reason: "not fully scanned (" + summary + "); quarantined"}, nil
		}
		return Verdict{Action: Accept, Reason: "clean (" + summary + ")"}, nil
	}
	names := strings.Join(s.names(), ", ")
	var where []string
	for _, i := range slices.Sorted(maps.Keys(s.infected)) {
		where = append(where, strings.Join(s.infected[i], ",")+" in "+s.walk.Parts[i].describe())
	}
	for _, n := range s.unlocated {
		where = append(where, n+" outside any part body")
	}
	found := "infected: " + strings.Join(where, "; ") + " (" + summary + ")"
	policy := a.policyFor(m.To)
	if policy == PolicyQuarantine || len(s.unlocated) > 0 {
		why := "policy quarantine"
		if policy != PolicyQuarantine {
			why = "cannot defang: quarantined"
		}
		return Verdict{Action: Quarantine, Headers: []string{VirusStatusHeader + ": Infected (" + names + "); quarantined"},
			Reason: found + "; " + why}, nil
	}
	data := defang(m.Data, s.walk.Parts, s.infected, m.ID)
	return Verdict{Action: Modify, Data: data, Headers: []string{VirusStatusHeader + ": Infected (" + names + "); defanged"},
		Reason: found + "; policy defang: " + fmt.Sprint(len(s.infected)) + " part(s) replaced"}, nil
}

// policyFor returns the strictest policy of the recipients' domains.
func (a *Antivirus) policyFor(to []string) string {
	policy := ""
	for _, rcpt := range to {
		p, ok := a.cfg.Policy[domainOf(rcpt)]
		if !ok {
			p = a.cfg.DefaultPolicy
		}
		if p == PolicyQuarantine {
			return p
		}
		policy = p
	}
	if policy == "" {
		return a.cfg.DefaultPolicy
	}
	return policy
}

// scan runs the built-in scanner over the raw message and each decoded
// leaf part, then clamd if configured.
func (a *Antivirus) scan(ctx context.Context, raw []byte) (*scan, error) {
	db := a.db.Load()
	s := &scan{walk: walkMIME(raw, MaxMIMEDepth, MaxMIMEParts), infected: map[int][]string{}}
	s.limit = s.walk.Limit
	max := a.cfg.MaxScanBytes
	rawScan := raw
	if int64(len(rawScan)) > max {
		rawScan, s.limit = raw[:max], "scan bytes"
	}
	s.scanned = int64(len(rawScan))
	// The raw scan sees what decoding would miss (headers, preambles,
	// unknown encodings, parts past the limits); a match is pinned to the
	// leaf whose body holds it.
	for _, f := range db.find(rawScan) {
		s.add(leafAt(s.walk.Parts, f.Offset), f.Sig.Name)
	}
	budget := max
	for i, p := range s.walk.Parts {
		if !p.Leaf {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("pipeline: antivirus: %w", err)
		}
		body, truncated := decodeBody(p.Encoding, raw[p.BodyStart:p.End], budget)
		budget -= int64(len(body))
		s.scanned += int64(len(body))
		if truncated {
			s.limit = "scan bytes"
		}
		for _, f := range db.find(body) {
			s.add(i, f.Sig.Name)
		}
		if !truncated && len(db.digests) > 0 {
			if sig := db.digest(sha256.Sum256(body)); sig != nil {
				s.add(i, sig.Name)
			}
		}
	}
	if a.clamd != nil {
		if err := a.askClamd(ctx, s, raw, rawScan); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// askClamd scans the message with clamd and, if it finds something the
// built-in scanner did not place, sends the other leaf parts one by one to
// find which to defang.
func (a *Antivirus) askClamd(ctx context.Context, s *scan, raw, rawScan []byte) error {
	name, err := a.clamd.Scan(ctx, rawScan)
	if err != nil {
		return fmt.Errorf("pipeline: antivirus: %w", err)
	}
	if name == "" {
		s.clamd = "OK"
		return nil
	}
	s.clamd = "found " + name
	located, tried := false, 0
	for i, p := range s.walk.Parts {
		if !p.Leaf || len(s.infected[i]) > 0 || p.BodyStart == p.End {
			continue
		}
		if tried++; tried > maxClamdLocateParts {
			break
		}
		body, _ := decodeBody(p.Encoding, raw[p.BodyStart:p.End], a.cfg.MaxScanBytes)
		pn, err := a.clamd.Scan(ctx, body)
		if err != nil {
			return fmt.Errorf("pipeline: antivirus: %w", err)
		}
		if pn != "" {
			s.add(i, pn)
			located = true
		}
	}
	if !located && len(s.infected) == 0 {
		// clamd saw it in the whole but in no single part: a header, a
		// preamble or an archive spanning parts. Nothing to cut out.
		s.add(-1, name)
	}
	return nil
}

// leafAt returns the index of the leaf part whose body holds offset, or -1.
func leafAt(parts []mimePart, offset int) int {
	for i, p := range parts {
		if p.Leaf && offset >= p.BodyStart && offset < p.End {
			return i
		}
	}
	return -1
}

// defang returns raw with each infected leaf part's body replaced by a text
// notice and its Content-Type and Content-Transfer-Encoding fields replaced
// to match; every other byte is kept, in place, so signatures, other parts
// and the boundaries are untouched.
func defang(raw []byte, parts []mimePart, infected map[int][]string, id string) []byte {
	idx := slices.Sorted(maps.Keys(infected))
	slices.SortFunc(idx, func(x, y int) int { return parts[x].Start - parts[y].Start })
	out := make([]byte, 0, len(raw))
	prev := 0
	for _, i := range idx {
		p := parts[i]
		out = append(out, raw[prev:p.Start]...)
		eol := "\r\n"
		if h := raw[p.Start:p.BodyStart]; bytes.IndexByte(h, '\n') >= 0 && !bytes.Contains(h, []byte("\r\n")) {
			eol = "\n"
		}
		out = appendDefangedHeader(out, raw[p.Start:p.BodyStart], eol)
		out = appendNotice(out, p, infected[i], id, eol)
		if p.End == len(raw) {
			out = append(out, eol...)
		}
		prev = p.End
	}
	return append(out, raw[prev:]...)
}

// appendDefangedHeader copies a part's header block, dropping its
// Content-Type and Content-Transfer-Encoding fields and putting plain-text
// ones in place of the first of them (or at the end of the block).
func appendDefangedHeader(out, block []byte, eol string) []byte {
	end, _ := headerEnd(block)
	fields, blank := block[:end], block[end:]
	repl := "Content-Type: text/plain; charset=us-ascii" + eol + "Content-Transfer-Encoding: 7bit" + eol
	placed := false
	for len(fields) > 0 {
		// One field: a line and its continuation lines (RFC 5322 2.2.3).
		n := firstFieldEnd(fields)
		if n == 0 {
			n = len(fields)
		}
		field := fields[:n]
		fields = fields[n:]
		name, _, _ := bytes.Cut(field, []byte(":"))
		name = bytes.TrimSpace(name)
		if bytes.EqualFold(name, []byte("Content-Type")) || bytes.EqualFold(name, []byte("Content-Transfer-Encoding")) {
			if !placed {
				out = append(out, repl...)
				placed = true
			}
			continue
		}
		out = append(out, field...)
		if field[len(field)-1] != '\n' {
			out = append(out, eol...)
		}
	}
	if !placed {
		out = append(out, repl...)
	}
	if len(blank) == 0 {
		blank = []byte(eol)
	}
	return append(out, blank...)
}

// appendNotice writes the text that replaces an infected part.
func appendNotice(out []byte, p mimePart, names []string, id, eol string) []byte {
	lines := []string{
		"This part of the message contained malware and was removed by mailarray.",
		"Detected: " + printable(strings.Join(names, ", "), 256),
		"Original type: " + printable(p.MediaType, 128),
	}
	if p.Filename != "" {
		lines = append(lines, "Original file name: "+p.Filename)
	}
	if id != "" {
		lines = append(lines, "Message id: "+printable(id, 128))
	}
	return append(out, strings.Join(lines, eol)...)
}
