package sim

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// diskScenario is a small three-node array, R=2 W=2, for the disk faults'
// tests; each test appends its faults.
const diskScenario = `
name: disk
seed: 3
duration: 4s
drain: 8s
mailboxes: 40
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
  smtp_timeout: 30s
faults:
`

// runDisk runs diskScenario with faults, its files in the returned
// directory, and requires every fault to have applied cleanly.
func runDisk(t *testing.T, faults ...string) (*Report, string) {
	t.Helper()
	y := diskScenario
	for _, f := range faults {
		y += "  - " + f + "\n"
	}
	sc, err := ParseScenario([]byte(y))
	require.NoError(t, err)
	dir := t.TempDir()
	rep, err := Run(t, sc, Options{DataDir: dir})
	require.NoError(t, err)
	require.Len(t, rep.Faults, len(faults))
	for _, f := range rep.Faults {
		require.Empty(t, f.Error, "fault %s %s at %.3fs", f.Action, f.Node, f.AtS)
	}
	require.Positive(t, rep.Accepted)
	return rep, dir
}

// lives lists node's lives in the ledger.
func lives(rep *Report, node string) []CopyLife {
	var out []CopyLife
	for _, ls := range rep.Ledger {
		for _, l := range ls {
			if l.Node == node {
				out = append(out, l)
			}
		}
	}
	return out
}

// storeIDs lists the copies in a store file.
func storeIDs(t *testing.T, path string) map[string]bool {
	t.Helper()
	ids, err := fileCopyIDs(path)
	require.NoError(t, err)
	return ids
}

// TestLedgerAgreesWithAckedMessages: without faults, every 250 went out
// after W copies were durable, by the ledger, and its send time precedes
// its arrival.
func TestLedgerAgreesWithAckedMessages(t *testing.T) {
	rep, _ := runDisk(t)
	for _, rec := range rep.Records {
		if rec.Outcome != Accepted {
			continue
		}
		assert.LessOrEqual(t, rec.Acked, rec.Done, "message %d: 250 sent after it arrived", rec.Seq)
		assert.Greater(t, rec.Acked, rec.Start, "message %d: 250 sent before the transaction began", rec.Seq)
		durable := 0
		for _, l := range rep.Ledger[rec.CopyID()] {
			if l.DurableAt(rec.Acked) {
				durable++
			}
		}
		assert.GreaterOrEqual(t, durable, 2, "message %d (%s): durable copies at its 250", rec.Seq, rec.CopyID())
	}
}

// TestStallDisk: while n2's disk is stalled no copy becomes durable on it;
// before and after, copies do.
func TestStallDisk(t *testing.T) {
	const from, until = time.Second, 6 * time.Second
	rep, _ := runDisk(t, "{at: 1s, action: stall_disk, node: n2, for: 5s}")
	var before, during, after int
	for _, l := range lives(rep, "n2") {
		switch {
		case l.Durable <= from:
			before++
		case l.Durable < until:
			during++
		default:
			after++
		}
	}
	assert.Positive(t, before, "n2 synced nothing before the stall")
	assert.Zero(t, during, "n2's disk completed syncs during its stall")
	assert.Positive(t, after, "n2 synced nothing after the stall")
}

// TestPowerLoss: n2 loses power while its disk is stalled (so its writes
// are unsynced). Its file keeps exactly the synced copies: every copy in
// it is one the ledger saw durable, every copy the ledger saw durable is
// in it, and the writes in flight were dropped.
func TestPowerLoss(t *testing.T) {
	rep, dir := runDisk(t,
		"{at: 1s, action: stall_disk, node: n2, for: 20s}",
		"{at: 2s, action: power_loss, node: n2}")
	assert.Positive(t, rep.DroppedCopies["n2"], "no unsynced write was in flight at the power loss")
	held := map[string]bool{}
	for id, ls := range rep.Ledger {
		for _, l := range ls {
			if l.Node == "n2" {
				assert.LessOrEqual(t, l.Durable, time.Second, "%s durable on n2 during the stall", id)
				if !l.Gone {
					held[id] = true
				}
			}
		}
	}
	require.NotEmpty(t, held)
	assert.Equal(t, held, storeIDs(t, filepath.Join(dir, "n2", storeFile)), "n2's file is not exactly its synced state")
}

// TestRestartFromBackup: n2 restarts from a backup taken at 1s. The backup
// lacks the copies n2 synced after it, and the ledger ends them at the
// restart.
func TestRestartFromBackup(t *testing.T) {
	rep, dir := runDisk(t,
		"{at: 1s, action: backup, node: n2}",
		"{at: 3s, action: crash, node: n2}",
		"{at: 4s, action: restart, node: n2, disk: backup}")
	backup := storeIDs(t, filepath.Join(dir, ".backup", "n2", storeFile))
	require.NotEmpty(t, backup, "the backup holds the copies synced before it")
	restored := 0
	for _, l := range lives(rep, "n2") {
		if l.Cause == LostRestore {
			restored++
			assert.Equal(t, 4*time.Second, l.Lost.Round(time.Millisecond), "lost at the restart")
			assert.Greater(t, l.Durable, time.Second, "a copy synced before the backup was lost by the restore")
		}
	}
	assert.Positive(t, restored, "the restore lost nothing")
	for id, ls := range rep.Ledger {
		for _, l := range ls {
			if l.Node == "n2" && l.Durable > time.Second && l.Durable < 3*time.Second {
				assert.False(t, backup[id], "%s synced after the backup is in it", id)
			}
		}
	}
}

// TestRestartWithEmptyDisk: every copy n2 held is lost at the restart.
func TestRestartWithEmptyDisk(t *testing.T) {
	rep, _ := runDisk(t,
		"{at: 2s, action: crash, node: n2}",
		"{at: 3s, action: restart, node: n2, disk: empty}")
	emptied := 0
	for _, l := range lives(rep, "n2") {
		if l.Durable < 2*time.Second && (!l.Gone || l.Lost >= 3*time.Second) { // held at the restart
			require.True(t, l.Gone, "a copy of n2's first disk survived the new disk")
			assert.Equal(t, LostEmpty, l.Cause)
			emptied++
		}
	}
	assert.Positive(t, emptied)
}

// TestDiskFaultsValidate: the disk faults' keys are checked.
func TestDiskFaultsValidate(t *testing.T) {
	for _, tc := range []struct{ fault, want string }{
		{"{at: 1s, action: stall_disk, node: n2}", "faults[0].for"},
		{"{at: 1s, action: stall_disk, node: n2, for: 2h}", "faults[0].for"},
		{"{at: 1s, action: crash, node: n2, for: 2s}", "faults[0].for"},
		{"{at: 1s, action: crash, node: n2, disk: empty}", "faults[0].disk"},
		{"{at: 1s, action: restart, node: n2, disk: old}", "faults[0].disk"},
		{"{at: 1s, action: restart, node: n2, disk: backup}", "no earlier backup"},
		{"{at: 1s, action: power_loss, node: n9}", "faults[0].node"},
		{"{at: 1s, action: backup}", "faults[0].node"},
	} {
		_, err := ParseScenario([]byte(diskScenario + "  - " + tc.fault + "\n"))
		if assert.Error(t, err, tc.fault) {
			assert.Contains(t, err.Error(), tc.want, tc.fault)
		}
	}
	_, err := ParseScenario([]byte(diskScenario + "  - {at: 1s, action: backup, node: n2}\n  - {at: 2s, action: restart, node: n2, disk: backup}\n"))
	assert.NoError(t, err)
}

// TestDiskFaultsReplay: every disk fault kind, each schedule run twice:
// the same network digest, report and ledger. The stall runs beside a
// crash: the crashed node's push and commit loops, a wake pending when
// its context ended, once chose at random between the two (replicate.go
// commitLoop), and a run replayed only one time in two.
func TestDiskFaultsReplay(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector randomizes scheduling (see TestScenarioDeterminism)")
	}
	for _, faults := range [][]string{
		{
			"{at: 500ms, action: backup, node: n1}",
			"{at: 1500ms, action: power_loss, node: n3}",
			"{at: 2s, action: crash, node: n1}",
			"{at: 2500ms, action: restart, node: n1, disk: backup}",
			"{at: 3s, action: restart, node: n3, disk: empty}",
		},
		{"{at: 1s, action: stall_disk, node: n2, for: 3s}", "{at: 1500ms, action: crash, node: n3}", "{at: 3s, action: restart, node: n3}"},
	} {
		a, _ := runDisk(t, faults...)
		b, _ := runDisk(t, faults...)
		assert.Equal(t, a.NetDigest, b.NetDigest, "network digest of %v", faults)
		assert.Equal(t, a.Ledger, b.Ledger, "ledger")
		assert.Equal(t, a.DroppedCopies, b.DroppedCopies)
		a.Wall, b.Wall = WallReport{}, WallReport{}
		ja, err := a.JSON()
		require.NoError(t, err)
		jb, err := b.JSON()
		require.NoError(t, err)
		assert.True(t, string(ja) == string(jb), "reports differ: %v", faults)
	}
}
