package node

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

// startOrderNet is the real network, noting whether the node's peer client
// existed when each listener opened.
type startOrderNet struct {
	env.RealNet
	nd        **Node
	smtpAddr  string
	peerReady bool // at the SMTP listen
	listened  bool
}

func (s *startOrderNet) Listen(network, address string) (net.Listener, error) {
	l, err := s.RealNet.Listen(network, address)
	if err == nil && address == s.smtpAddr && !s.listened {
		s.listened = true
		s.peerReady = (*s.nd).peer != nil
	}
	return l, err
}

// The SMTP listener opens only once the peer client exists: a session
// accepted at once (a node restarted under load) stores copies on peers.
// A node started the other way round died on a nil client (make
// soak-real, seed 71: n3 exited at start).
func TestPeerClientBeforeSMTPListener(t *testing.T) {
	c := &testCluster{t: t, nodes: map[string]*Node{}, dirs: map[string]string{}, r: 1, w: 1, users: testUsers}
	cfg := c.config("n1")
	cfg.SMTPAddr = "127.0.0.1:0"
	var nd *Node
	sn := &startOrderNet{nd: &nd, smtpAddr: cfg.SMTPAddr}
	e := &Env{Net: sn, Rand: env.NewRand(1), Membership: staticSelf("n1"), DataDir: cfg.DataDir, Log: testLogger(t)}
	nd, err := New(cfg, e)
	require.NoError(t, err)
	require.NoError(t, nd.Start())
	t.Cleanup(func() { nd.Close() })
	require.True(t, sn.listened, "the SMTP listener opened through Env.Net")
	assert.True(t, sn.peerReady, "the peer client existed when SMTP began to accept")
}
