package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A node that restarts faster than failure detection is never declared
// failed, so its previous life's leases must go when its new boot id
// shows in membership: the sessions that held them died with that life.
// (Found by the disk/restore-listener chaos cell: a lease honoured for
// 42 s after its node restarted within 50 ms.)
func TestLeaseOfRestartedNodeReleased(t *testing.T) {
	const bootA, bootB = "00000000000000aa", "00000000000000bb"
	current := map[string]string{"n2": bootA}
	gone := func(node, boot string) bool {
		cur := current[node]
		return boot != "" && cur != "" && cur != boot
	}
	tab := newLockTable(gone)
	owner := "n2/" + bootA + "/session1"
	assert.Equal(t, bootA, ownerBoot(owner))
	assert.True(t, tab.acquire("alice@example.com", owner, time.Minute))
	assert.False(t, tab.acquire("alice@example.com", "n3/"+bootA+"/s", time.Minute), "held while n2 runs the same life")

	current["n2"] = bootB // n2 restarted; membership shows its new boot
	assert.Equal(t, 1, tab.dropGone(), "the previous life's lease is dropped")
	assert.True(t, tab.acquire("alice@example.com", "n3/"+bootA+"/s", time.Minute), "another node's session gets in at once")

	// Owners of another form (an older version) count only by Gone.
	assert.Equal(t, "", ownerBoot("n2/abc"))
	assert.Equal(t, "", ownerBoot("n2/imap/xyz"))
}
