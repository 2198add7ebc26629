package sim

import (
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/store"
)

// returnScenario: n2 crashes, rebuild re-homes its copies on n1 and n3,
// n2 restarts with its disk; membership then stays still, so after
// rebalance_after_return the array moves copies back by itself, and the
// drain outlasts the orphan grace (1 minute) so the copies left behind
// are trimmed.
const returnScenario = `
name: return
seed: 3
duration: 4s
drain: 80s
mailboxes: 50
replicas: 2
membership: {detect_min: 500ms, detect_max: 1s}
rebalance_after_return: 3s
nodes:
  - {name: n1}
  - {name: n2}
  - {name: n3}
load:
  senders: 8
  arrival: poisson
  rate_per_sec: 150
  size: {dist: fixed, median_bytes: 2048}
faults:
  - {at: 1s, action: crash, node: n2}
  - {at: 2500ms, action: restart, node: n2}
`

// TestRebalanceAfterReturn: after a crash and a restart the run ends with
// every committed message on exactly R nodes, the ones its entry lists, no
// extra copy anywhere, and the copies spread evenly again.
func TestRebalanceAfterReturn(t *testing.T) {
	sc, err := ParseScenario([]byte(returnScenario))
	require.NoError(t, err)
	dir := t.TempDir()
	rep, err := Run(t, sc, Options{DataDir: dir})
	require.NoError(t, err)
	require.Zero(t, rep.Lost, "lost: %v", rep.LostIDs)
	require.Positive(t, rep.Rebuild.Copies, "the crash was rebuilt")

	held := map[string][]string{} // id -> nodes whose store holds it
	var entries map[string]catalog.Entry
	auto := int64(0)
	for _, nr := range rep.Nodes {
		require.Equal(t, "alive", nr.State, nr.Name)
		auto += nr.AutoRebalances
		st, err := store.Open(store.Options{Path: filepath.Join(dir, nr.Name, "node.db"), OpenTimeout: 5e9})
		require.NoError(t, err)
		if entries == nil {
			cat, err := catalog.Open(st, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			entries = map[string]catalog.Entry{}
			cat.ForEach(func(e *catalog.Entry) bool { entries[e.ID] = *e; return true })
		}
		st.CopyIDs(func(id string) bool { held[id] = append(held[id], nr.Name); return true })
		require.NoError(t, st.Close())
	}
	assert.EqualValues(t, 1, auto, "one node drove one rebalance")
	committed := 0
	for id, e := range entries {
		if e.State != catalog.Committed {
			assert.Empty(t, held[id], "%s (%s) holds no copy", id, e.State)
			continue
		}
		committed++
		listed := slices.Clone(e.Locations)
		sort.Strings(listed)
		sort.Strings(held[id])
		assert.Equal(t, listed, held[id], "%s: exactly its listed holders hold it", id)
		assert.Len(t, listed, 2, "%s: R copies", id)
	}
	for id := range held {
		_, ok := entries[id]
		assert.True(t, ok, "copy %s has an entry", id)
	}
	require.Positive(t, committed)
	t.Logf("%d committed, imbalance %.3f, copies %v", committed, rep.Imbalance.CopiesMaxOverMean,
		[]int{rep.Nodes[0].Copies, rep.Nodes[1].Copies, rep.Nodes[2].Copies})
	assert.Less(t, rep.Imbalance.CopiesMaxOverMean, 1.1, "the spread is even again")
}
