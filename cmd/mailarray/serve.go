package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"mailarray/node"
	"mailarray/node/env"
	"mailarray/node/fault"
	"mailarray/node/member"
	"mailarray/node/strategy"
)

// listFlag is a repeatable string flag (--domain a --domain b, or a,b).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// loadConfig reads --config (YAML, keys as the flags) and then applies
// the flags that were set, which win.
func loadConfig(args []string, stderr io.Writer) (node.Config, *slog.Logger, error) {
	cfg, log, _, _, err := loadConfigLevel(args, stderr)
	return cfg, log, err
}

// serveFlags are the flags of serve that are not node configuration:
// they belong to the process, are not YAML keys and do not reload.
type serveFlags struct {
	// PprofAddr is the loopback address of the profiling endpoint
	// (pprof.go); empty: off.
	PprofAddr string
	// Delays are the emulated hardware faults of a test array
	// (--test-fault, accepted only with --test-faults-allowed): never part
	// of node.Config, so that no config file or reload can turn them on.
	Delays fault.Delays
}

// testFaultList is the repeatable --test-fault point=duration flag.
type testFaultList struct{ d fault.Delays }

func (l *testFaultList) String() string {
	if l == nil || len(l.d) == 0 {
		return ""
	}
	var out []string
	for p, w := range l.d {
		out = append(out, string(p)+"="+w.String())
	}
	return strings.Join(out, ",")
}
func (l *testFaultList) Set(v string) error { return l.d.ParseDelay(v) }

// loadConfigLevel is loadConfig that also returns the logger's level,
// which a reload sets (log-level is live), and the process's own flags.
func loadConfigLevel(args []string, stderr io.Writer) (node.Config, *slog.Logger, *slog.LevelVar, serveFlags, error) {
	cfg := node.DefaultConfig()
	// R and W left unset (0) are chosen by resolveCopies once the whole
	// configuration is known: an array mirrors by default.
	cfg.Replicas, cfg.WriteQuorum = 0, 0
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if logFormatArg(args) == "json" && !helpArg(args) {
		// A JSON log has JSON lines only: a flag error is reported as one
		// record by reportFatal, not followed by the usage text.
		fs.SetOutput(io.Discard)
	}
	configFile := fs.String("config", "", "YAML config file; flags given on the command line override its keys")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	var sf serveFlags
	fs.StringVar(&sf.PprofAddr, "pprof", "", "loopback address serving net/http/pprof, for profiling (docs/performance.md); off when empty, logged as a warning when on")
	var c node.Config // flag targets; merged below
	fs.StringVar(&c.LogLevel, "log-level", cfg.LogLevel, "log level: debug, info, warn, error (live on SIGHUP)")
	var domains, join, roles listFlag
	fs.StringVar(&c.Name, "name", "", "node name, unique in the array (a DNS label)")
	fs.StringVar(&c.DataDir, "data", cfg.DataDir, "data directory (holds node.db)")
	fs.Var(&domains, "domain", "hosted mail domain (repeatable)")
	fs.StringVar(&c.UsersFile, "users", "", "mailbox directory file: address:{SCHEME}password[:options] per line")
	fs.StringVar(&c.SMTPAddr, "smtp", cfg.SMTPAddr, "SMTP listen address (empty disables)")
	fs.StringVar(&c.POP3Addr, "pop3", cfg.POP3Addr, "POP3 listen address (empty disables)")
	fs.StringVar(&c.POP3SAddr, "pop3s", "", "POP3 over implicit TLS listen address (needs --tls-cert)")
	fs.StringVar(&c.IMAPAddr, "imap", cfg.IMAPAddr, "IMAP listen address (empty disables)")
	fs.StringVar(&c.IMAPSAddr, "imaps", "", "IMAP over implicit TLS listen address (needs --tls-cert)")
	fs.StringVar(&c.DNSAddr, "dns", cfg.DNSAddr, "DNS listen address, UDP and TCP (empty disables)")
	fs.StringVar(&c.PeerAddr, "peer", "", "node-to-node API listen address")
	fs.StringVar(&c.HTTPAddr, "http", cfg.HTTPAddr, "HTTP listen address: health, status, metrics, webmail, fax/voicemail ingest (empty disables)")
	fs.StringVar(&c.GossipAddr, "gossip", "", "serf gossip address (empty: a lone node)")
	fs.Var(&join, "join", "gossip address of a running member to join (repeatable)")
	fs.StringVar(&c.Advertise, "advertise", "", "IP address DNS answers give for this node")
	fs.Var(&roles, "roles", "roles: smtp,pop3,imap,dns,store (default: by listeners, plus store)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate for STARTTLS/STLS/POP3S/IMAPS (reloaded on change)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.IntVar(&c.Replicas, "replicas", cfg.Replicas, "copies of each message (R); 0: 2 in an array (--gossip), 1 for a lone node")
	fs.IntVar(&c.WriteQuorum, "write-quorum", cfg.WriteQuorum, "copies durable before 250 (W); 0: min(R, 2)")
	fs.StringVar(&c.PeerKey, "peer-key", "", "shared key required on the peer API")
	fs.BoolVar(&c.ResyncCatalog, "resync-catalog", false, "drop this node's catalog and take the array's (a node away longer than tuning.tombstone-ttl; docs/deploy.md section 7)")
	fs.StringVar(&c.PeerCA, "peer-ca", "", "array CA (PEM): the peer API speaks mutual TLS with certificates it signed")
	fs.StringVar(&c.PeerCert, "peer-cert", "", "this node's peer certificate (PEM), signed by --peer-ca")
	fs.StringVar(&c.PeerCertKey, "peer-cert-key", "", "private key of --peer-cert (PEM)")
	fs.BoolVar(&c.InsecurePeerAPI, "insecure-peer-api", false, "let the peer API listen beyond loopback with neither --peer-key nor --peer-ca (labs only: anyone reaching it can read, inject and delete mail)")
	fs.StringVar(&c.GossipKey, "gossip-key", "", "base64 gossip encryption key (16, 24 or 32 bytes)")
	fs.StringVar(&c.AdminToken, "admin-token", "", "bearer token required for the operator endpoints on --http (status, metrics, rebalance, quarantine, trace); the mailarray commands send $MAILARRAY_ADMIN_TOKEN")
	fs.StringVar(&c.IngestToken, "ingest-token", "", "bearer token required for fax/voicemail uploads on --http (empty: loopback clients only)")
	fs.StringVar(&c.GossipProfile, "gossip-profile", "lan", "failure detection profile: lan or local")
	fs.Int64Var(&c.MaxMessageBytes, "max-message-bytes", cfg.MaxMessageBytes, "largest message accepted")
	fs.IntVar(&c.MaxRecipients, "max-recipients", cfg.MaxRecipients, "recipients per SMTP transaction")
	fs.DurationVar(&c.DNSTTL, "dns-ttl", cfg.DNSTTL, "TTL of DNS answers")
	var zoneFiles listFlag
	fs.Var(&zoneFiles, "zone-file", "static records of a hosted domain: domain=path to a zone file, or a directory of <domain>.zone files (repeatable)")
	fs.StringVar(&c.Pipeline.AVSignatures, "av-signatures", "", "antivirus signature file (reloaded on change)")
	fs.StringVar(&c.Pipeline.AVPolicy, "av-policy", "defang", "infected mail: defang or quarantine")
	fs.StringVar(&c.Pipeline.Clamd, "clamd", "", "clamd address (host:port or unix:/path) for INSTREAM scanning")
	fs.StringVar(&c.Pipeline.SpamDB, "spam-db", "", "spam database file of sender domains (mailarray spam add|del|list)")
	var dnsbl listFlag
	fs.Var(&dnsbl, "dnsbl", "DNSBL zone for sender domains (repeatable)")
	fs.StringVar(&c.Pipeline.DNSBLServer, "dnsbl-server", "", "DNS server for DNSBL queries, host:port")
	fs.BoolVar(&c.Pipeline.SpamReject, "spam-reject", false, "refuse listed senders with 550 5.7.1 instead of flagging")
	fs.BoolVar(&c.Pipeline.FailOpen, "fail-open", false, "deliver mail whose filter failed, with a header, instead of 451")
	fs.StringVar(&c.Pipeline.SMSGateway, "sms-gateway", "", "HTTP URL taking SMS notices as JSON {to, text}")
	fs.StringVar(&c.Pipeline.Auth.Resolver, "auth-resolver", "", "recursive DNS resolver (host:port, or system for /etc/resolv.conf) for SPF, DKIM and DMARC checks of inbound mail; empty: no checks")
	fs.BoolVar(&c.Pipeline.Auth.SPF, "auth-spf", cfg.Pipeline.Auth.SPF, "check SPF (needs --auth-resolver)")
	fs.BoolVar(&c.Pipeline.Auth.DKIM, "auth-dkim", cfg.Pipeline.Auth.DKIM, "verify DKIM signatures (needs --auth-resolver)")
	fs.BoolVar(&c.Pipeline.Auth.DMARC, "auth-dmarc", cfg.Pipeline.Auth.DMARC, "evaluate DMARC (needs --auth-resolver)")
	fs.StringVar(&c.Pipeline.Auth.DMARCPolicy, "dmarc-policy", cfg.Pipeline.Auth.DMARCPolicy, "mail failing DMARC: mark (header only), quarantine, reject (550 5.7.1), or honour (the sender domain's p=)")
	fs.StringVar(&c.Pipeline.Auth.AuthservID, "authserv-id", "", "name of the array in Authentication-Results (default: the first hosted domain)")
	var sealers listFlag
	fs.Var(&sealers, "arc-trusted-sealer", "ARC sealer domain whose valid chain turns a DMARC quarantine or reject into a mark (repeatable)")
	fs.IntVar(&c.SMTPMaxSessions, "smtp-max-sessions", cfg.SMTPMaxSessions, "concurrent SMTP sessions")
	fs.IntVar(&c.SMTPMaxSessionsPerIP, "smtp-max-sessions-per-ip", cfg.SMTPMaxSessionsPerIP, "concurrent SMTP sessions from one client IP")
	fs.IntVar(&c.SMTPRatePerIP, "smtp-rate-per-ip", cfg.SMTPRatePerIP, "new SMTP connections per minute from one client IP (0: no limit)")
	fs.DurationVar(&c.SMTPReadTimeout, "smtp-read-timeout", cfg.SMTPReadTimeout, "SMTP command timeout")
	fs.DurationVar(&c.POP3IdleTimeout, "pop3-idle-timeout", cfg.POP3IdleTimeout, "POP3 autologout timer")
	fs.IntVar(&c.POP3MaxFailedLogins, "pop3-max-failed-logins", cfg.POP3MaxFailedLogins, "failed POP3 logins before the session is closed")
	fs.IntVar(&c.POP3MaxSessions, "pop3-max-sessions", cfg.POP3MaxSessions, "concurrent POP3 sessions")
	fs.IntVar(&c.IMAPMaxSessions, "imap-max-sessions", cfg.IMAPMaxSessions, "concurrent IMAP sessions")
	fs.IntVar(&c.POP3MaxSessionsPerIP, "pop3-max-sessions-per-ip", cfg.POP3MaxSessionsPerIP, "concurrent POP3 sessions from one client address (IPv4, or IPv6 /64)")
	fs.IntVar(&c.IMAPMaxSessionsPerIP, "imap-max-sessions-per-ip", cfg.IMAPMaxSessionsPerIP, "concurrent IMAP sessions from one client address (IPv4, or IPv6 /64)")
	fs.DurationVar(&c.POP3LoginTimeout, "pop3-login-timeout", cfg.POP3LoginTimeout, "time from connect to a successful POP3 login before the session is closed")
	fs.DurationVar(&c.IMAPLoginTimeout, "imap-login-timeout", cfg.IMAPLoginTimeout, "time from connect to a successful IMAP login before the session is closed")
	fs.IntVar(&c.SMTPRcptTarpitAfter, "smtp-rcpt-tarpit-after", cfg.SMTPRcptTarpitAfter, "unknown recipients in one SMTP session before each further one is answered late")
	fs.DurationVar(&c.SMTPRcptTarpitDelay, "smtp-rcpt-tarpit-delay", cfg.SMTPRcptTarpitDelay, "delay of each unknown-recipient reply past --smtp-rcpt-tarpit-after")
	fs.IntVar(&c.SMTPMaxUnknownRcpts, "smtp-max-unknown-rcpts", cfg.SMTPMaxUnknownRcpts, "unknown recipients in one SMTP session before 421 4.7.0 and close")
	fs.IntVar(&c.SMTPMaxUnknownRcptsPerIP, "smtp-max-unknown-rcpts-per-ip", cfg.SMTPMaxUnknownRcptsPerIP, "unknown recipients from one client address per 15 minutes, across sessions, before 421 4.7.0")
	var allowCleartext bool
	fs.BoolVar(&allowCleartext, "allow-cleartext-auth", false, "accept POP3 USER/PASS and IMAP LOGIN without TLS (default: only on a node without --tls-cert, with a warning)")
	fs.StringVar(&c.DNSStrategy, "dns-strategy", cfg.DNSStrategy, "how DNS answers order the listeners: "+strategyNames(true))
	fs.DurationVar(&c.DNSRotateEvery, "dns-rotate-every", cfg.DNSRotateEvery, "period of round-robin rotation in DNS answers (same answer on every node within one)")
	fs.StringVar(&c.PlacementStrategy, "placement-strategy", cfg.PlacementStrategy, "how the receiving node chooses where copies go: "+strategyNames(false))
	fs.IntVar(&c.Weight, "weight", cfg.Weight, "static capacity weight advertised to the array (1..1000)")
	fs.DurationVar(&c.LoadStale, "load-stale", cfg.LoadStale, "oldest load report strategies use; older counts as fully loaded")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "how long SIGTERM waits for transactions in flight")
	faults := &testFaultList{d: fault.Delays{}}
	fs.Var(faults, "test-fault", "TEST ARRAYS ONLY: make a fault point wait, point=duration (store.sync=8ms: an emulated slow disk); needs --test-faults-allowed (repeatable)")
	faultsAllowed := fs.Bool("test-faults-allowed", false, "TEST ARRAYS ONLY: accept --test-fault (benchmarks that emulate slow hardware: make truth)")
	if err := fs.Parse(args); err != nil {
		return cfg, nil, nil, sf, err
	}
	if len(faults.d) > 0 && !*faultsAllowed {
		return cfg, nil, nil, sf, errors.New("serve: --test-fault slows this node on purpose and is for test arrays only: add --test-faults-allowed to say so")
	}
	if len(faults.d) > 0 {
		sf.Delays = faults.d
	}
	if fs.NArg() > 0 {
		return cfg, nil, nil, sf, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return cfg, nil, nil, sf, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, nil, nil, sf, fmt.Errorf("config %s: %w", *configFile, err)
		}
	}
	c.Domains, c.Join, c.Roles = domains, join, roles
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	apply := func(name string, fn func()) {
		if set[name] || *configFile == "" {
			fn()
		}
	}
	apply("name", func() { cfg.Name = c.Name })
	apply("data", func() { cfg.DataDir = c.DataDir })
	apply("domain", func() { cfg.Domains = c.Domains })
	apply("users", func() { cfg.UsersFile = c.UsersFile })
	apply("smtp", func() { cfg.SMTPAddr = c.SMTPAddr })
	apply("pop3", func() { cfg.POP3Addr = c.POP3Addr })
	apply("pop3s", func() { cfg.POP3SAddr = c.POP3SAddr })
	apply("imap", func() { cfg.IMAPAddr = c.IMAPAddr })
	apply("imaps", func() { cfg.IMAPSAddr = c.IMAPSAddr })
	apply("dns", func() { cfg.DNSAddr = c.DNSAddr })
	apply("peer", func() { cfg.PeerAddr = c.PeerAddr })
	apply("http", func() { cfg.HTTPAddr = c.HTTPAddr })
	apply("gossip", func() { cfg.GossipAddr = c.GossipAddr })
	apply("join", func() { cfg.Join = c.Join })
	apply("advertise", func() { cfg.Advertise = c.Advertise })
	apply("roles", func() { cfg.Roles = c.Roles })
	apply("tls-cert", func() { cfg.TLSCert = c.TLSCert })
	apply("tls-key", func() { cfg.TLSKey = c.TLSKey })
	apply("replicas", func() { cfg.Replicas = c.Replicas })
	apply("write-quorum", func() { cfg.WriteQuorum = c.WriteQuorum })
	apply("peer-key", func() { cfg.PeerKey = c.PeerKey })
	apply("resync-catalog", func() { cfg.ResyncCatalog = c.ResyncCatalog })
	apply("peer-ca", func() { cfg.PeerCA = c.PeerCA })
	apply("peer-cert", func() { cfg.PeerCert = c.PeerCert })
	apply("peer-cert-key", func() { cfg.PeerCertKey = c.PeerCertKey })
	apply("insecure-peer-api", func() { cfg.InsecurePeerAPI = c.InsecurePeerAPI })
	apply("gossip-key", func() { cfg.GossipKey = c.GossipKey })
	apply("ingest-token", func() { cfg.IngestToken = c.IngestToken })
	apply("admin-token", func() { cfg.AdminToken = c.AdminToken })
	apply("gossip-profile", func() { cfg.GossipProfile = c.GossipProfile })
	apply("max-message-bytes", func() { cfg.MaxMessageBytes = c.MaxMessageBytes })
	apply("max-recipients", func() { cfg.MaxRecipients = c.MaxRecipients })
	apply("dns-ttl", func() { cfg.DNSTTL = c.DNSTTL })
	apply("zone-file", func() { cfg.ZoneFiles = zoneFiles })
	c.Pipeline.DNSBL = dnsbl
	apply("av-signatures", func() { cfg.Pipeline.AVSignatures = c.Pipeline.AVSignatures })
	apply("av-policy", func() { cfg.Pipeline.AVPolicy = c.Pipeline.AVPolicy })
	apply("clamd", func() { cfg.Pipeline.Clamd = c.Pipeline.Clamd })
	apply("spam-db", func() { cfg.Pipeline.SpamDB = c.Pipeline.SpamDB })
	apply("dnsbl", func() { cfg.Pipeline.DNSBL = c.Pipeline.DNSBL })
	apply("dnsbl-server", func() { cfg.Pipeline.DNSBLServer = c.Pipeline.DNSBLServer })
	apply("spam-reject", func() { cfg.Pipeline.SpamReject = c.Pipeline.SpamReject })
	apply("fail-open", func() { cfg.Pipeline.FailOpen = c.Pipeline.FailOpen })
	apply("sms-gateway", func() { cfg.Pipeline.SMSGateway = c.Pipeline.SMSGateway })
	c.Pipeline.Auth.ARCTrustedSealers = sealers
	apply("auth-resolver", func() { cfg.Pipeline.Auth.Resolver = c.Pipeline.Auth.Resolver })
	apply("auth-spf", func() { cfg.Pipeline.Auth.SPF = c.Pipeline.Auth.SPF })
	apply("auth-dkim", func() { cfg.Pipeline.Auth.DKIM = c.Pipeline.Auth.DKIM })
	apply("auth-dmarc", func() { cfg.Pipeline.Auth.DMARC = c.Pipeline.Auth.DMARC })
	apply("dmarc-policy", func() { cfg.Pipeline.Auth.DMARCPolicy = c.Pipeline.Auth.DMARCPolicy })
	apply("authserv-id", func() { cfg.Pipeline.Auth.AuthservID = c.Pipeline.Auth.AuthservID })
	apply("arc-trusted-sealer", func() { cfg.Pipeline.Auth.ARCTrustedSealers = c.Pipeline.Auth.ARCTrustedSealers })
	if cfg.Pipeline.Auth.Resolver == "system" {
		server, err := systemResolver("/etc/resolv.conf")
		if err != nil {
			return cfg, nil, nil, sf, fmt.Errorf("serve: --auth-resolver system: %w", err)
		}
		cfg.Pipeline.Auth.Resolver = server
	}
	apply("smtp-max-sessions", func() { cfg.SMTPMaxSessions = c.SMTPMaxSessions })
	apply("smtp-max-sessions-per-ip", func() { cfg.SMTPMaxSessionsPerIP = c.SMTPMaxSessionsPerIP })
	apply("smtp-rate-per-ip", func() { cfg.SMTPRatePerIP = c.SMTPRatePerIP })
	apply("smtp-read-timeout", func() { cfg.SMTPReadTimeout = c.SMTPReadTimeout })
	apply("pop3-idle-timeout", func() { cfg.POP3IdleTimeout = c.POP3IdleTimeout })
	apply("pop3-max-failed-logins", func() { cfg.POP3MaxFailedLogins = c.POP3MaxFailedLogins })
	apply("pop3-max-sessions", func() { cfg.POP3MaxSessions = c.POP3MaxSessions })
	apply("imap-max-sessions", func() { cfg.IMAPMaxSessions = c.IMAPMaxSessions })
	apply("pop3-max-sessions-per-ip", func() { cfg.POP3MaxSessionsPerIP = c.POP3MaxSessionsPerIP })
	apply("imap-max-sessions-per-ip", func() { cfg.IMAPMaxSessionsPerIP = c.IMAPMaxSessionsPerIP })
	apply("pop3-login-timeout", func() { cfg.POP3LoginTimeout = c.POP3LoginTimeout })
	apply("imap-login-timeout", func() { cfg.IMAPLoginTimeout = c.IMAPLoginTimeout })
	apply("smtp-rcpt-tarpit-after", func() { cfg.SMTPRcptTarpitAfter = c.SMTPRcptTarpitAfter })
	apply("smtp-rcpt-tarpit-delay", func() { cfg.SMTPRcptTarpitDelay = c.SMTPRcptTarpitDelay })
	apply("smtp-max-unknown-rcpts", func() { cfg.SMTPMaxUnknownRcpts = c.SMTPMaxUnknownRcpts })
	apply("smtp-max-unknown-rcpts-per-ip", func() { cfg.SMTPMaxUnknownRcptsPerIP = c.SMTPMaxUnknownRcptsPerIP })
	if set["allow-cleartext-auth"] {
		// Only when given: unset, the default depends on --tls-cert
		// (node.Config.CleartextAuthAllowed).
		cfg.AllowCleartextAuth = &allowCleartext
	}
	apply("dns-strategy", func() { cfg.DNSStrategy = c.DNSStrategy })
	apply("dns-rotate-every", func() { cfg.DNSRotateEvery = c.DNSRotateEvery })
	apply("placement-strategy", func() { cfg.PlacementStrategy = c.PlacementStrategy })
	apply("weight", func() { cfg.Weight = c.Weight })
	apply("load-stale", func() { cfg.LoadStale = c.LoadStale })
	apply("shutdown-grace", func() { cfg.ShutdownGrace = c.ShutdownGrace })
	apply("log-level", func() { cfg.LogLevel = c.LogLevel })
	if cfg.Name == "" {
		if h, err := os.Hostname(); err == nil {
			cfg.Name = strings.ToLower(strings.Split(h, ".")[0])
		}
	}
	level := new(slog.LevelVar)
	log, err := newLogger(level, *logFormat, stderr)
	if err != nil {
		return cfg, nil, nil, sf, err
	}
	resolveCopies(&cfg)
	if err := cfg.Validate(); err != nil {
		return cfg, nil, nil, sf, err
	}
	if err := cfg.CheckPeerAuth(); err != nil {
		return cfg, nil, nil, sf, err
	}
	if err := checkPprofAddr(sf.PprofAddr); err != nil {
		return cfg, nil, nil, sf, err
	}
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // Validate checked it
	return cfg, log, level, sf, nil
}

// strategyNames lists the built-in strategies usable for DNS (dns) or
// placement (!dns), in their order.
func strategyNames(dns bool) string {
	var out []string
	for _, s := range strategy.List() {
		if (dns && s.DNS) || (!dns && s.Placement) {
			out = append(out, s.Name)
		}
	}
	return strings.Join(out, ", ")
}

func newLogger(level *slog.LevelVar, format string, w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log-format: %q is not text or json", format)
}

// advertiseIP picks the IP DNS answers give for the node.
func advertiseIP(cfg node.Config) net.IP {
	if cfg.Advertise != "" {
		return net.ParseIP(cfg.Advertise)
	}
	for _, a := range []string{cfg.GossipAddr, cfg.SMTPAddr, cfg.PeerAddr, cfg.POP3Addr, cfg.IMAPAddr, cfg.DNSAddr} {
		if h, _, err := net.SplitHostPort(a); err == nil {
			if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
				return ip
			}
		}
	}
	return net.IPv4(127, 0, 0, 1)
}

func serve(args []string) error {
	cfg, log, level, sf, err := loadConfigLevel(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	// The log's first line says which binary runs: a rolling upgrade is
	// confirmed from the logs as well as from status and metrics.
	cfg.Version, cfg.Commit = version, commit
	b := node.ReadBuildInfo(version, commit)
	log.Info("mailarray: starting", "version", b.Version, "commit", b.Commit, "go_version", b.GoVersion, "node", cfg.Name)
	if err := checkSecrets(cfg); err != nil {
		return err
	}
	if sf.PprofAddr != "" {
		srv, _, err := startPprof(sf.PprofAddr, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	// Catch signals before anything starts: a SIGTERM that arrives while
	// the node is starting (a supervisor's stop right after its start) is
	// then a graceful shutdown once Start returns, not an abrupt exit with
	// the default action.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	// SIGHUP re-reads the configuration (reload below). Caught from the
	// start too: its default action would end the process.
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	self := env.Member{Name: cfg.Name, Addr: advertiseIP(cfg), Tags: map[string]string{env.TagRoles: strings.Join(cfg.Roles, ",")}}
	var membership env.Membership
	if cfg.GossipAddr == "" {
		membership = member.NewStatic(self)
	} else {
		sc := member.DefaultSerfConfig()
		sc.Name = cfg.Name
		sc.BindAddr = cfg.GossipAddr
		// No tags yet: roles and endpoints are advertised together by
		// node.Start once the listeners are bound. A member gossiped with
		// its roles but without its peer address would enter the others'
		// mirroring ring before they can reach it, and deliveries placed
		// on it would fail with 451 until its next tag update arrived.
		sc.Join = cfg.Join
		sc.SnapshotPath = filepath.Join(cfg.DataDir, "serf.snapshot")
		if cfg.GossipProfile != "" {
			sc.Profile = cfg.GossipProfile
		}
		if cfg.Advertise != "" {
			_, port, _ := net.SplitHostPort(cfg.GossipAddr)
			sc.AdvertiseAddr = net.JoinHostPort(cfg.Advertise, port)
		}
		if cfg.GossipKey != "" {
			k, err := base64.StdEncoding.DecodeString(cfg.GossipKey)
			if err != nil {
				return fmt.Errorf("config: gossip-key: %w", err)
			}
			sc.SecretKey = k
		}
		s, err := member.NewSerf(sc, log)
		if err != nil {
			return err
		}
		membership = s
	}
	e := env.Real(cfg.DataDir, log, membership)
	if len(sf.Delays) > 0 {
		// Loud on purpose: a node that slows itself must never pass for a
		// production one in its log.
		for p, w := range sf.Delays {
			log.Warn("mailarray: TEST FAULT ACTIVE: this node waits at a fault point on purpose (--test-fault); never use it in production",
				"point", string(p), "delay", w.String())
		}
		e.Fault = sf.Delays
	}
	n, err := node.New(cfg, e)
	if err != nil {
		membership.Close()
		return err
	}
	if err := n.Start(); err != nil {
		membership.Close()
		return err
	}
	var sig os.Signal
	for sig == nil {
		select {
		case sig = <-sigs:
		case <-hups:
			reload(args, n, level, log)
		}
	}
	grace := n.Config().ShutdownGrace // live: a reload may have changed it
	log.Info("mailarray: signal received, shutting down", "signal", sig.String(), "grace", grace.String())
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	go func() {
		// A second signal stops at once; acknowledged mail is durable anyway.
		<-sigs
		cancel()
	}()
	err = n.Shutdown(ctx)
	membership.Close()
	log.Info("mailarray: stopped")
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// reload re-reads the configuration as serve read it at start (the same
// arguments: the --config file, then the flags, which still win) and
// hands it to the node, which applies the keys that can change live
// (node/config_keys.go). A file that does not load or validate is
// refused, logged with the key at fault, and the node runs on unchanged.
func reload(args []string, n *node.Node, level *slog.LevelVar, log *slog.Logger) {
	log.Info("mailarray: SIGHUP received, reloading the configuration")
	next, _, err := loadConfig(args, io.Discard) // the arguments parsed at start
	if err == nil {
		err = checkSecrets(next)
	}
	if err != nil {
		n.RefuseReload(err) // counted, shown in status and logged there
		return
	}
	next.Version, next.Commit = version, commit
	if _, err := n.Reload(next); err != nil {
		return
	}
	_ = level.UnmarshalText([]byte(n.Config().LogLevel))
}

// resolveCopies fills R and W left at 0. A node that gossips is part of
// an array, and an array's point is that no message lives on one disk:
// R=2, W=2 unless the operator says otherwise. A lone node (no --gossip)
// has nowhere to mirror to and keeps one copy. W defaults to min(R, 2):
// every copy up to two is durable before the 250.
func resolveCopies(cfg *node.Config) {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
		if cfg.GossipAddr != "" {
			cfg.Replicas = 2
		}
	}
	if cfg.WriteQuorum == 0 {
		cfg.WriteQuorum = min(cfg.Replicas, 2)
	}
}

// systemResolver returns the first nameserver of a resolv.conf file as
// host:port.
func systemResolver(file string) (string, error) {
	cc, err := dns.ClientConfigFromFile(file)
	if err != nil {
		return "", err
	}
	if len(cc.Servers) == 0 {
		return "", fmt.Errorf("no nameserver in %s", file)
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}
