package simnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// LinkConfig models one direction of the path between two hosts.
type LinkConfig struct {
	// Latency is the one-way propagation delay of every segment and datagram.
	Latency time.Duration
	// Jitter adds a uniform random delay in [0, Jitter) per segment, drawn
	// from the net's seeded stream. Streams stay in order (FIFO) regardless.
	Jitter time.Duration
	// BandwidthBytesPerSec is the link's capacity; a segment occupies the
	// link for (payload+SegmentOverheadBytes)/BandwidthBytesPerSec before
	// its latency starts (serialisation delay, FIFO per link). 0 means
	// unlimited.
	BandwidthBytesPerSec int64
	// LossRate is the probability that a segment or datagram is lost.
	// Datagrams are dropped. Stream segments are never dropped (TCP
	// retransmits): a lost segment arrives one RetransmitTimeout late.
	LossRate float64
}

// Validate reports a link model that cannot be simulated.
func (l LinkConfig) Validate() error {
	switch {
	case l.Latency < 0:
		return fmt.Errorf("simnet: link latency %v < 0", l.Latency)
	case l.Jitter < 0:
		return fmt.Errorf("simnet: link jitter %v < 0", l.Jitter)
	case l.BandwidthBytesPerSec < 0:
		return fmt.Errorf("simnet: link bandwidth %d bytes/s < 0", l.BandwidthBytesPerSec)
	case !(l.LossRate >= 0 && l.LossRate < 1): // also rejects NaN
		return fmt.Errorf("simnet: link loss rate %v outside [0, 1)", l.LossRate)
	}
	return nil
}

// LinkOverride replaces the default link model between hosts A and B, in
// both directions.
type LinkOverride struct {
	A, B string // host IPs
	Link LinkConfig
}

// NetConfig is the network model of a simulation. Start from
// DefaultNetConfig; NewNet panics on a config that fails Validate.
type NetConfig struct {
	// Link is the model of every path between two distinct hosts unless
	// overridden by Links or Net.SetLink.
	Link LinkConfig
	// Loopback is the model of traffic from a host to itself.
	Loopback LinkConfig
	// Links are per host-pair overrides of Link.
	Links []LinkOverride

	// ConnectTimeout bounds a TCP connect whose SYN never arrives (partition,
	// host down): the OS's SYN retries, shortened. The dial context may end
	// the wait earlier.
	ConnectTimeout time.Duration
	// RetransmitTimeout is the delay a lost stream segment adds (Linux's
	// minimum RTO is 200 ms).
	RetransmitTimeout time.Duration

	// StreamBufferBytes bounds the bytes written on one direction of a
	// stream and not yet read by the peer (socket buffers). Write blocks
	// beyond it, honouring its deadline; a single larger Write is accepted
	// when nothing is outstanding.
	StreamBufferBytes int
	// SegmentBytesMax splits larger Writes into several segments, so a big
	// transfer arrives progressively rather than in one piece.
	SegmentBytesMax int
	// SegmentOverheadBytes is added to every segment's size for the
	// bandwidth model (IPv4 + TCP headers).
	SegmentOverheadBytes int
	// ListenBacklog bounds connections delivered to a listener and not yet
	// accepted; beyond it a SYN is refused.
	ListenBacklog int
	// PacketQueueLen bounds datagrams queued on a PacketConn and not yet
	// read; beyond it datagrams are dropped, as by a full UDP socket buffer.
	PacketQueueLen int
	// DatagramBytesMax is the largest datagram WriteTo accepts (UDP over
	// IPv4: 65507).
	DatagramBytesMax int
	// EphemeralPortMin and EphemeralPortMax bound the ports picked for
	// dials and for listens on port 0 (Linux defaults). A port is a hash
	// of the dial's destination and its number among the host's dials
	// there, so the same run picks the same ports whatever order
	// simultaneous dials to different destinations run in.
	EphemeralPortMin, EphemeralPortMax int

	// Trace, if set, receives one line per network event and note. For
	// debugging a determinism failure: diff two traces. Slow.
	Trace io.Writer
}

// Limits and defaults of the network model.
const (
	defaultLatency           = 200 * time.Microsecond
	defaultJitter            = 100 * time.Microsecond
	defaultBandwidth         = 125_000_000 // 1 Gbit/s
	defaultLoopbackLatency   = 20 * time.Microsecond
	defaultConnectTimeout    = 3 * time.Second
	defaultRetransmitTimeout = 200 * time.Millisecond
	defaultStreamBuffer      = 16 << 20
	defaultSegmentMax        = 64 << 10
	defaultSegmentOverhead   = 40
	defaultBacklog           = 4096 // Linux somaxconn since 5.4
	defaultPacketQueue       = 1024
	maxUDPPayload            = 65507
	defaultEphemeralMin      = 32768 // Linux ip_local_port_range
	defaultEphemeralMax      = 60999
)

// DefaultNetConfig is a lossless 1 Gbit/s LAN with 200-300 µs one-way
// latency, a 3 s connect timeout and Linux's socket limits.
func DefaultNetConfig() NetConfig {
	return NetConfig{
		Link: LinkConfig{
			Latency:              defaultLatency,
			Jitter:               defaultJitter,
			BandwidthBytesPerSec: defaultBandwidth,
		},
		Loopback:             LinkConfig{Latency: defaultLoopbackLatency},
		ConnectTimeout:       defaultConnectTimeout,
		RetransmitTimeout:    defaultRetransmitTimeout,
		StreamBufferBytes:    defaultStreamBuffer,
		SegmentBytesMax:      defaultSegmentMax,
		SegmentOverheadBytes: defaultSegmentOverhead,
		ListenBacklog:        defaultBacklog,
		PacketQueueLen:       defaultPacketQueue,
		DatagramBytesMax:     maxUDPPayload,
		EphemeralPortMin:     defaultEphemeralMin,
		EphemeralPortMax:     defaultEphemeralMax,
	}
}

// Validate reports a config that cannot be simulated.
func (c NetConfig) Validate() error {
	if err := c.Link.Validate(); err != nil {
		return fmt.Errorf("simnet: default link: %w", err)
	}
	if err := c.Loopback.Validate(); err != nil {
		return fmt.Errorf("simnet: loopback: %w", err)
	}
	for i, o := range c.Links {
		if net.ParseIP(o.A) == nil || net.ParseIP(o.B) == nil {
			return fmt.Errorf("simnet: link override %d: hosts %q, %q must be IP addresses", i, o.A, o.B)
		}
		if err := o.Link.Validate(); err != nil {
			return fmt.Errorf("simnet: link override %d (%s-%s): %w", i, o.A, o.B, err)
		}
	}
	switch {
	case c.ConnectTimeout <= 0:
		return errors.New("simnet: ConnectTimeout must be > 0")
	case c.RetransmitTimeout < 0:
		return errors.New("simnet: RetransmitTimeout must be >= 0")
	case c.StreamBufferBytes <= 0:
		return errors.New("simnet: StreamBufferBytes must be > 0")
	case c.SegmentBytesMax <= 0:
		return errors.New("simnet: SegmentBytesMax must be > 0")
	case c.SegmentOverheadBytes < 0:
		return errors.New("simnet: SegmentOverheadBytes must be >= 0")
	case c.ListenBacklog <= 0:
		return errors.New("simnet: ListenBacklog must be > 0")
	case c.PacketQueueLen <= 0:
		return errors.New("simnet: PacketQueueLen must be > 0")
	case c.DatagramBytesMax <= 0 || c.DatagramBytesMax > maxUDPPayload:
		return fmt.Errorf("simnet: DatagramBytesMax must be in (0, %d]", maxUDPPayload)
	case c.EphemeralPortMin < 1 || c.EphemeralPortMax > 65535 || c.EphemeralPortMin > c.EphemeralPortMax:
		return fmt.Errorf("simnet: ephemeral ports [%d, %d] not within [1, 65535]", c.EphemeralPortMin, c.EphemeralPortMax)
	}
	return nil
}
