package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"mailarray/node/tlstest"
)

// A cluster configured with the array's CA replicates over streams inside
// mutual TLS. (node/peer tests that hosts without the CA's certificate are
// refused.)
func TestPeerAPIMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir)
	c := newTestCluster(t, 0, 2, 2)
	for _, name := range []string{"n1", "n2"} {
		cert, key := ca.Issue(t, dir, name)
		c.mutate = func(cfg *Config) { cfg.PeerCA, cfg.PeerCert, cfg.PeerCertKey = ca.File, cert, key }
		c.start(name)
	}
	c.mutate = nil
	c.waitRing()
	sent := deliverMany(t, c, 10)
	c.waitConverged(10 * time.Second)
	assertMailbox(t, c.nodes["n2"], sent)
	for name, nd := range c.nodes {
		streams, refused := nd.peer.StreamCounts()
		assert.Equal(t, 1, streams, "%s replicates over a stream inside TLS", name)
		assert.Zero(t, refused, "%s: no upgrade refused", name)
	}
}
