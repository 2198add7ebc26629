package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The replication of a cluster goes over one stream per peer: every copy
// and push of many concurrent deliveries shares it. (The stream itself is
// tested in node/peer.)
func TestPeerStreamCarriesReplication(t *testing.T) {
	c := newTestCluster(t, 2, 2, 2)
	sent := deliverMany(t, c, 40)
	c.waitConverged(10 * time.Second)
	assertMailbox(t, c.nodes["n2"], sent)
	assertMailbox(t, c.nodes["n1"], sent)
	for name, nd := range c.nodes {
		out, in, http := nd.streamCounts()
		assert.Equal(t, 1, out, "%s replicates over one stream to its one peer", name)
		assert.Equal(t, 1, in, "%s serves one stream, its peer's", name)
		assert.Zero(t, http, "%s speaks HTTP to no peer", name)
	}
}
