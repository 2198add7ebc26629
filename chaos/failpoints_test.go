package chaos

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlanDecide(t *testing.T) {
	start := LoadStart(4)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	pl := NewPlan(7, []string{"mirror.send"}, Window{time.Second, 2 * time.Second}, 0.5, start)
	call := func(name, where string, d time.Duration) error {
		var err error
		pl.decide(name, where, at(d), &err)
		return err
	}
	require.NoError(t, call("mirror.send", "n1", 500*time.Millisecond), "before the window")
	require.ErrorIs(t, call("mirror.send", "n1", time.Second), ErrInjected, "the first call in the window fails")
	require.NoError(t, call("store.sync", "/d/n1/node.db", 1500*time.Millisecond), "not a target")
	fired := 0
	for range 200 {
		if call("mirror.send", "n2", 1500*time.Millisecond) != nil {
			fired++
		}
	}
	assert.InDelta(t, 100, fired, 30, "probability 0.5")
	require.NoError(t, call("mirror.send", "n1", 2*time.Second), "after the window")
	var already = errors.New("already failing")
	err := already
	pl.decide("mirror.send", "n1", at(1500*time.Millisecond), &err)
	assert.Equal(t, already, err, "an error already set is kept, not counted")

	c := pl.Counts()
	assert.Equal(t, int64(204), c["mirror.send"].Calls)
	assert.Equal(t, int64(201), c["mirror.send"].Eligible)
	assert.Equal(t, int64(1+fired), c["mirror.send"].Fired)
	assert.Equal(t, Count{Calls: 1, First: 1500 * time.Millisecond}, c["store.sync"])
	assert.Len(t, c, len(Failpoints()), "every failpoint has a count")
	assert.Equal(t, []string{"mirror.send"}, pl.Targets())

	// Same seed, same calls: same decisions; another seed: others.
	decisions := func(seed uint64) []bool {
		p := NewPlan(seed, []string{"mirror.send"}, Window{0, time.Hour}, 0.5, start)
		var out []bool
		for i := range 60 {
			var err error
			p.decide("mirror.send", []string{"n1", "n2", "n3"}[i%3], at(time.Duration(i)*time.Millisecond), &err)
			out = append(out, err != nil)
		}
		return out
	}
	assert.Equal(t, decisions(7), decisions(7))
	assert.NotEqual(t, decisions(7), decisions(8))
}

func TestNodeOf(t *testing.T) {
	for _, tc := range []struct{ where, want string }{
		{"n1", "n1"},
		{"/dev/shm/mailarray-chaos-1/n3/node.db", "n3"},
	} {
		assert.Equal(t, tc.want, nodeOf(tc.where), tc.where)
	}
}

func TestMatrix(t *testing.T) {
	seen := map[string]bool{}
	fired := map[string]int{}
	for _, c := range Matrix() {
		require.False(t, seen[c.ID()], "duplicate cell %s", c.ID())
		seen[c.ID()] = true
		if c.Group == "time" {
			checkTimeCell(t, c)
			continue
		}
		if c.Group == "disk" || c.Group == "ring" {
			// Disk and ring cells fail no failpoint: their schedule is the
			// fault.
			assert.Empty(t, c.Targets, c.ID())
			require.NotEmpty(t, c.Faults, c.ID())
			sc, err := c.Scenario(3)
			require.NoError(t, err, c.ID())
			assert.Len(t, sc.Faults, len(c.Faults), c.ID())
			if c.Group == "ring" {
				assert.Len(t, sc.Nodes, 3, "%s: three nodes, so that two down leave one below R=2", c.ID())
				assert.Equal(t, 2, sc.Replicas, c.ID())
			}
			continue
		}
		require.NotEmpty(t, c.Targets, c.ID())
		for _, name := range c.Targets {
			require.Contains(t, failpointNames(), name, c.ID())
			fired[name]++
		}
		sc, err := c.Scenario(3)
		require.NoError(t, err, c.ID())
		assert.Equal(t, uint64(3), sc.Seed)
		assert.Len(t, sc.Faults, len(c.Faults), c.ID())
		assert.Less(t, c.Window.To, sc.Duration.D()+sc.Drain.D()-35*time.Second,
			"%s: faults stop long enough before the end for pending entries (30 s) to resolve", c.ID())
	}
	for _, name := range failpointNames() {
		if name == "load.query" {
			assert.Equal(t, 3, fired[name], "load.query is in every phase, in no mix (they must replay)")
			continue
		}
		assert.GreaterOrEqual(t, fired[name], 3, "%s is in a phase cell and both mixes", name)
	}
	for _, fp := range Failpoints() {
		for ph := range fp.Unreached {
			assert.True(t, slices.ContainsFunc(Phases(), func(p Phase) bool { return p.Name == ph }), "%s: unknown phase %s", fp.Name, ph)
		}
	}
}
