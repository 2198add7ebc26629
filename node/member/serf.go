package member

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"mailarray/node/env"
)

// Profiles select memberlist's timing presets.
const (
	// ProfileLAN is memberlist.DefaultLANConfig: nodes on one network,
	// failure detected in a few seconds.
	ProfileLAN = "lan"
	// ProfileLocal is memberlist.DefaultLocalConfig: loopback tests, faster
	// probes and shorter suspicion.
	ProfileLocal = "local"
)

// Named limits.
const (
	// maxNameLen is serf's own limit on node names (serf.validateNodeName).
	maxNameLen = 128
	// eventChBuffer sizes the channel serf writes member events into. Serf
	// sends while holding its member lock, and its snapshotter drops events
	// when the channel is full, so the channel is large and its one reader
	// (fanOut) never blocks. It exceeds serf's own 1024-event query stage so
	// that stage can flush into it even after fanOut stopped at Close.
	eventChBuffer = 2048
)

// SerfConfig configures real-mode membership. Zero values take the defaults
// of DefaultSerfConfig (Validate fills them).
type SerfConfig struct {
	// Name is the node's name, unique in the cluster and stable across
	// restarts (a restarted node with a new name is a new member).
	Name string
	// BindAddr is the gossip address, host:port, used for both UDP and
	// TCP. Port 0 lets memberlist pick a free port; GossipAddr reports it.
	BindAddr string
	// AdvertiseAddr, host:port with an IP host, is the address other
	// members use to reach this one (behind NAT, or when BindAddr is
	// 0.0.0.0). Empty: derived from BindAddr.
	AdvertiseAddr string
	// Tags are the initial tags (env.Tag*: peer, smtp, pop3, ... and
	// roles). Their encoding must fit memberlist's 512-byte meta limit.
	Tags map[string]string
	// Join lists gossip addresses of existing members. NewSerf tries them
	// once, then keeps retrying in the background with exponential backoff
	// (JoinBackoffMin..JoinBackoffMax) until one answers or Close. Empty:
	// the node forms a new cluster (or rejoins through its snapshot).
	Join []string
	// SecretKey, if set, is the 16, 24 or 32-byte AES key of memberlist's
	// keyring: gossip is encrypted and a node without the key can neither
	// join nor be heard.
	SecretKey []byte
	// Profile is ProfileLAN (default) or ProfileLocal.
	Profile string
	// SnapshotPath, if set, is a file in the data dir where serf records
	// the members it knew, so that a restarted node rejoins its old
	// cluster without Join. A node that left gracefully does not rejoin.
	SnapshotPath string
	// ReconnectTimeout is how long a failed member is kept (and retried)
	// before it is reaped, TombstoneTimeout the same for a member that
	// left.
	ReconnectTimeout time.Duration
	TombstoneTimeout time.Duration
	// JoinBackoffMin and JoinBackoffMax bound the wait between join
	// attempts; the wait doubles after each failed attempt.
	JoinBackoffMin time.Duration
	JoinBackoffMax time.Duration
	// SubscriberQueueMax bounds the events queued for one subscriber
	// beyond its channel buffer. On overflow the queue is replaced by the
	// current state of every member (see Subscribe). Should exceed the
	// cluster size.
	SubscriberQueueMax int
}

// DefaultSerfConfig returns the settings for a LAN deployment; Name is left
// for the caller.
func DefaultSerfConfig() SerfConfig {
	return SerfConfig{
		BindAddr:           "0.0.0.0:7946", // memberlist's and serf's usual port
		Profile:            ProfileLAN,
		ReconnectTimeout:   24 * time.Hour, // serf's default: a failed node is retried for a day
		TombstoneTimeout:   24 * time.Hour, // serf's default: a left node is remembered for a day
		JoinBackoffMin:     time.Second,
		JoinBackoffMax:     30 * time.Second,
		SubscriberQueueMax: 1024, // far above any cluster size; membership changes are rare
	}
}

// Validate fills defaults and rejects nonsense.
func (c *SerfConfig) Validate() error {
	d := DefaultSerfConfig()
	if c.Name == "" {
		return errors.New("member: name is empty")
	}
	if len(c.Name) > maxNameLen || strings.ContainsAny(c.Name, " \t\r\n/") {
		return fmt.Errorf("member: bad node name %q (at most %d bytes, no spaces or slashes)", c.Name, maxNameLen)
	}
	if c.BindAddr == "" {
		c.BindAddr = d.BindAddr
	}
	if _, _, err := splitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("member: bind address: %w", err)
	}
	if c.AdvertiseAddr != "" {
		host, port, err := splitHostPort(c.AdvertiseAddr)
		if err != nil {
			return fmt.Errorf("member: advertise address: %w", err)
		}
		if net.ParseIP(host) == nil || port == 0 {
			return fmt.Errorf("member: advertise address %q: want IP:port with a non-zero port", c.AdvertiseAddr)
		}
	}
	for _, a := range c.Join {
		if _, _, err := splitHostPort(a); err != nil {
			return fmt.Errorf("member: join address: %w", err)
		}
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("member: secret key is %d bytes, want 16, 24 or 32", len(c.SecretKey))
	}
	switch c.Profile {
	case "":
		c.Profile = d.Profile
	case ProfileLAN, ProfileLocal:
	default:
		return fmt.Errorf("member: unknown profile %q, want %q or %q", c.Profile, ProfileLAN, ProfileLocal)
	}
	if c.ReconnectTimeout <= 0 {
		c.ReconnectTimeout = d.ReconnectTimeout
	}
	if c.TombstoneTimeout <= 0 {
		c.TombstoneTimeout = d.TombstoneTimeout
	}
	if c.JoinBackoffMin <= 0 {
		c.JoinBackoffMin = d.JoinBackoffMin
	}
	if c.JoinBackoffMax <= 0 {
		c.JoinBackoffMax = d.JoinBackoffMax
	}
	if c.JoinBackoffMax < c.JoinBackoffMin {
		return fmt.Errorf("member: join backoff max %v below min %v", c.JoinBackoffMax, c.JoinBackoffMin)
	}
	if c.SubscriberQueueMax <= 0 {
		c.SubscriberQueueMax = d.SubscriberQueueMax
	}
	return nil
}

// splitHostPort parses host:port with a numeric port.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port of %q: %w", addr, err)
	}
	return host, int(port), nil
}

// Serf is membership on real sockets: hashicorp/serf over memberlist's UDP
// and TCP transport (its own sockets, not env.Net: the simulator replaces
// the whole of Serf with its modeled membership).
//
// Goroutines: Serf starts fanOut (owns serf's event channel), one pump per
// subscriber and, while a configured join has not succeeded, joinLoop. Close
// stops them all and waits for them. Serf and memberlist start their own;
// Shutdown stops them, but a few of theirs end only when a pending timer
// fires (for example Leave's propagation sleep and memberlist's suspicion
// timers), up to a few seconds after Close (docs/design.md: a synctest bubble
// must outwait them).
type Serf struct {
	cfg    SerfConfig
	log    *slog.Logger
	serf   *serf.Serf
	cancel context.CancelFunc

	joined    chan struct{} // closed once a join succeeded (or none was asked)
	joinDone  chan struct{} // closed when joinLoop ended
	stop      chan struct{} // closed by Close: fanOut ends
	fanDone   chan struct{} // closed when fanOut ended
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	subs    map[int]*subscriber
	nextSub int
	closed  bool

	resyncs atomic.Uint64 // subscriber queue overflows

	// view is every member's state as of the events fanOut handled; only
	// fanOut touches it.
	view map[string]env.Member
}

var _ env.Membership = (*Serf)(nil)

// NewSerf starts serf and, if cfg.Join is set, tries to join once before
// returning (a dial to an unreachable address can take memberlist's
// TCPTimeout: 10 s on LAN, 1 s local); if that fails it keeps trying in the
// background (see SerfConfig.Join and Joined). log may be nil.
func NewSerf(cfg SerfConfig, log *slog.Logger) (*Serf, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.Name)
	cfg.Tags = maps.Clone(cfg.Tags)
	cfg.Join = slices.Clone(cfg.Join)

	ml := memberlist.DefaultLANConfig()
	if cfg.Profile == ProfileLocal {
		ml = memberlist.DefaultLocalConfig()
	}
	bindHost, bindPort, _ := splitHostPort(cfg.BindAddr) // checked by Validate
	ml.BindAddr, ml.BindPort = bindHost, bindPort
	ml.AdvertiseAddr, ml.AdvertisePort = "", bindPort
	if cfg.AdvertiseAddr != "" {
		ml.AdvertiseAddr, ml.AdvertisePort, _ = splitHostPort(cfg.AdvertiseAddr)
	}
	if len(cfg.SecretKey) > 0 {
		ml.SecretKey = slices.Clone(cfg.SecretKey) // memberlist builds the keyring from it
	}
	lw := &logWriter{log: log}
	ml.LogOutput = lw

	sc := serf.DefaultConfig()
	sc.NodeName = cfg.Name
	sc.Tags = maps.Clone(cfg.Tags)
	sc.MemberlistConfig = ml
	sc.LogOutput = lw
	sc.SnapshotPath = cfg.SnapshotPath
	sc.ReconnectTimeout = cfg.ReconnectTimeout
	sc.TombstoneTimeout = cfg.TombstoneTimeout
	eventCh := make(chan serf.Event, eventChBuffer)
	sc.EventCh = eventCh

	sf, err := serf.Create(sc)
	if err != nil {
		return nil, fmt.Errorf("member: start serf: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Serf{
		cfg:      cfg,
		log:      log,
		serf:     sf,
		cancel:   cancel,
		joined:   make(chan struct{}),
		joinDone: make(chan struct{}),
		stop:     make(chan struct{}),
		fanDone:  make(chan struct{}),
		subs:     map[int]*subscriber{},
		view:     map[string]env.Member{},
	}
	go s.fanOut(eventCh)
	if len(cfg.Join) == 0 {
		close(s.joined)
		close(s.joinDone)
	} else if _, err := s.Join(cfg.Join); err == nil {
		close(s.joinDone)
	} else {
		log.Warn("member: join failed, retrying in the background", "addrs", cfg.Join, "err", err)
		go s.joinLoop(ctx)
	}
	log.Info("member: started", "gossip", s.GossipAddr(), "profile", cfg.Profile,
		"encrypted", sf.EncryptionEnabled(), "snapshot", cfg.SnapshotPath != "")
	return s, nil
}

// joinLoop retries cfg.Join with exponential backoff until one address
// answers or ctx ends (Close).
func (s *Serf) joinLoop(ctx context.Context) {
	defer close(s.joinDone)
	wait := s.cfg.JoinBackoffMin
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := s.Join(s.cfg.Join)
		if err == nil {
			return
		}
		wait = min(2*wait, s.cfg.JoinBackoffMax)
		s.log.Debug("member: join retry failed", "addrs", s.cfg.Join, "err", err, "next", wait)
		t.Reset(wait)
	}
}

// Join contacts the members at addrs (gossip host:port) and returns how
// many answered; the error is non-nil only if none did.
func (s *Serf) Join(addrs []string) (int, error) {
	// ignoreOld: user events sent before the join are not replayed (the
	// array uses none).
	n, err := s.serf.Join(addrs, true)
	if err != nil {
		return n, fmt.Errorf("member: join %v: %w", addrs, err)
	}
	s.markJoined()
	s.log.Info("member: joined", "contacted", n)
	return n, nil
}

func (s *Serf) markJoined() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.joined:
	default:
		close(s.joined)
	}
}

// Joined is closed once a join succeeded, or at once when the node was
// started without Join addresses.
func (s *Serf) Joined() <-chan struct{} { return s.joined }

// GossipAddr is the address other members reach this node at (host:port),
// with the port memberlist bound when BindAddr asked for port 0.
func (s *Serf) GossipAddr() string {
	return s.serf.Memberlist().LocalNode().Address()
}

// Local is this node as the cluster sees it.
func (s *Serf) Local() env.Member {
	return toEnvMember(s.serf.LocalMember())
}

// Members returns every member serf knows (alive, failed, left; reaped ones
// are gone), sorted by Name. It reads serf's state directly, so it is
// truthful even when a subscriber's events were coalesced.
func (s *Serf) Members() []env.Member {
	ms := s.serf.Members()
	out := make([]env.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, toEnvMember(m))
	}
	slices.SortFunc(out, func(a, b env.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// SetTags replaces this node's tags and gossips them; it blocks until the
// update is broadcast (serf's BroadcastTimeout, 5 s).
func (s *Serf) SetTags(tags map[string]string) error {
	if err := s.serf.SetTags(maps.Clone(tags)); err != nil {
		return fmt.Errorf("member: set tags: %w", err)
	}
	return nil
}

// Leave announces a graceful departure: the others mark this node left
// rather than failed. It blocks for the broadcast and serf's propagation
// delay (about a second). Close must follow.
func (s *Serf) Leave() error {
	s.log.Info("member: leaving")
	if err := s.serf.Leave(); err != nil {
		return fmt.Errorf("member: leave: %w", err)
	}
	return nil
}

// Close stops gossip (without Leave, the others will declare this node
// failed), ends every subscription and waits for this package's
// goroutines. A join attempt in flight can hold it for memberlist's
// TCPTimeout (10 s on LAN, 1 s local). Safe to call more than once.
func (s *Serf) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		if err := s.serf.Shutdown(); err != nil {
			s.closeErr = fmt.Errorf("member: shutdown: %w", err)
		}
		<-s.joinDone
		close(s.stop)
		<-s.fanDone
		s.mu.Lock()
		s.closed = true
		subs := s.subs
		s.subs = nil
		s.mu.Unlock()
		for _, sub := range subs {
			sub.end()
		}
		s.log.Info("member: closed")
	})
	return s.closeErr
}

// Stats returns serf's counters (members, failed, left, health_score,
// queues, encrypted...) and this wrapper's: name, gossip address, joined,
// subscribers, subscriber_resyncs.
func (s *Serf) Stats() map[string]string {
	st := s.serf.Stats()
	st["name"] = s.cfg.Name
	st["gossip_addr"] = s.GossipAddr()
	st["state"] = s.serf.State().String()
	select {
	case <-s.joined:
		st["joined"] = "true"
	default:
		st["joined"] = "false"
	}
	s.mu.Lock()
	st["subscribers"] = strconv.Itoa(len(s.subs))
	s.mu.Unlock()
	st["subscriber_resyncs"] = strconv.FormatUint(s.resyncs.Load(), 10)
	return st
}

// toEnvMember converts serf's view of a member.
func toEnvMember(m serf.Member) env.Member {
	return env.Member{
		Name:   m.Name,
		Addr:   slices.Clone(m.Addr),
		Tags:   maps.Clone(m.Tags),
		Status: toEnvStatus(m.Status),
	}
}

func toEnvStatus(st serf.MemberStatus) env.Status {
	switch st {
	case serf.StatusAlive:
		return env.StatusAlive
	case serf.StatusLeaving, serf.StatusLeft:
		return env.StatusLeft
	default:
		// StatusFailed, and StatusNone which serf never shows for a known
		// member: not alive means do not route to it.
		return env.StatusFailed
	}
}
