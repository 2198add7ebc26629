package sim

import (
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/store"
)

// A paused node's membership: the others declare it failed after their
// detection delay and alive again after it resumes; a pause shorter than
// detection goes unnoticed.
func TestMembershipPause(t *testing.T) {
	cfg := DefaultMembershipConfig()
	names := []string{"n1", "n2", "n3"}
	synctest.Test(t, func(t *testing.T) {
		n := testNet(1, nil)
		stop := n.Start()
		defer stop()
		c := NewCluster(n, cfg, testMembers(3)...)
		r := record(c, names)
		time.Sleep(time.Second)
		c.Pause("n2")
		time.Sleep(cfg.DetectMin / 2)
		c.Resume("n2")
		time.Sleep(cfg.DetectMax + time.Second)
		for _, obs := range names {
			for _, ev := range r.take()[obs] {
				assert.NotEqual(t, env.EventFail, ev.kind, "observer %s saw %v of %s after a short pause", obs, ev.kind, ev.name)
			}
		}

		pauseAt := time.Since(r.t0)
		c.Pause("n2")
		time.Sleep(cfg.DetectMax + time.Second)
		got := r.take()
		for _, obs := range []string{"n1", "n3"} {
			require.Len(t, got[obs], 1, "observer %s", obs)
			assert.Equal(t, env.EventFail, got[obs][0].kind)
			assert.Equal(t, "n2", got[obs][0].name)
			assert.GreaterOrEqual(t, got[obs][0].at-pauseAt, cfg.DetectMin)
			assert.LessOrEqual(t, got[obs][0].at-pauseAt, cfg.DetectMax)
		}
		assert.Empty(t, got["n2"], "a paused node's view learns nothing")
		c.Resume("n2")
		time.Sleep(cfg.GossipMax + time.Second)
		got = r.take()
		for _, obs := range []string{"n1", "n3"} {
			require.Len(t, got[obs], 1, "observer %s", obs)
			assert.Equal(t, env.EventJoin, got[obs][0].kind, "the resumed node refutes its failure")
		}
		r.close()
	})
}

// timeFaultScenario runs every time fault under load. n4's clock runs 30 s
// behind from the start; n3's is stepped 30 s ahead mid-load.
const timeFaultScenario = `
name: time-faults
seed: 3
duration: 6s
drain: 10s
mailboxes: 40
dns_ttl: 1s
membership: {detect_min: 500ms, detect_max: 1s, rejoin_min: 1s, rejoin_max: 2s}
nodes:
  - {name: n1}
  - {name: n2}
  - {name: n3}
  - {name: n4, clock_offset: -30s, clock_drift_ppm: -200}
load:
  senders: 8
  rate_per_sec: 100
  size: {dist: fixed, median_bytes: 2048}
  readers: 2
  read_interval: 1s
faults:
  - {at: 500ms, action: skew_clock, node: n3, offset: 30s, drift_ppm: 500}
  - {at: 1s, action: pause, node: n2, for: 3s}
  - {at: 1s, action: slow_link, nodes: [n1, n3], latency: 50ms, for: 2s}
  - {at: 2s, action: stall_link, nodes: [n1], oneway: true}
  - {at: 3500ms, action: restore_link, nodes: [n1], oneway: true}
`

func TestTimeFaults(t *testing.T) {
	sc, err := ParseScenario([]byte(timeFaultScenario))
	require.NoError(t, err)
	dir := t.TempDir()
	rep, err := Run(t, sc, Options{DataDir: dir})
	require.NoError(t, err)
	t.Logf("%d accepted, %d rejected %v, %d failed %v, %d lost; faults %+v", rep.Accepted, rep.Rejected, rep.RejectedByCode,
		rep.Failed, rep.FailedByReason, rep.Lost, rep.Faults)
	var actions []string
	for _, f := range rep.Faults {
		actions = append(actions, f.Action)
		assert.Empty(t, f.Error, "fault %s %s at %.1fs", f.Action, f.Node, f.AtS)
		switch f.Action {
		case FaultResume:
			assert.Zero(t, f.Evidence["sent"], "the paused node sent nothing: %v", f.Evidence)
			assert.Zero(t, f.Evidence["received"], "the paused node received nothing: %v", f.Evidence)
			assert.Positive(t, f.Evidence["held_packets"]+f.Evidence["parked"], "the pause held something: %v", f.Evidence)
			assert.InDelta(t, 3000, f.Evidence["paused_ms"], 1)
		case FaultRestoreLink:
			if f.Nodes == "n1,n3" {
				assert.GreaterOrEqual(t, f.Evidence["max_delay_ms"], int64(50), "the slow link was slow: %v", f.Evidence)
			} else {
				assert.Positive(t, f.Evidence["held_packets"], "the stalled link held packets: %v", f.Evidence)
			}
		case FaultSkewClock:
			assert.Equal(t, int64(30000), f.Evidence["wall_offset_ms"])
		}
	}
	assert.Equal(t, []string{FaultSkewClock, FaultPause, FaultSlowLink, FaultStallLink, FaultRestoreLink, FaultRestoreLink, FaultResume}, actions,
		"every fault applied, and the pause and the slow link undone after their `for`")
	assert.Zero(t, rep.Lost, "lost: %v", rep.LostIDs)

	// The skewed listeners stamped their clocks: the Received time of what
	// n3 accepted after its skew runs 30 s ahead of n1's, n4's 30 s behind.
	recv := map[string]int64{}
	for _, name := range []string{"n1", "n3"} {
		st, err := store.Open(store.Options{Path: filepath.Join(dir, name, "node.db"), OpenTimeout: time.Second})
		require.NoError(t, err)
		cat, err := catalog.Open(st, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		cat.ForEach(func(e *catalog.Entry) bool {
			recv[e.ID] = e.Received
			return true
		})
		st.Close()
	}
	offsets := map[string][]time.Duration{} // listener -> Received - virtual time of the 250
	for _, rec := range rep.Records {
		if rec.Outcome != Accepted || rec.Done < time.Second {
			continue
		}
		if r, ok := recv[rec.CopyID()]; ok {
			offsets[rec.Node] = append(offsets[rec.Node], time.Duration(r)-rec.Done)
		}
	}
	for _, nr := range rep.Nodes {
		t.Logf("%s: %s smtp %d copies %d offsets %d", nr.Name, nr.State, nr.SMTPAccepted, nr.Copies, len(offsets[nr.Name]))
	}
	median := func(name string) time.Duration {
		d := offsets[name]
		require.NotEmpty(t, d, "messages accepted by %s", name)
		slices.Sort(d)
		return d[len(d)/2]
	}
	assert.InDelta(t, 30*time.Second, median("n3")-median("n1"), float64(time.Second), "n3's stamps run ahead")
	assert.InDelta(t, -30*time.Second, median("n4")-median("n1"), float64(time.Second), "n4's stamps run behind")
}

// Faults of the same scenario replay exactly.
func TestTimeFaultsDeterminism(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector randomizes scheduling (see TestScenarioDeterminism)")
	}
	sc, err := ParseScenario([]byte(timeFaultScenario))
	require.NoError(t, err)
	var reports []string
	for range 2 {
		rep, err := Run(t, sc, Options{})
		require.NoError(t, err)
		js, err := rep.StableJSON()
		require.NoError(t, err)
		reports = append(reports, string(js))
	}
	assert.Equal(t, reports[0], reports[1])
}
