package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/ddns"
	"mailarray/node/directory"
	"mailarray/node/env"
	imapd "mailarray/node/imap"
	"mailarray/node/peer"
	"mailarray/node/pipeline"
	"mailarray/node/pop3"
	"mailarray/node/replica"
	"mailarray/node/smtp"
	"mailarray/node/store"
)

// Env is the node's world; see package env.
type Env = env.Env

// Node is one member of the array.
type Node struct {
	// cfg is the running configuration, replaced whole by Reload
	// (reload.go) and never modified in place: a reader takes one
	// snapshot (conf) and sees every key of one version.
	cfg atomic.Pointer[Config]
	env *Env
	log *slog.Logger

	store *store.Store
	cat   *catalog.Catalog
	dir   *directory.Directory
	tls   *certReloader

	smtp *smtp.Server
	pop3 *pop3.Server
	imap *imapd.Server
	uids uidAssigner
	dns  *ddns.Server
	peer *peer.Client // nil until startPeer
	web  *http.Server

	peerSrv *peer.Server // nil without a peer listener

	members *memberView
	locks   *lockTable
	repl    *replica.Replicator
	metrics *metrics
	// in is the pipeline in use, swapped by a reload (inbound.go:
	// useInbound, swapInbound); notifier outlives it.
	inMu     sync.RWMutex
	in       *inbound
	notifier *pipeline.Notifier
	zones    *loopGroup // the zone-file watcher, replaced by a reload (dnszones.go)
	loads    *loadTracker
	bal      *balancer
	ready    *readiness
	drain    *drainer // drain.go
	txs      *txTable // this listener's transactions in flight (txn.go)
	boot     uint64   // boot id, drawn at each start (txn.go)
	reload   reloader // the last configuration reload (reload.go)

	mu        sync.Mutex
	addrs     map[string]string // bound listener addresses by config key
	listeners []io.Closer
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	ctx       context.Context
	started   bool
	closed    bool
}

// New opens the node's store, catalog and directory. Start binds its
// listeners.
func New(cfg Config, e *Env) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if e == nil || e.Net == nil || e.Rand == nil || e.Membership == nil || e.Log == nil {
		panic("node: Env needs Net, Rand, Membership and Log")
	}
	log := e.Log.With("node", cfg.Name)
	n := &Node{env: e, log: log, addrs: map[string]string{}}
	n.cfg.Store(&cfg)
	var err error
	dataDir := cfg.DataDir
	if e.DataDir != "" && !filepath.IsAbs(dataDir) && dataDir == DefaultConfig().DataDir {
		dataDir = e.DataDir
	}
	sopts := store.DefaultOptions(filepath.Join(dataDir, "node.db"))
	sopts.NoSync = cfg.NoSync
	if e.Fault != nil {
		sopts.Fault = e.Fault.Fault
	}
	if e.Cost != nil {
		sopts.Disk = e.Cost.Disk
		// The simulator's cost model also settles group commits (see
		// store.Options.Settle and Node.settle).
		if st, ok := e.Cost.(settler); ok {
			sopts.Settle = func() { st.Settle("store") }
		}
		// ... and keeps the chaos checker's durability ledger (when each
		// copy became durable on this node, and was dropped or deleted).
		if lg, ok := e.Cost.(durabilityLedger); ok {
			sopts.Durable, sopts.Dropped = lg.Durable, lg.Dropped
		}
	}
	if n.store, err = store.Open(sopts); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.cat, err = catalog.Open(n.store, log, catalog.WithWall(e.Wall)); err != nil {
		n.store.Close()
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := n.checkRejoin(); err != nil {
		n.store.Close()
		return nil, err
	}
	if n.dir, err = openDirectory(cfg, log); err != nil {
		n.store.Close()
		return nil, fmt.Errorf("node: %w", err)
	}
	if cfg.TLSCert != "" {
		if n.tls, err = newCertReloader(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			n.store.Close()
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	n.boot = newBootID(cfg.Name, time.Now().UnixNano())
	n.txs = newTxTable()
	n.members = newMemberView(e.Membership, cfg.Replicas)
	n.locks = newLockTable(n.members.GoneOrRestarted)
	n.locks.observe = e.LeaseObserver()
	n.repl = newReplicator(n)
	n.metrics = newMetrics(n)
	if n.notifier, err = newNotifier(n); err != nil {
		n.store.Close()
		return nil, fmt.Errorf("node: pipeline: %w", err)
	}
	if n.in, err = newInbound(n, cfg.Pipeline); err != nil {
		n.store.Close()
		return nil, fmt.Errorf("node: pipeline: %w", err)
	}
	n.loads = newLoadTracker(n)
	n.bal = newBalancer(n)
	n.ready = newReadiness(n)
	n.drain = newDrainer(n)
	n.cat.OnChange(n.onCatalogChange)
	return n, nil
}

func openDirectory(cfg Config, log *slog.Logger) (*directory.Directory, error) {
	if cfg.UsersFile != "" {
		return directory.Open(cfg.UsersFile, log)
	}
	entries, problems := directory.Parse(strings.NewReader(strings.Join(cfg.Mailboxes, "\n")), "mailboxes")
	for _, p := range problems {
		log.Warn("directory: bad inline mailbox skipped", "problem", p.String())
	}
	return directory.NewFromEntries(directory.DefaultConfig(), log, entries...)
}

// settler is implemented by the simulator's cost model: Settle(who)
// returns once every goroutine that could act at this instant has blocked.
type settler interface{ Settle(who string) }

// durabilityLedger is implemented by the simulator's cost model: the
// store reports to it each group's copies once durable (store.Options
// Durable and Dropped).
type durabilityLedger interface {
	Durable(put, deleted []string)
	Dropped(put []string)
}

// settle lets the simulator finish the current instant before a loop
// drains a queue it was woken for, so that what the loop takes does not
// depend on goroutine scheduling and a simulated run replays. who names
// the loop (unique within the node). Real mode: nothing.
func (n *Node) settle(who string) {
	if st, ok := n.env.Cost.(settler); ok {
		st.Settle(who)
	}
}

// Name is the node's name.
func (n *Node) Name() string { return n.conf().Name }

// Config returns the node's validated configuration as it runs now.
func (n *Node) Config() Config { return *n.conf() }

// conf is the running configuration: one consistent snapshot, not to be
// modified (Reload replaces it whole).
func (n *Node) conf() *Config { return n.cfg.Load() }

// Catalog is the node's catalog replica (for status, tests and the checker).
func (n *Node) Catalog() *catalog.Catalog { return n.cat }

// Store is the node's store (for status, tests and the checker).
func (n *Node) Store() *store.Store { return n.store }

// Directory is the node's mailbox directory.
func (n *Node) Directory() *directory.Directory { return n.dir }

// Addr returns the bound address of a listener by its config key (smtp,
// pop3, pop3s, imap, imaps, dns, peer, http), or "" if it is not running.
func (n *Node) Addr(key string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addrs[key]
}

// Start binds every configured listener through Env.Net, advertises the
// node's endpoints in membership and starts its background work.
func (n *Node) Start() (err error) {
	n.mu.Lock()
	if n.started {
		n.mu.Unlock()
		return errors.New("node: already started")
	}
	n.started = true
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.mu.Unlock()
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	n.warnCleartext()
	// The peer client first: an SMTP session may store a copy on a peer,
	// and a POP3 or IMAP one read from it, as soon as their listeners
	// accept (a node restarted under load took mail before the client
	// existed and died on it: make soak-real, seed 71).
	if err := n.startPeer(); err != nil {
		return err
	}
	if err := n.startSMTP(); err != nil {
		return err
	}
	if err := n.startPOP3(); err != nil {
		return err
	}
	if err := n.startIMAP(); err != nil {
		return err
	}
	if err := n.startDNS(); err != nil {
		return err
	}
	if err := n.startHTTP(); err != nil {
		return err
	}
	if err := n.advertise(); err != nil {
		return err
	}
	n.members.refresh() // see our own roles before the first RCPT
	n.members.start(n.ctx, &n.wg, n.onMembership)
	n.repl.Start(n.ctx, &n.wg)
	n.loads.start(n.ctx, &n.wg, n.bal.needsLoad())
	n.goLoop(n.ready.run)
	n.resumeDrain()
	if n.conf().UsersFile != "" {
		n.goLoop(func(ctx context.Context) { n.dir.Watch(ctx, n.conf().UsersReload) })
	}
	if n.tls != nil {
		n.goLoop(func(ctx context.Context) { n.tls.Watch(ctx, n.conf().UsersReload) })
	}
	n.goLoop(n.notifier.Run)
	n.inMu.Lock()
	n.in.start(n.ctx, n.conf().UsersReload)
	n.inMu.Unlock()
	n.log.Info("node: started", "addrs", n.addrsSnapshot(), "roles", n.conf().Roles, "replicas", n.conf().Replicas, "write_quorum", n.conf().WriteQuorum)
	return nil
}

func (n *Node) goLoop(fn func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn(n.ctx)
	}()
}

func (n *Node) addrsSnapshot() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]string, len(n.addrs))
	for k, v := range n.addrs {
		out[k] = v
	}
	return out
}

func (n *Node) listen(key, addr string) (net.Listener, error) {
	l, err := n.env.Net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("node: %s listener on %s: %w", key, addr, err)
	}
	n.mu.Lock()
	n.addrs[key] = l.Addr().String()
	n.listeners = append(n.listeners, l)
	n.mu.Unlock()
	return l, nil
}

func (n *Node) serve(key string, fn func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, pop3.ErrServerClosed) && !errors.Is(err, ddns.ErrServerClosed) {
			n.log.Error("node: listener stopped", "listener", key, "err", err)
		}
	}()
}

func (n *Node) tlsConfig() func() *tls.Config {
	if n.tls == nil {
		return nil
	}
	return n.tls.Config
}

func (n *Node) startSMTP() error {
	if n.conf().SMTPAddr == "" {
		return nil
	}
	scfg := smtp.DefaultConfig()
	scfg.Hostname = n.hostname()
	scfg.MaxMessageBytes = n.conf().MaxMessageBytes
	scfg.MaxRecipients = n.conf().MaxRecipients
	scfg.TLS = n.tlsConfig()
	scfg.Observe = n.metrics.observeSMTP
	scfg.MaxSessions, scfg.MaxSessionsPerIP, scfg.RatePerIP = n.conf().SMTPMaxSessions, n.conf().SMTPMaxSessionsPerIP, n.conf().SMTPRatePerIP
	scfg.ReadTimeout = n.conf().SMTPReadTimeout
	scfg.UnknownRcptTarpitAfter, scfg.UnknownRcptDelay = n.conf().SMTPRcptTarpitAfter, n.conf().SMTPRcptTarpitDelay
	scfg.MaxUnknownRcpts, scfg.MaxUnknownRcptsPerIP = n.conf().SMTPMaxUnknownRcpts, n.conf().SMTPMaxUnknownRcptsPerIP
	s, err := smtp.New(scfg, (*smtpBackend)(n), n.log)
	if err != nil {
		return err
	}
	l, err := n.listen("smtp", n.conf().SMTPAddr)
	if err != nil {
		return err
	}
	n.smtp = s
	n.serve("smtp", func() error { return s.Serve(l) })
	return nil
}

func (n *Node) startPOP3() error {
	if n.conf().POP3Addr == "" && n.conf().POP3SAddr == "" {
		return nil
	}
	pcfg := pop3.DefaultConfig()
	pcfg.Hostname = n.hostname()
	pcfg.TLS = n.tlsConfig()
	pcfg.IdleTimeout = n.conf().POP3IdleTimeout
	pcfg.MaxFailedLogins = n.conf().POP3MaxFailedLogins
	pcfg.MaxSessions = n.conf().POP3MaxSessions
	pcfg.MaxSessionsPerAddr = n.conf().POP3MaxSessionsPerIP
	pcfg.LoginTimeout = n.conf().POP3LoginTimeout
	pcfg.RequireTLS = !n.conf().CleartextAuthAllowed()
	pcfg.Logins = n.recordLogin
	s := pop3.New(pcfg, (*pop3Backend)(n), n.log)
	n.pop3 = s
	if n.conf().POP3Addr != "" {
		l, err := n.listen("pop3", n.conf().POP3Addr)
		if err != nil {
			return err
		}
		n.serve("pop3", func() error { return s.Serve(l) })
	}
	if n.conf().POP3SAddr != "" {
		l, err := n.listen("pop3s", n.conf().POP3SAddr)
		if err != nil {
			return err
		}
		tl := tls.NewListener(l, &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return n.tls.Config(), nil }})
		n.serve("pop3s", func() error { return s.Serve(tl) })
	}
	return nil
}

func (n *Node) startDNS() error {
	if n.conf().DNSAddr == "" {
		return nil
	}
	dcfg := ddns.DefaultConfig()
	dcfg.TTL = n.conf().DNSTTL
	s := ddns.New(dcfg, (*dnsSource)(n), n.bal.orderer(), n.env)
	if err := n.loadZones(s); err != nil {
		return err
	}
	pc, l, err := n.bindDNS()
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.addrs["dns"] = pc.LocalAddr().String()
	n.addrs["dns-tcp"] = l.Addr().String()
	n.listeners = append(n.listeners, pc, l)
	n.mu.Unlock()
	n.dns = s
	n.serve("dns-udp", func() error { return s.ServeUDP(pc) })
	n.serve("dns-tcp", func() error { return s.ServeTCP(l) })
	return nil
}

// dnsBindAttempts bounds the search for a port free for both UDP and TCP
// when the DNS address asks for any port (":0"): the UDP port the system
// picks may be taken for TCP, by an outgoing connection for instance.
const dnsBindAttempts = 16

// bindDNS binds UDP and TCP on the same port (RFC 7766: TCP is mandatory
// for DNS).
func (n *Node) bindDNS() (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(n.conf().DNSAddr)
	for attempt := 1; ; attempt++ {
		pc, err := n.env.Net.ListenPacket("udp", n.conf().DNSAddr)
		if err != nil {
			return nil, nil, fmt.Errorf("node: dns udp listener on %s: %w", n.conf().DNSAddr, err)
		}
		l, err := n.env.Net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || attempt == dnsBindAttempts {
			return nil, nil, fmt.Errorf("node: dns-tcp listener on %s: %w", pc.LocalAddr(), err)
		}
	}
}

func (n *Node) startHTTP() error {
	if n.conf().HTTPAddr == "" {
		return nil
	}
	l, err := n.listen("http", n.conf().HTTPAddr)
	if err != nil {
		return err
	}
	n.web = &http.Server{Handler: n.httpHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	n.serve("http", func() error {
		if err := n.web.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return nil
}

// hostname is the name the node gives itself in greetings and headers.
func (n *Node) hostname() string {
	return n.conf().Name + "." + n.conf().Domains[0]
}

// advertise publishes the node's endpoints and roles in membership.
func (n *Node) advertise() error {
	tags := map[string]string{env.TagRoles: strings.Join(n.conf().Roles, ","), env.TagWeight: strconv.Itoa(n.conf().Weight), env.TagBoot: bootString(n.boot), env.TagReady: n.ready.tag()}
	if n.drain.draining() {
		tags[env.TagDraining] = "1"
	}
	for key, tag := range map[string]string{"smtp": env.TagSMTP, "pop3": env.TagPOP3, "imap": env.TagIMAP, "dns": env.TagDNS, "peer": env.TagPeer} {
		if a := n.Addr(key); a != "" {
			tags[tag] = n.advertisedAddr(a)
		}
	}
	return n.env.Membership.SetTags(tags)
}

// advertisedAddr replaces an unspecified listen host by the advertise IP.
func (n *Node) advertisedAddr(a string) string {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return a
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if n.conf().Advertise != "" {
			return net.JoinHostPort(n.conf().Advertise, port)
		}
	}
	return a
}

// Shutdown stops taking new work and lets work in flight finish until ctx
// is done, then closes everything. Nothing acknowledged is lost: every 250
// was durable before it was sent.
func (n *Node) Shutdown(ctx context.Context) error {
	n.log.Info("node: shutting down")
	var errs []error
	if n.smtp != nil {
		if err := n.smtp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("smtp: %w", err))
		}
	}
	if n.web != nil {
		if err := n.web.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
	}
	if n.imap != nil {
		// IMAP sessions are long-lived (IDLE): say BYE rather than wait.
		n.imap.Bye(ctx)
	}
	n.repl.StopMaintenance()
	n.repl.Flush(ctx)
	n.repl.RecordMembership() // a clean stop was a member until now
	// Leave waits for the goodbye to spread (serf: up to 5 s); never past
	// the grace deadline.
	left := make(chan error, 1)
	go func() { left <- n.env.Membership.Leave() }()
	select {
	case err := <-left:
		if err != nil {
			errs = append(errs, fmt.Errorf("membership leave: %w", err))
		}
	case <-ctx.Done():
		n.log.Warn("node: leave not confirmed before the grace deadline")
	}
	if err := n.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close stops everything at once and closes the store. Acknowledged mail is
// already durable; transactions in flight fail and are not acknowledged.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	cancel := n.cancel
	ls := n.listeners
	n.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if n.smtp != nil {
		n.smtp.Close()
	}
	if n.pop3 != nil {
		n.pop3.Close()
	}
	if n.imap != nil {
		n.imap.Close()
	}
	if n.dns != nil {
		n.dns.Close()
	}
	if n.web != nil {
		n.web.Close()
	}
	n.closePeer()
	n.notifier.Close()
	for _, l := range ls {
		l.Close()
	}
	n.wg.Wait()
	// The loops a reload may have replaced: stopped (cancel above) and
	// waited for here.
	n.inMu.RLock()
	in := n.in
	n.inMu.RUnlock()
	in.loops.stop()
	n.stopZoneWatch()
	return n.store.Close()
}
