package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
)

// A listener restarted from an older copy of its disk (a backup restore)
// has lost the copy it counted towards W before its 250, and its commit
// never left it. Its "no copy" must not make the holder of the other copy
// drop the entry as never acknowledged (results/soak-real.md, seeds 20,
// 26, 38, 98): the surviving copy is committed. The old rules still hold
// for entries without a listener, and a tombstone the listener wrote
// still wins.
func TestRestartedListenersMissingCopyIsNoAnswer(t *testing.T) {
	c := newFaultCluster(t, 3, 2, 2, nil, func(cfg *Config) {
		cfg.Tuning.PendingTimeout = 200 * time.Millisecond
		cfg.Tuning.MaintainEvery = 50 * time.Millisecond
	})
	n1, n2 := c.nodes["n1"], c.nodes["n2"]
	tests := []struct {
		name   string
		origin string
		boot   uint64
		setup  func(e catalog.Entry) // on the listener n1
		want   catalog.State
		reason string
	}{
		{"restored listener", "n1", n1.boot + 1, nil, catalog.Committed,
			"n1 runs another boot than the entry's and lacks its copy: its disk may be older than the entry"},
		{"restored listener holds the entry", "n1", n1.boot + 1, func(e catalog.Entry) {
			// Back in its catalog (anti-entropy), not in its store: n1
			// resolves it too, as its own previous life's.
			_, err := n1.Catalog().Apply(e)
			require.NoError(t, err)
		}, catalog.Committed, "neither resolver takes the restarted listener's missing copy for an answer"},
		{"no listener recorded", "", 0, nil, catalog.Deleted,
			"every placed node answered, one copy: never acknowledged"},
		{"listener's tombstone", "n1", n1.boot + 1, func(e catalog.Entry) {
			e.State, e.Version, e.Origin, e.Boot = catalog.Deleted, n1.Catalog().Now(), "", 0
			_, err := n1.Catalog().Apply(e)
			require.NoError(t, err)
		}, catalog.Deleted, "a final state anywhere wins: the refused transaction stays invisible"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(fmt.Sprintf("acknowledged, then its listener was restored %d", i))
			e := catalog.Entry{ID: fmt.Sprintf("restored-%d.0", i), Mailbox: "alice@example.com", Size: int64(len(data)),
				Sum: storeChecksum(data), Locations: []string{"n1", "n2"}, State: catalog.Pending,
				Version: n2.Catalog().Now(), Origin: tt.origin, Boot: tt.boot}
			require.NoError(t, peerHandler{n2}.StoreCopy(e, data), "the peer's copy is durable")
			if tt.setup != nil {
				tt.setup(e)
			}
			require.False(t, n1.Store().Has(e.ID))
			require.Eventually(t, func() bool {
				got, ok := n2.Catalog().Get(e.ID)
				return ok && got.State != catalog.Pending
			}, time.Minute, 10*time.Millisecond, "n2 resolves the pending entry")
			got, _ := n2.Catalog().Get(e.ID)
			require.Equal(t, tt.want, got.State, tt.reason)
			if tt.want == catalog.Committed {
				// Where the copy is (rebuild may already have added a
				// second holder, which has its copy too).
				assert.Contains(t, got.Locations, "n2", "committed where the copy is")
				assert.NotContains(t, got.Locations, "n1", "not on the restarted listener, which lacks it")
				assert.True(t, n2.Store().Has(e.ID))
			}
		})
	}
}
