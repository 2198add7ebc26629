package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"mailarray/node/ddns"
	"mailarray/node/mailaddr"
	"mailarray/node/strategy"
)

// Config is one node's configuration. Every field has a YAML key (the
// --config file) and a flag of `mailarray serve` with the same name. An
// empty listener address disables that listener.
type Config struct {
	// Name identifies the node in the array; unique and stable across
	// restarts (it names the node's copies in the catalog).
	Name string `yaml:"name"`
	// DataDir holds the node's bbolt file.
	DataDir string `yaml:"data"`
	// Domains are the mail domains the array hosts.
	Domains []string `yaml:"domain"`
	// UsersFile is the mailbox directory (one `address:{SCHEME}password[:options]` a line).
	UsersFile string `yaml:"users"`
	// Mailboxes are directory lines given inline (the simulator has no files).
	Mailboxes []string `yaml:"mailboxes"`
	// Advertise is the IP address DNS answers give for this node; default:
	// the host of the first listener bound to a specific address.
	Advertise string `yaml:"advertise"`
	// Roles this node takes: smtp, pop3, imap, dns, store. Default: all it has
	// listeners for, plus store.
	Roles []string `yaml:"roles"`

	SMTPAddr   string   `yaml:"smtp"`
	POP3Addr   string   `yaml:"pop3"`
	POP3SAddr  string   `yaml:"pop3s"`
	IMAPAddr   string   `yaml:"imap"`
	IMAPSAddr  string   `yaml:"imaps"`
	DNSAddr    string   `yaml:"dns"`
	PeerAddr   string   `yaml:"peer"`
	HTTPAddr   string   `yaml:"http"`
	GossipAddr string   `yaml:"gossip"`
	Join       []string `yaml:"join"`
	// PeerKey, when set, must accompany every peer API request; nodes of
	// one array share it. Without it the peer port must be firewalled.
	PeerKey string `yaml:"peer-key"`
	// PeerCA, PeerCert and PeerCertKey (PEM files) put the peer API on
	// mutual TLS: every node's certificate is signed by the array's CA
	// (`mailarray tls ca`, `mailarray tls cert`).
	PeerCA      string `yaml:"peer-ca"`
	PeerCert    string `yaml:"peer-cert"`
	PeerCertKey string `yaml:"peer-cert-key"`
	// InsecurePeerAPI lets the peer API listen on a non-loopback address
	// with neither PeerKey nor PeerCA: anyone who reaches the port can
	// then read, inject and delete mail. For labs on a private network
	// only; `mailarray serve` refuses that configuration without it, and
	// the node logs a warning at start and shows it in its status
	// (peerauth.go).
	InsecurePeerAPI bool `yaml:"insecure-peer-api"`
	// GossipKey (base64 of 16, 24 or 32 bytes) encrypts gossip.
	GossipKey string `yaml:"gossip-key"`
	// GossipProfile tunes failure detection: "lan" (default) or "local"
	// (loopback and tests: faster detection).
	GossipProfile string `yaml:"gossip-profile"`
	// IngestToken, when set, must come as "Authorization: Bearer <token>"
	// with every fax and voicemail upload (POST /v1/ingest/... on --http);
	// when empty only loopback clients may upload. docs/access.md.
	IngestToken string `yaml:"ingest-token"`
	// AdminToken, when set, must come as "Authorization: Bearer <token>"
	// with every operator request on --http (/v1/status, /metrics,
	// /v1/rebalance, /v1/quarantine, /v1/trace); /healthz and /readyz stay
	// open. The mailarray commands send $MAILARRAY_ADMIN_TOKEN.
	AdminToken string `yaml:"admin-token"`

	// TLSCert and TLSKey (PEM files) enable STARTTLS, STLS, POP3S and IMAPS.
	// They are re-read when the files change.
	TLSCert string `yaml:"tls-cert"`
	TLSKey  string `yaml:"tls-key"`

	// Replicas (R) is how many copies of each message the array keeps;
	// WriteQuorum (W) how many must be durable before the listener says
	// 250. 1 <= W <= R.
	Replicas    int `yaml:"replicas"`
	WriteQuorum int `yaml:"write-quorum"`

	// MaxMessageBytes bounds one message (advertised with SIZE).
	MaxMessageBytes int64 `yaml:"max-message-bytes"`
	// MaxRecipients bounds recipients per SMTP transaction.
	MaxRecipients int `yaml:"max-recipients"`
	// Limits against abuse.
	SMTPMaxSessions      int           `yaml:"smtp-max-sessions"`
	SMTPMaxSessionsPerIP int           `yaml:"smtp-max-sessions-per-ip"`
	SMTPRatePerIP        int           `yaml:"smtp-rate-per-ip"` // new connections per minute per client IP
	SMTPReadTimeout      time.Duration `yaml:"smtp-read-timeout"`
	POP3IdleTimeout      time.Duration `yaml:"pop3-idle-timeout"`
	POP3MaxFailedLogins  int           `yaml:"pop3-max-failed-logins"`
	POP3MaxSessions      int           `yaml:"pop3-max-sessions"`
	IMAPMaxSessions      int           `yaml:"imap-max-sessions"`
	// Access limits against one client holding every session, slow
	// logins and recipient probing, and the cleartext login policy:
	// documented with their defaults in access_config.go (AccessLimits).
	AccessLimits `yaml:",inline"`
	// DNSTTL is the TTL of DNS answers.
	DNSTTL time.Duration `yaml:"dns-ttl"`
	// ZoneFiles publish the rest of each hosted domain beside the array's
	// own records (TXT for SPF, DMARC, DKIM and MTA-STS, the website's A
	// or CNAME, ...): each entry is "domain=path" to an RFC 1035 master
	// file, or a directory of <domain>.zone files. A file with a bad
	// record, or one contradicting the array's SOA, NS, apex MX or its
	// names' addresses, stops the node at start, naming the line; changes
	// are reloaded every users-reload, a bad change logged and ignored.
	ZoneFiles []string `yaml:"zone-file"`
	// DNSStrategy orders the listeners in DNS answers: a DNS-level name of
	// strategy.List (roundrobin, random, leastload, p2c, weighted, size,
	// content, hash). Every dns node of an array should use the same one.
	DNSStrategy string `yaml:"dns-strategy"`
	// DNSRotateEvery is the period of time-based rotation in DNS answers:
	// the rotation index is the time divided by it (plus a hash of the
	// question name), so every node gives the same answer within one
	// period. Much shorter than the TTL, so resolvers whose caches expire
	// at different moments spread over up to dns-ttl/dns-rotate-every
	// listeners; much longer than the clock skew between nodes.
	// 10ms..dns-ttl.
	DNSRotateEvery time.Duration `yaml:"dns-rotate-every"`
	// PlacementStrategy chooses the primary and mirrors of each message
	// the node receives: local (the node itself and its mirrors) or any
	// name of strategy.List.
	PlacementStrategy string `yaml:"placement-strategy"`
	// Weight is the node's static capacity weight, advertised in the
	// weight tag (weighted, size and content read it). 1..1000.
	Weight int `yaml:"weight"`
	// LoadStale bounds the staleness of the load reports DNS and placement
	// use; a node whose report is older (or that does not answer) counts
	// as fully loaded. Peers are polled every half of it. 100ms..1m.
	LoadStale time.Duration `yaml:"load-stale"`
	// UsersReload is how often the users file is checked for changes.
	UsersReload time.Duration `yaml:"users-reload"`
	// ShutdownGrace bounds how long SIGTERM waits for transactions in flight.
	ShutdownGrace time.Duration `yaml:"shutdown-grace"`
	// LogLevel is the least level logged: debug, info (default), warn or
	// error. `mailarray serve` applies it; the node logs through Env.Log.
	LogLevel string `yaml:"log-level"`
	// Pipeline: the inbound filters run after DATA, before placement.
	Pipeline PipelineConfig `yaml:"pipeline"`
	// Tuning holds the replicator's intervals and limits.
	Tuning Tuning `yaml:"tuning"`
	// NoSync is true only in the simulator, whose disk cost is modeled.
	// A real node always fsyncs before acknowledging.
	NoSync bool `yaml:"-"`
	// ResyncCatalog (flag --resync-catalog only) starts a node that was
	// away longer than tuning.tombstone-ttl: its catalog is dropped and
	// taken from the array, so it cannot bring back mail deleted while it
	// was away; its copies that no entry lists are removed as orphans.
	// Without it such a node refuses to start (ErrAwayTooLong). No YAML
	// key: a config file would resync at every restart.
	ResyncCatalog bool `yaml:"-"`
	// Version is the release the binary was built as (the command's
	// version, set by -ldflags; "dev" otherwise), reported with the
	// commit in Status and mailarray_build_info. No YAML key: the binary
	// knows it.
	Version string `yaml:"-"`
	// Commit is the VCS revision passed at link time (`make build`), used
	// when the toolchain stamped none (-buildvcs=false); "" otherwise.
	Commit string `yaml:"-"`
}

// PipelineConfig configures the inbound pipeline (antivirus, spam
// database, notifications).
type PipelineConfig struct {
	// AVSignatures is an optional signature file (reloaded on change);
	// EICAR is always detected.
	AVSignatures string `yaml:"av-signatures"`
	// AVPolicy is what happens to an infected message: defang (replace
	// the infected part, deliver the rest) or quarantine.
	AVPolicy string `yaml:"av-policy"`
	// AVDomainPolicy overrides AVPolicy per recipient domain.
	AVDomainPolicy map[string]string `yaml:"av-domain-policy"`
	// Clamd is an optional clamd address (host:port or unix:/path).
	Clamd string `yaml:"clamd"`
	// SpamDB is the file of blocked sender domains, one a line, managed
	// by `mailarray spam add|del|list` and reloaded on change.
	SpamDB string `yaml:"spam-db"`
	// DNSBL zones are asked about sender domains, IPBL zones about the
	// client's address, through DNSBLServer.
	DNSBL       []string `yaml:"dnsbl"`
	IPBL        []string `yaml:"ipbl"`
	DNSBLServer string   `yaml:"dnsbl-server"`
	// SpamReject refuses listed senders with 550 5.7.1 instead of
	// flagging them with X-Spam-Flag.
	SpamReject bool `yaml:"spam-reject"`
	// FailOpen delivers a message whose filter failed, with a header that
	// says so, instead of answering 451.
	FailOpen bool `yaml:"fail-open"`
	// SMSGateway is the HTTP URL that takes SMS notices as JSON {to, text}.
	SMSGateway string `yaml:"sms-gateway"`
	// Auth: sender authentication (SPF, DKIM, DMARC) of inbound mail,
	// recorded in an Authentication-Results field.
	Auth AuthConfig `yaml:"auth"`
}

// AuthConfig configures sender authentication (node/pipeline Auth). The
// checks run only with a resolver: without one the pipeline is as it was
// (no lookups, no field), which keeps the simulator's runs unchanged.
type AuthConfig struct {
	// Resolver is the recursive DNS resolver the checks ask, host:port
	// (`mailarray serve --auth-resolver system` takes /etc/resolv.conf's
	// first nameserver). Empty: no sender authentication.
	Resolver string `yaml:"resolver"`
	// SPF, DKIM and DMARC turn each check on (all on by default).
	SPF   bool `yaml:"spf"`
	DKIM  bool `yaml:"dkim"`
	DMARC bool `yaml:"dmarc"`
	// DMARCPolicy is what a message failing DMARC gets: mark (default:
	// the field only), quarantine (held for the operator), reject (550
	// 5.7.1), or honour (what the sender domain's p= asks: reject,
	// quarantine or none). None, temperror and permerror only mark.
	DMARCPolicy string `yaml:"dmarc-policy"`
	// AuthservID names the array in its Authentication-Results fields;
	// incoming fields claiming it are removed. Default: the first hosted
	// domain (the same on every node).
	AuthservID string `yaml:"authserv-id"`
	// ARCTrustedSealers are forwarders (ARC-Seal d= domains) whose valid
	// ARC chain turns a DMARC quarantine or reject into a mark.
	ARCTrustedSealers []string `yaml:"arc-trusted-sealers"`
}

// Tuning sets the pace of the array's background work.
type Tuning struct {
	// AntiEntropyEvery is the mean interval between anti-entropy rounds
	// (each with one random peer).
	AntiEntropyEvery time.Duration `yaml:"anti-entropy-every"`
	// MaintainEvery is the interval of rebuild, pending resolution and
	// orphan cleanup scans.
	MaintainEvery time.Duration `yaml:"maintain-every"`
	// PendingTimeout is how long a pending entry waits for its commit
	// before its holders resolve it themselves, measured on each holder's
	// monotonic clock from when it first saw the entry pending (never
	// against the listener's wall-clock version). A live listener is then
	// asked to abort rather than overruled.
	PendingTimeout time.Duration `yaml:"pending-timeout"`
	// OrphanGrace: a copy its entry no longer lists is deleted only after
	// the entry is this old.
	OrphanGrace time.Duration `yaml:"orphan-grace"`
	// RebuildPerScan bounds copies rebuilt or moved per scan (throttle).
	RebuildPerScan int `yaml:"rebuild-per-scan"`
	// TombstoneTTL is how long deletions are remembered after every live
	// member has them (the collection horizon, node/catalog horizon.go);
	// a node away longer than this refuses to start unless told to resync
	// its catalog (Config.ResyncCatalog).
	TombstoneTTL time.Duration `yaml:"tombstone-ttl"`
	// DeleteSyncTimeout bounds how long a deletion (POP3 QUIT, IMAP
	// EXPUNGE, webmail) retries pushing its tombstones to a live node that
	// failed to take them before answering a temporary failure. Longer
	// than failure detection (serf: about 5 s), so a node that died is
	// declared failed within it and no longer counts; shorter than the
	// POP3 server's BackendTimeout (30 s), which bounds the whole QUIT.
	DeleteSyncTimeout time.Duration `yaml:"delete-sync-timeout"`
	// VerifyEvery is the interval between slices of the store verifier's
	// continuous pass (node/replica verify.go): each slice checksums up to
	// VerifyPerScan of the copies the catalog says this node holds, so a
	// copy lost under the catalog (a restored backup, a replaced disk, a
	// bad sector) is found and rebuilt elsewhere. Entries that change are
	// checked at once, and every entry at start, whatever the pace.
	VerifyEvery time.Duration `yaml:"verify-every"`
	// VerifyPerScan bounds copies checksummed per slice (throttle): with
	// the defaults, 256 copies a second, a pass over 100,000 copies takes
	// about 7 minutes and reads about 1 MB/s of 4 KiB messages.
	VerifyPerScan int `yaml:"verify-per-scan"`
	// CollectEvery is how often a node computes the collection horizon,
	// collects the tombstones below it and records that it is a member
	// (for the tombstone-ttl check at start). The horizon advances in
	// steps of this interval, so replicas agree on it between rounds.
	CollectEvery time.Duration `yaml:"collect-every"`
	// ReadyProbeEvery is how often the node asks every live storage peer
	// for its load report to judge its own readiness (node/ready.go): a
	// peer that answered the last probe counts toward the write quorum.
	// A change of readiness is seen within about this interval.
	ReadyProbeEvery time.Duration `yaml:"ready-probe-every"`
	// RebalanceAfterReturn: when a storage node comes back (after a
	// failure, a partition or a restart) and membership then stays
	// unchanged for this long, the lowest-named live storage node asks the
	// array to rebalance, as `mailarray rebalance` does: rebuild moved
	// the returned node's copies elsewhere while it was away. Long enough
	// that a flapping node or a rolling restart causes one rebalance, not
	// one each. 0 disables it (and a Config built without DefaultTuning
	// has it off).
	RebalanceAfterReturn time.Duration `yaml:"rebalance-after-return"`
}

// DefaultTuning returns the production pace.
func DefaultTuning() Tuning {
	return Tuning{
		AntiEntropyEvery: time.Second,
		MaintainEvery:    2 * time.Second,
		PendingTimeout:   30 * time.Second,
		OrphanGrace:      time.Minute,
		RebuildPerScan:   512,
		TombstoneTTL:     7 * 24 * time.Hour,

		DeleteSyncTimeout: 10 * time.Second,
		VerifyEvery:       time.Second,
		VerifyPerScan:     256,
		CollectEvery:      10 * time.Minute,
		ReadyProbeEvery:   time.Second,

		RebalanceAfterReturn: 5 * time.Minute,
	}
}

// DefaultConfig returns the defaults `mailarray serve` starts from.
func DefaultConfig() Config {
	return Config{
		DataDir:           "data",
		SMTPAddr:          "127.0.0.1:2525",
		POP3Addr:          "127.0.0.1:1110",
		DNSAddr:           "127.0.0.1:5353",
		HTTPAddr:          "127.0.0.1:8080",
		Replicas:          1,
		WriteQuorum:       1,
		MaxMessageBytes:   25 << 20,
		MaxRecipients:     100,
		DNSTTL:            5 * time.Second,
		DNSStrategy:       "roundrobin",
		DNSRotateEvery:    100 * time.Millisecond,
		PlacementStrategy: "local",
		Weight:            1,
		LoadStale:         time.Second,
		UsersReload:       2 * time.Second,
		ShutdownGrace:     10 * time.Second,
		LogLevel:          "info",
		Tuning:            DefaultTuning(),
		Pipeline:          PipelineConfig{Auth: AuthConfig{SPF: true, DKIM: true, DMARC: true, DMARCPolicy: "mark"}},

		SMTPMaxSessions:      1000,
		SMTPMaxSessionsPerIP: 50,
		SMTPRatePerIP:        0, // off: big senders open many connections; operators set it
		SMTPReadTimeout:      5 * time.Minute,
		POP3IdleTimeout:      10 * time.Minute,
		POP3MaxFailedLogins:  3,
		POP3MaxSessions:      1000,
		IMAPMaxSessions:      1000,
		AccessLimits:         DefaultAccessLimits(),
	}
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// KnownRoles lists the roles a node can take.
var KnownRoles = []string{"smtp", "pop3", "imap", "dns", "store"}

// Validate fills derived defaults and returns an error naming the key at
// fault.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, f string, a ...any) {
		errs = append(errs, fmt.Errorf("config: %s: "+f, append([]any{key}, a...)...))
	}
	c.Name = strings.ToLower(strings.TrimSpace(c.Name))
	if !nameRE.MatchString(c.Name) {
		bad("name", "%q must be a DNS label (a-z, 0-9, '-', at most 63 characters)", c.Name)
	}
	if c.DataDir == "" {
		bad("data", "is empty")
	}
	if len(c.Domains) == 0 {
		bad("domain", "at least one hosted domain is required")
	}
	for i, d := range c.Domains {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		// An IDN domain may be given in U-labels; the node (and its DNS,
		// which is asked in A-labels) uses the A-label form.
		a, err := mailaddr.Domain(d)
		if err == nil {
			d = a
		}
		if c.Domains[i] != d { // no write when already canonical: a
			// running Config's copy (Node.Config, then Reload) shares the slice
			c.Domains[i] = d
		}
		if err != nil || !domainRE.MatchString(d) {
			bad("domain", "%q is not a domain name", d)
		}
	}
	slices.Sort(c.Domains)
	c.Domains = slices.Compact(c.Domains)
	if c.UsersFile == "" && len(c.Mailboxes) == 0 {
		bad("users", "a users file (or inline mailboxes) is required")
	}
	for key, a := range map[string]string{"smtp": c.SMTPAddr, "pop3": c.POP3Addr, "pop3s": c.POP3SAddr, "imap": c.IMAPAddr, "imaps": c.IMAPSAddr, "dns": c.DNSAddr, "peer": c.PeerAddr, "http": c.HTTPAddr, "gossip": c.GossipAddr} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad(key, "%q is not host:port: %v", a, err)
		}
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			bad("join", "%q is not host:port", j)
		}
	}
	switch c.GossipProfile {
	case "", "lan", "local":
	default:
		bad("gossip-profile", "%q must be lan or local", c.GossipProfile)
	}
	if c.Advertise != "" && net.ParseIP(c.Advertise) == nil {
		bad("advertise", "%q is not an IP address", c.Advertise)
	}
	if len(c.Roles) == 0 {
		c.Roles = []string{"store"}
		if c.SMTPAddr != "" {
			c.Roles = append(c.Roles, "smtp")
		}
		if c.POP3Addr != "" || c.POP3SAddr != "" {
			c.Roles = append(c.Roles, "pop3")
		}
		if c.IMAPAddr != "" || c.IMAPSAddr != "" {
			c.Roles = append(c.Roles, "imap")
		}
		if c.DNSAddr != "" {
			c.Roles = append(c.Roles, "dns")
		}
	}
	for _, r := range c.Roles {
		if !slices.Contains(KnownRoles, r) {
			bad("roles", "unknown role %q (known: %s)", r, strings.Join(KnownRoles, ", "))
		}
	}
	slices.Sort(c.Roles)
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert", "tls-cert and tls-key go together")
	}
	if (c.PeerCA != "") != (c.PeerCert != "") || (c.PeerCert != "") != (c.PeerCertKey != "") {
		bad("peer-ca", "peer-ca, peer-cert and peer-cert-key go together")
	}
	if c.POP3SAddr != "" && c.TLSCert == "" {
		bad("pop3s", "needs tls-cert and tls-key")
	}
	if c.IMAPSAddr != "" && c.TLSCert == "" {
		bad("imaps", "needs tls-cert and tls-key")
	}
	if c.Replicas < 1 || c.Replicas > 16 {
		bad("replicas", "%d must be 1..16", c.Replicas)
	}
	if c.WriteQuorum < 1 || c.WriteQuorum > c.Replicas {
		bad("write-quorum", "%d must be 1..replicas (%d)", c.WriteQuorum, c.Replicas)
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 1<<30 {
		bad("max-message-bytes", "%d must be 1 KiB..1 GiB", c.MaxMessageBytes)
	}
	if c.MaxRecipients < 1 || c.MaxRecipients > 10000 {
		bad("max-recipients", "%d must be 1..10000", c.MaxRecipients)
	}
	for key, v := range map[string]int{"smtp-max-sessions": c.SMTPMaxSessions, "smtp-max-sessions-per-ip": c.SMTPMaxSessionsPerIP, "pop3-max-failed-logins": c.POP3MaxFailedLogins, "pop3-max-sessions": c.POP3MaxSessions} {
		if v < 1 {
			bad(key, "%d must be >= 1", v)
		}
	}
	if c.IMAPMaxSessions == 0 { // a Config built without DefaultConfig
		c.IMAPMaxSessions = DefaultConfig().IMAPMaxSessions
	}
	if c.IMAPMaxSessions < 1 {
		bad("imap-max-sessions", "%d must be >= 1", c.IMAPMaxSessions)
	}
	c.AccessLimits.validate(c, bad)
	if c.SMTPRatePerIP < 0 {
		bad("smtp-rate-per-ip", "%d must be >= 0 (0: no limit)", c.SMTPRatePerIP)
	}
	if c.SMTPReadTimeout < time.Second {
		bad("smtp-read-timeout", "%v must be >= 1s", c.SMTPReadTimeout)
	}
	if c.POP3IdleTimeout < time.Second {
		bad("pop3-idle-timeout", "%v must be >= 1s (RFC 1939 asks for 10m)", c.POP3IdleTimeout)
	}
	if c.DNSTTL < time.Second || c.DNSTTL > 24*time.Hour {
		bad("dns-ttl", "%v must be 1s..24h", c.DNSTTL)
	}
	for _, e := range c.ZoneFiles {
		if err := ddns.CheckZoneEntry(e, c.Domains); err != nil {
			bad("zone-file", "%v", err)
		}
	}
	if len(c.ZoneFiles) > 0 && c.DNSAddr == "" {
		bad("zone-file", "needs the dns listener")
	}
	c.validateStrategies(bad)
	if c.UsersReload <= 0 {
		bad("users-reload", "%v must be positive", c.UsersReload)
	}
	if c.ShutdownGrace <= 0 {
		bad("shutdown-grace", "%v must be positive", c.ShutdownGrace)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.LogLevel)); err != nil {
		bad("log-level", "%q must be debug, info, warn or error", c.LogLevel)
	}
	switch c.Pipeline.AVPolicy {
	case "":
		c.Pipeline.AVPolicy = "defang"
	case "defang", "quarantine":
	default:
		bad("pipeline.av-policy", "%q must be defang or quarantine", c.Pipeline.AVPolicy)
	}
	for d, p := range c.Pipeline.AVDomainPolicy {
		if p != "defang" && p != "quarantine" {
			bad("pipeline.av-domain-policy", "%s: %q must be defang or quarantine", d, p)
		}
	}
	if (len(c.Pipeline.DNSBL) > 0 || len(c.Pipeline.IPBL) > 0) && c.Pipeline.DNSBLServer == "" {
		bad("pipeline.dnsbl-server", "required with dnsbl or ipbl zones")
	}
	c.validateAuth(bad)
	t, d := &c.Tuning, DefaultTuning()
	for _, f := range []struct {
		key string
		v   *time.Duration
		def time.Duration
	}{
		{"tuning.anti-entropy-every", &t.AntiEntropyEvery, d.AntiEntropyEvery},
		{"tuning.maintain-every", &t.MaintainEvery, d.MaintainEvery},
		{"tuning.pending-timeout", &t.PendingTimeout, d.PendingTimeout},
		{"tuning.orphan-grace", &t.OrphanGrace, d.OrphanGrace},
		{"tuning.tombstone-ttl", &t.TombstoneTTL, d.TombstoneTTL},
		{"tuning.delete-sync-timeout", &t.DeleteSyncTimeout, d.DeleteSyncTimeout},
		{"tuning.verify-every", &t.VerifyEvery, d.VerifyEvery},
		{"tuning.collect-every", &t.CollectEvery, d.CollectEvery},
		{"tuning.ready-probe-every", &t.ReadyProbeEvery, d.ReadyProbeEvery},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 0 {
			bad(f.key, "%v must be positive", *f.v)
		}
	}
	// 0 is a value here (off), not "unset": DefaultTuning gives the default.
	if t.RebalanceAfterReturn < 0 {
		bad("tuning.rebalance-after-return", "%v must be 0 (off) or positive", t.RebalanceAfterReturn)
	}
	if t.RebuildPerScan == 0 {
		t.RebuildPerScan = d.RebuildPerScan
	}
	if t.RebuildPerScan < 1 {
		bad("tuning.rebuild-per-scan", "%d must be >= 1", t.RebuildPerScan)
	}
	if t.VerifyPerScan == 0 {
		t.VerifyPerScan = d.VerifyPerScan
	}
	if t.VerifyPerScan < 1 {
		bad("tuning.verify-per-scan", "%d must be >= 1", t.VerifyPerScan)
	}
	return errors.Join(errs...)
}

// HasRole reports whether the node takes role.
func (c *Config) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// Limits of the distribution keys.
const (
	minDNSRotateEvery = 10 * time.Millisecond
	maxWeight         = 1000
	minLoadStale      = 100 * time.Millisecond
	maxLoadStale      = time.Minute
)

// validateStrategies checks the distribution keys, filling defaults for
// zero values (a Config built without DefaultConfig).
func (c *Config) validateStrategies(bad func(key, f string, a ...any)) {
	d := DefaultConfig()
	if c.DNSStrategy == "" {
		c.DNSStrategy = d.DNSStrategy
	}
	if c.PlacementStrategy == "" {
		c.PlacementStrategy = d.PlacementStrategy
	}
	if c.DNSRotateEvery == 0 {
		c.DNSRotateEvery = min(d.DNSRotateEvery, c.DNSTTL)
	}
	if c.Weight == 0 {
		c.Weight = d.Weight
	}
	if c.LoadStale == 0 {
		c.LoadStale = d.LoadStale
	}
	if s, err := strategy.Lookup(c.DNSStrategy); err != nil {
		bad("dns-strategy", "%v", err)
	} else if !s.DNS {
		bad("dns-strategy", "%q chooses storage nodes only (DNS: %s)", c.DNSStrategy, strings.Join(dnsStrategies(), ", "))
	}
	if s, err := strategy.Lookup(c.PlacementStrategy); err != nil {
		bad("placement-strategy", "%v", err)
	} else if !s.Placement {
		bad("placement-strategy", "%q is DNS only", c.PlacementStrategy)
	}
	if c.DNSRotateEvery < minDNSRotateEvery || (c.DNSTTL > 0 && c.DNSRotateEvery > c.DNSTTL) {
		bad("dns-rotate-every", "%v must be %v..dns-ttl (%v)", c.DNSRotateEvery, minDNSRotateEvery, c.DNSTTL)
	}
	if c.Weight < 1 || c.Weight > maxWeight {
		bad("weight", "%d must be 1..%d", c.Weight, maxWeight)
	}
	if c.LoadStale < minLoadStale || c.LoadStale > maxLoadStale {
		bad("load-stale", "%v must be %v..%v", c.LoadStale, minLoadStale, maxLoadStale)
	}
}

// dnsStrategies lists the strategies DNS may use.
func dnsStrategies() []string {
	var out []string
	for _, s := range strategy.List() {
		if s.DNS {
			out = append(out, s.Name)
		}
	}
	return out
}
