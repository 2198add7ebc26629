package peer

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"mailarray/node/fault"
)

// Limits of the protocol. They are constants, not Config fields: a
// request one node sends within them must be taken by every other node of
// the array, so they are part of the wire format.
const (
	// RequestTimeout bounds one peer request (exchange and body); callers
	// that make their own contexts for peer work use it too.
	RequestTimeout = 10 * time.Second
	// DialTimeout bounds connecting to a peer: a peer that vanished
	// without a reset (host down, partition) must not hold a write for the
	// whole request timeout.
	DialTimeout = 2 * time.Second
	// MaxEntriesBytes bounds one pushed batch of entries.
	MaxEntriesBytes = 16 << 20
	// CopyBatchMax bounds the ids of one batch read (POST /v1/copy-batch).
	CopyBatchMax = 64
	// CopyBatchBytes bounds the copies in one batch answer; the ids past
	// it are answered batchSkipped and read one by one.
	CopyBatchBytes = 16 << 20
	// DefaultMaxLockTTL is Config.MaxLockTTL when unset.
	DefaultMaxLockTTL = time.Minute
)

// Resolver finds a peer's API address. Membership (node/member) is one:
// PeerAddr is "" for a node that is not a live member or advertises no
// peer address. Called concurrently, on every request.
type Resolver interface {
	PeerAddr(node string) string
}

// Config is what a Client and a Server need of their node. The zero
// values of the optional fields are usable.
type Config struct {
	// Name is this node's name: the failpoint markers' argument (which
	// node the fault is injected on).
	Name string
	// Resolver maps node names to peer addresses (client). Required for
	// a Client.
	Resolver Resolver
	// Dial connects to a peer (client): the node's Env.Net.DialContext.
	// Required for a Client.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS, when set, makes both halves speak mutual TLS (LoadTLS).
	TLS *TLS
	// Key, when set, is the array's shared peer key: the client sends it
	// in X-Mailarray-Key and the server refuses requests without it.
	Key string
	// MaxLockTTL bounds the lease a peer may take on a mailbox (server):
	// the node's own lease TTL. A longer one asked for is cut to it, so
	// no peer can lock a mailbox out for longer than the node itself
	// would. Zero: DefaultMaxLockTTL.
	MaxLockTTL time.Duration
	// MaxCopyBytes bounds the body of a copy PUT (server): the node's
	// largest message plus room for its headers.
	MaxCopyBytes int64
	// Log gets the protocol's own events (refused requests, streams
	// ended, corrupt copies served). Nil: discarded.
	Log *slog.Logger
	// ChargeCPU, when set, is told the bytes of every copy received (the
	// simulator's CPU cost model). Called concurrently.
	ChargeCPU func(bytes int)
	// Inject, when set, asks the node's fault hook and failpoints
	// (Env.Inject) before serving copies (fault.PeerFetch: an error fails
	// the request with 503 and the error's text) and after a copy PUT
	// (fault.MirrorAck). Nil: the failpoints only. Called concurrently.
	Inject func(p fault.Point, where string) error
}

// validate fills defaults and rejects a config a Client could not use.
func (c *Config) validate(client bool) error {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.MaxLockTTL <= 0 {
		c.MaxLockTTL = DefaultMaxLockTTL
	}
	if c.MaxCopyBytes <= 0 {
		c.MaxCopyBytes = 64 << 20
	}
	if client && (c.Resolver == nil || c.Dial == nil) {
		return errors.New("peer: config: a client needs a Resolver and Dial")
	}
	return nil
}

// inject asks about point p on this node: the fault hook if set, and the
// failpoint in any case.
func (c *Config) inject(p fault.Point) error {
	if c.Inject == nil {
		return fault.Inject(nil, p, c.Name)
	}
	return c.Inject(p, c.Name)
}

func (c *Config) chargeCPU(n int) {
	if c.ChargeCPU != nil {
		c.ChargeCPU(n)
	}
}
