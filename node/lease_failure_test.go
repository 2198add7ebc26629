package node

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"mailarray/node/env"
	"mailarray/node/pop3"
)

// cutNet is a node's network that the test can cut as a kill would: every
// connection the node has is closed and it can dial nothing more, so the
// node cannot release anything on its way down.
type cutNet struct {
	env.Net
	mu  sync.Mutex
	cut bool
	// dialed and accepted connections: Cut closes the dialed ones first,
	// so that a session ended by the close of its client's connection
	// finds no peer connection left to release its lease over.
	dialed, accepted []net.Conn
}

var errCut = errors.New("test: network cut")

func (n *cutNet) track(list *[]net.Conn, c net.Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut {
		return false
	}
	*list = append(*list, c)
	return true
}

func (n *cutNet) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := n.Net.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if !n.track(&n.dialed, c) {
		c.Close()
		return nil, errCut
	}
	return c, nil
}

func (n *cutNet) Listen(network, address string) (net.Listener, error) {
	l, err := n.Net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &cutListener{Listener: l, n: n}, nil
}

func (n *cutNet) Cut() {
	n.mu.Lock()
	n.cut = true
	conns := append(n.dialed, n.accepted...)
	n.dialed, n.accepted = nil, nil
	n.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type cutListener struct {
	net.Listener
	n *cutNet
}

func (l *cutListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.n.track(&l.n.accepted, c) {
			return c, nil
		}
		c.Close()
	}
}

// TestLeaseOfFailedNodeReleasedAtOnce: the node serving a POP3 session is
// killed without releasing its lease; as soon as membership declares it
// failed a session on another node gets the mailbox (issue 16, bug 6: it
// got -ERR [IN-USE] until the lease's TTL, a minute). Both cases: the
// dead node was one of the mailbox's lock managers (the next manager must
// not wait either), and it was not.
func TestLeaseOfFailedNodeReleasedAtOnce(t *testing.T) {
	const mailbox = "alice@example.com"
	for _, tc := range []struct {
		name      string
		asManager bool
	}{
		{"session node is a lock manager", true},
		{"session node is not a lock manager", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nets := map[string]*cutNet{}
			c := newTestCluster(t, 0, 2, 2)
			c.env = func(name string, e *Env) {
				nets[name] = &cutNet{Net: e.Net}
				e.Net = nets[name]
			}
			for _, name := range []string{"n1", "n2", "n3"} {
				c.start(name)
			}
			c.waitRing()
			mgrs := c.nodes["n1"].lockManagersFor(mailbox)
			require.Len(t, mgrs, lockManagers)
			var victim, other string
			for _, name := range []string{"n1", "n2", "n3"} {
				isMgr := name == mgrs[0] || name == mgrs[1]
				switch {
				case victim == "" && isMgr == tc.asManager:
					victim = name
				case other == "":
					other = name
				}
			}
			require.NotEmpty(t, victim)
			t.Logf("managers %v, session on %s, second login on %s", mgrs, victim, other)

			cl, err := popLogin(t, c.nodes[victim].Addr("pop3"), mailbox, "secret")
			require.NoError(t, err)
			defer cl.Close()
			_, err = popLogin(t, c.nodes[other].Addr("pop3"), mailbox, "secret")
			require.Equal(t, "IN-USE", pop3.ErrorCode(err), "the session on %s holds the mailbox: %v", victim, err)

			nets[victim].Cut() // killed: nothing it does from here reaches anyone
			c.kill(victim)
			require.Eventually(t, func() bool {
				for _, n := range c.nodes {
					if !n.members.Gone(victim) {
						return false
					}
				}
				return true
			}, 10*time.Second, 5*time.Millisecond, "every survivor sees %s failed", victim)

			require.Eventually(t, func() bool {
				for _, n := range c.nodes {
					if n.locks.holdsFor(victim) {
						return false
					}
				}
				return true
			}, 10*time.Second, 5*time.Millisecond, "the managers drop every lease of %s on its failure", victim)

			// Membership says failed: the mailbox is free now, not after the
			// lease's TTL. Retried while a manager's event may still be
			// handled, for as long as a loaded machine might take, but far
			// short of lockTTL, so a lease freed only by its TTL still
			// fails this. Polled here rather than in require.Eventually,
			// whose condition runs on another goroutine, where popLogin's
			// require cannot stop the test.
			for deadline := time.Now().Add(lockTTL / 4); ; {
				cl2, err := popLogin(t, c.nodes[other].Addr("pop3"), mailbox, "secret")
				if err == nil {
					require.NoError(t, cl2.Quit())
					break
				}
				require.True(t, time.Now().Before(deadline), "login on %s after %s was declared failed: %v", other, victim, err)
				time.Sleep(50 * time.Millisecond) // retry pace, not an assertion bound
			}
		})
	}
}

// holdsFor reports whether the table holds a lease owned on node.
func (t *lockTable) holdsFor(node string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.locks {
		if strings.HasPrefix(l.owner, node+"/") {
			return true
		}
	}
	return false
}
