package node

import (
	"fmt"
	"net"
	"strings"
)

// How the peer API is protected, as Status.PeerAPI reports it.
const (
	PeerAPIMutualTLS     = "mutual-tls"
	PeerAPIKey           = "key"
	PeerAPIMutualTLSKey  = "mutual-tls+key"
	PeerAPIOpenLoopback  = "unauthenticated (loopback only)"
	PeerAPIOpenInsecure  = "UNAUTHENTICATED (insecure-peer-api)"
	peerAPINoListener    = "none"
	peerAPIInsecureLabel = "insecure-peer-api"
)

// PeerAPIMode says how the peer API of a node with this configuration is
// protected (one of the PeerAPI constants, or "none" without a peer
// listener).
func (c *Config) PeerAPIMode() string {
	switch {
	case c.PeerAddr == "":
		return peerAPINoListener
	case c.PeerCA != "" && c.PeerKey != "":
		return PeerAPIMutualTLSKey
	case c.PeerCA != "":
		return PeerAPIMutualTLS
	case c.PeerKey != "":
		return PeerAPIKey
	case loopbackAddr(c.PeerAddr):
		return PeerAPIOpenLoopback
	}
	return PeerAPIOpenInsecure
}

// CheckPeerAuth refuses a peer API that would listen beyond loopback with
// neither a peer key nor a peer CA, unless InsecurePeerAPI says the
// operator means it. Without credentials anyone who reaches the port can
// list every catalog entry, read any message, inject committed mail that
// never passed SMTP or the filters, and tombstone whole mailboxes.
// `mailarray serve` calls it; Validate does not, because the simulator's
// nodes speak over a simulated network nobody else reaches.
func (c *Config) CheckPeerAuth() error {
	if c.PeerAPIMode() != PeerAPIOpenInsecure || c.InsecurePeerAPI {
		return nil
	}
	return fmt.Errorf("config: peer: %q is not a loopback address and the peer API has neither peer-key nor peer-ca: "+
		"anyone reaching it could read, inject and delete mail; set peer-key (e.g. `head -c 32 /dev/urandom | base64`) "+
		"and/or peer-ca/peer-cert/peer-cert-key, or, on a lab network only, %s", c.PeerAddr, peerAPIInsecureLabel)
}

// warnPeerAuth logs, at start, a peer API without credentials: loudly
// when it listens beyond loopback (only with InsecurePeerAPI), as a plain
// warning on loopback.
func (n *Node) warnPeerAuth() {
	switch n.conf().PeerAPIMode() {
	case PeerAPIOpenInsecure:
		n.log.Warn("peer: THE PEER API IS UNAUTHENTICATED ON A NON-LOOPBACK ADDRESS (insecure-peer-api): anyone who reaches it can read, inject and delete mail",
			"peer", n.conf().PeerAddr)
	case PeerAPIOpenLoopback:
		n.log.Warn("peer: the peer API has neither peer-key nor peer-ca; any local process can read, inject and delete mail",
			"peer", n.conf().PeerAddr)
	}
}

// loopbackAddr reports whether host:port names a loopback host: an
// address in 127.0.0.0/8 or ::1, or localhost. An empty host or an
// unspecified address (0.0.0.0, ::) listens on every interface.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
