package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"mailarray/node/env"
	"mailarray/node/member"
	"mailarray/node/pop3"
	"mailarray/node/smtp/smtptest"
	"mailarray/node/store"
)

// testCluster runs nodes in-process over real loopback sockets, sharing a
// member.Group so failures are seen at once.
type testCluster struct {
	t      testing.TB
	group  *member.Group
	nodes  map[string]*Node
	dirs   map[string]string
	r, w   int
	users  []string
	mutate func(*Config) // applied to each node's config by start
	// env, if set, adjusts each node's Env before start (fault hooks, a
	// network a test can cut).
	env func(name string, e *Env)
}

var testUsers = []string{
	"alice@example.com:{PLAIN}secret",
	"bob@example.com:{PLAIN}hunter2",
	"carol@example.org:{PLAIN}pw",
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("NODE_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newTestCluster(t testing.TB, n, r, w int) *testCluster {
	c := &testCluster{t: t, group: member.NewGroup(), nodes: map[string]*Node{}, dirs: map[string]string{}, r: r, w: w, users: testUsers}
	for i := 1; i <= n; i++ {
		c.start(fmt.Sprintf("n%d", i))
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.Close()
		}
	})
	c.waitRing()
	return c
}

// waitRing waits until every node's mirroring table has every node in its
// ring: membership reaches each node as an event, so a write right after
// start could otherwise find too few nodes for its quorum. When the nodes
// can reach a write quorum it also waits until every node is ready and
// every node sees the others' readiness, as DNS answers do (ready.go).
func (c *testCluster) waitRing() {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		for _, nd := range c.nodes {
			if len(nd.members.Table().Ring) != len(c.nodes) {
				return false
			}
			if len(c.nodes) < c.w {
				continue
			}
			if !nd.ready.State().Ready {
				return false
			}
			for _, m := range nd.members.Members() {
				if m.Status == env.StatusAlive && m.Tags[env.TagReady] == "0" {
					return false
				}
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "every node sees the whole ring (and, given a quorum, every node ready)")
}

func (c *testCluster) config(name string) Config {
	cfg := DefaultConfig()
	cfg.Name = name
	if c.dirs[name] == "" {
		c.dirs[name] = c.t.TempDir()
	}
	cfg.DataDir = c.dirs[name]
	cfg.Domains = []string{"example.com", "example.org"}
	cfg.Mailboxes = c.users
	cfg.SMTPAddr, cfg.POP3Addr, cfg.DNSAddr, cfg.PeerAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Replicas, cfg.WriteQuorum = c.r, c.w
	cfg.MaxMessageBytes = 64 << 10
	cfg.SMTPMaxSessionsPerIP = 1000 // every test client is 127.0.0.1
	cfg.POP3MaxSessionsPerIP, cfg.IMAPMaxSessionsPerIP = 1000, 1000
	cfg.Tuning.AntiEntropyEvery = 200 * time.Millisecond
	cfg.Tuning.MaintainEvery = 200 * time.Millisecond
	if _, ok := c.t.(*testing.B); ok {
		cfg.Tuning = DefaultTuning()
	}
	cfg.Tuning.OrphanGrace = 100 * time.Millisecond
	return cfg
}

// start (re)starts node name with its data dir.
func (c *testCluster) start(name string) *Node {
	c.t.Helper()
	cfg := c.config(name)
	if c.mutate != nil {
		c.mutate(&cfg)
	}
	view := c.group.View(env.Member{Name: name, Addr: net.IPv4(127, 0, 0, 1)})
	e := &Env{Net: &env.RealNet{}, Rand: env.NewRand(uint64(len(c.nodes)) + 7), Membership: view, DataDir: cfg.DataDir, Log: testLogger(c.t)}
	if c.env != nil {
		c.env(name, e)
	}
	nd, err := New(cfg, e)
	require.NoError(c.t, err)
	require.NoError(c.t, nd.Start())
	c.nodes[name] = nd
	return nd
}

// kill stops a node abruptly and tells the others it failed.
func (c *testCluster) kill(name string) {
	c.nodes[name].Close()
	delete(c.nodes, name)
	c.group.Fail(name)
}

func testMessage(subject string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: sender@remote.test\r\nTo: alice@example.com\r\nSubject: %s\r\nMessage-ID: <%s@remote.test>\r\n\r\n", subject, strings.ReplaceAll(subject, " ", "."))
	line := "The quick brown fox jumps over the lazy dog 0123456789.\r\n"
	b.WriteString(".a line that needs dot-stuffing\r\n")
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	return b.Bytes()
}

// send delivers one message through node's SMTP listener and returns the
// 250 reply's text (with the queue id).
func send(t testing.TB, addr string, rcpts []string, msg []byte) (string, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	return smtptest.Send(conn, rcpts, msg)
}

func popLogin(t testing.TB, addr, user, pass string) (*pop3.Client, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	cl, err := pop3.NewClient(conn)
	require.NoError(t, err)
	if err := cl.Login(user, pass); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// readAll RETRs every message of a mailbox through node, keyed by UIDL.
func readAll(t testing.TB, addr, user, pass string) map[string][]byte {
	t.Helper()
	cl, err := popLogin(t, addr, user, pass)
	require.NoError(t, err)
	defer cl.Quit()
	uids, err := cl.Uidl()
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, u := range uids {
		b, err := cl.Retr(u.Num)
		require.NoError(t, err, "RETR %d (%s)", u.Num, u.ID)
		out[u.ID] = b
	}
	return out
}

// body strips our Received header (the first header, 3 lines) to compare
// with what was sent.
func body(t testing.TB, got []byte) []byte {
	t.Helper()
	require.True(t, bytes.HasPrefix(got, []byte("Received: from ")), "message starts with our Received header")
	i := bytes.Index(got, []byte("\r\nFrom: "))
	require.Positive(t, i)
	return got[i+2:]
}

func (c *testCluster) any() *Node {
	for _, n := range c.nodes {
		return n
	}
	return nil
}

// waitConverged waits until every live node has the same catalog digest
// and nothing is under-replicated.
func (c *testCluster) waitConverged(timeout time.Duration) {
	c.t.Helper()
	require.Eventually(c.t, c.converged, timeout, 50*time.Millisecond, "catalogs converge and every message has R copies")
}

var _ = io.EOF
var _ = filepath.Join
var _ = context.Background

func catalogSum(b []byte) [32]byte { return storeChecksum(b) }

var storeChecksum = store.Checksum

func staticSelf(name string) env.Membership {
	return member.NewStatic(env.Member{Name: name, Addr: net.IPv4(127, 0, 0, 1)})
}

// startNode starts a lone node n1 (its own static membership, R=W=1)
// with the test config changed by mutate, and closes it when the test
// ends: for what one node does by itself.
func startNode(t *testing.T, mutate func(*Config)) *Node {
	t.Helper()
	c := &testCluster{t: t, nodes: map[string]*Node{}, dirs: map[string]string{}, r: 1, w: 1, users: testUsers}
	cfg := c.config("n1")
	mutate(&cfg)
	e := &Env{Net: &env.RealNet{}, Rand: env.NewRand(3), Membership: staticSelf("n1"), DataDir: cfg.DataDir, Log: testLogger(t)}
	n, err := New(cfg, e)
	require.NoError(t, err)
	require.NoError(t, n.Start())
	t.Cleanup(func() { n.Close() })
	return n
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
