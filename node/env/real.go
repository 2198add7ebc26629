package env

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"net"
)

// RealNet is the operating system's network. It is the only code under
// node/ allowed to call the net package's Listen and Dial (see the
// presubmit test).
type RealNet struct {
	Dialer net.Dialer
	LC     net.ListenConfig
}

var _ Net = (*RealNet)(nil)

func (n *RealNet) Listen(network, address string) (net.Listener, error) {
	return n.LC.Listen(context.Background(), network, address)
}

func (n *RealNet) ListenPacket(network, address string) (net.PacketConn, error) {
	return n.LC.ListenPacket(context.Background(), network, address)
}

func (n *RealNet) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return n.Dialer.DialContext(ctx, network, address)
}

// SeedFromOS draws a seed from the operating system's entropy.
func SeedFromOS() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("env: crypto/rand failed: " + err.Error())
	}
	return binary.LittleEndian.Uint64(b[:])
}

// Real returns the Env for a node on real sockets. membership may be a
// member.Serf or, for a lone node, a member.Static.
func Real(dataDir string, log *slog.Logger, membership Membership) *Env {
	return &Env{
		Net:        &RealNet{},
		Rand:       NewRand(SeedFromOS()),
		Membership: membership,
		DataDir:    dataDir,
		Log:        log,
	}
}
