package sim

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deletionStallScenario: readers delete mail on every node while n2's
// disk stalls longer than the nodes' DeleteSyncTimeout (10 s). The
// tombstone pushes of several deletions wait on one stream to n2; the
// first one's deadline breaks it, failing the others at that instant, and
// their retries (pushEverywhere) all fall due at one later instant.
const deletionStallScenario = `
name: deletion-stall
seed: 1
duration: 3s
drain: 30s
mailboxes: 30
replicas: 2
write_quorum: 2
dns_strategy: roundrobin
dns_ttl: 1s
membership: {detect_min: 500ms, detect_max: 1s, rejoin_min: 1s, rejoin_max: 2s}
nodes:
  - {name: n1}
  - {name: n2}
  - {name: n3}
load:
  senders: 6
  arrival: poisson
  rate_per_sec: 60
  size: {dist: fixed, median_bytes: 2048}
  readers: 3
  read_interval: 1s
  read_max: 1
  smtp_timeout: 60s
faults:
  - {at: 1s, action: stall_disk, node: n2, for: 25s}
`

// TestDeletionRetriesReplay: deletions whose tombstone pushes failed
// together retry together, and must still write to the shared stream in
// the same order in every run (they settle first, each under its own
// key). Before, the coinciding retry timers woke them in varying order
// and two runs of one seed gave different network digests.
func TestDeletionRetriesReplay(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector randomizes scheduling (see TestScenarioDeterminism)")
	}
	sc, err := ParseScenario([]byte(deletionStallScenario))
	require.NoError(t, err)
	var digests []string
	for range 3 {
		rep, err := Run(t, sc, Options{DataDir: t.TempDir()})
		require.NoError(t, err)
		// The case happened: deletions were answered -ERR because n2
		// did not take their tombstones in time.
		require.Positive(t, rep.Readers.ErrorsBy["quit"], "no deletion waited on the stalled node")
		digests = append(digests, rep.NetDigest)
	}
	for i, d := range digests[1:] {
		assert.Equal(t, digests[0], d, "run %d: the same seed gives another network digest", i+1)
	}
}
