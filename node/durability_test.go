package node

import (
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/fault"
)

// errRefused is the fault refuseCopies injects.
var errRefused = errors.New("test: this node refuses copies")

// refuseCopies is a fault hook that, while on, fails every local copy
// write (fault.StoreWrite: writeLocal, which a peer's copy PUT reaches), so
// the node answers a copy PUT with an error as a full or failing disk
// would.
type refuseCopies struct{ on atomic.Bool }

func (f *refuseCopies) Fault(point fault.Point) error {
	if point == fault.StoreWrite && f.on.Load() {
		return errRefused
	}
	return nil
}

// newFaultyCluster is newTestCluster with a fault hook per node (nil: no
// faults). testCluster.start builds the Env itself; the hook must be in
// it from the start, as Env.Fault is read without a lock.
func newFaultyCluster(t *testing.T, n, r, w int, hooks map[string]env.FaultHook) *testCluster {
	return newFaultyClusterWith(t, n, r, w, func(name string, e *Env) { e.Fault = hooks[name] })
}

// newFaultyClusterWith is newTestCluster with each node's Env edited by
// edit before the node is built (fault hooks, cost models): pending_test.go's
// newFaultCluster with the default configuration.
func newFaultyClusterWith(t *testing.T, n, r, w int, edit func(name string, e *Env)) *testCluster {
	return newFaultCluster(t, n, r, w, edit, nil)
}

// queuedID is the transaction id of a 250 reply's text ("Ok: queued as X").
func queuedID(t *testing.T, reply string) string {
	t.Helper()
	i := strings.LastIndex(reply, "queued as ")
	require.GreaterOrEqual(t, i, 0, "250 reply names its queue id: %q", reply)
	return strings.TrimSpace(reply[i+len("queued as "):])
}

// TestQuorumAckMeansWDurableCopies: on a three-node array with R=2 W=2,
// the 250 goes out only when W holders' stores already hold the copy
// durably. The stores are read right after the 250, before anything
// asynchronous (commit push, anti-entropy, rebuild) could add a copy. A
// node that refuses copies (its disk fails) is replaced by a fallback
// node; when every other node refuses, only one copy can exist and the
// client must get 451, never 250 (make mutants: quorum-of-one).
func TestQuorumAckMeansWDurableCopies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refuse  []string // nodes whose disks refuse copies
		want451 bool
	}{
		{name: "all-healthy"},
		{name: "n2-refuses", refuse: []string{"n2"}},
		{name: "n2-n3-refuse", refuse: []string{"n2", "n3"}, want451: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hooks := map[string]env.FaultHook{}
			faults := map[string]*refuseCopies{}
			for _, name := range []string{"n1", "n2", "n3"} {
				faults[name] = &refuseCopies{}
				hooks[name] = faults[name]
			}
			c := newFaultyCluster(t, 3, 2, 2, hooks)
			for _, name := range tc.refuse {
				faults[name].on.Store(true)
			}
			reply, err := send(t, c.nodes["n1"].Addr("smtp"), []string{"alice@example.com"}, testMessage("quorum "+tc.name, 900))
			if tc.want451 {
				require.Error(t, err, "one durable copy of W=2: the client must not get 250 (reply %q)", reply)
				assert.Equal(t, 451, smtpCode(err), "got %v", err)
				// The listener's decision is applied asynchronously: once it
				// is (no commit queued, nothing pending), the refused
				// transaction must have left no visible message.
				n1 := c.nodes["n1"]
				require.Eventually(t, func() bool {
					return n1.repl.CommitsIdle() && n1.Catalog().Counts()[catalog.Pending] == 0
				}, 10*time.Second, 5*time.Millisecond, "the listener settles the refused transaction")
				assert.Empty(t, n1.Catalog().List("alice@example.com"), "a refused transaction leaves no visible message")
				return
			}
			require.NoError(t, err)
			id := copyID(queuedID(t, reply), 0)
			// Right after the 250: which stores hold the copy durably.
			var holders []string
			for _, name := range []string{"n1", "n2", "n3"} {
				if c.nodes[name].Store().Has(id) {
					holders = append(holders, name)
				}
			}
			assert.GreaterOrEqual(t, len(holders), 2, "W=2 copies durable at the 250, got holders %v", holders)
			for _, name := range tc.refuse {
				assert.NotContains(t, holders, name, "a node that refused the copy does not hold it")
			}
		})
	}
}

// TestProductionNodeSyncs: a node built from the production config (the
// defaults `mailarray serve` starts from) opens its store with fsync on,
// and the config file cannot turn it off (make mutants: fsync-off).
func TestProductionNodeSyncs(t *testing.T) {
	assert.False(t, DefaultConfig().NoSync, "the default config syncs")
	c := &testCluster{t: t, dirs: map[string]string{}, r: 1, w: 1, users: testUsers}
	cfg := c.config("n1")
	cfg.Replicas, cfg.WriteQuorum = DefaultConfig().Replicas, DefaultConfig().WriteQuorum
	nd, err := New(cfg, &Env{Net: &env.RealNet{}, Rand: env.NewRand(1), Membership: staticSelf("n1"), DataDir: cfg.DataDir, Log: testLogger(t)})
	require.NoError(t, err)
	defer nd.Close()
	assert.True(t, nd.Store().Syncing(), "a real node's store fsyncs every commit")
	f, ok := reflect.TypeOf(Config{}).FieldByName("NoSync")
	require.True(t, ok)
	assert.Equal(t, "-", f.Tag.Get("yaml"), "NoSync is not a config file key")
}
