package chaos

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/sim"
)

// checkTimeCell: a time cell fails no failpoint, its faults parse, and
// each fault with an undo ends at least 15 s before the run does, so that
// what it held or froze settles before the checker looks.
func checkTimeCell(t *testing.T, c Cell) {
	t.Helper()
	assert.Empty(t, c.Targets, c.ID())
	require.NotEmpty(t, c.Faults, c.ID())
	sc, err := c.Scenario(3)
	require.NoError(t, err, c.ID())
	require.Len(t, sc.Faults, len(c.Faults), c.ID())
	for _, f := range sc.Faults {
		assert.LessOrEqual(t, f.At+f.For, sc.Duration+sc.Drain-sim.Duration(15*time.Second), "%s: %s ends too late to settle", c.ID(), f.Action)
	}
}

// TestCheckLeases proves the lease rule can fail: a refusal for a holder
// down longer than detection plus the margin is a finding, one within it
// is not.
func TestCheckLeases(t *testing.T) {
	rep := &sim.Report{}
	rep.Config.Membership.DetectMax = sim.Duration(time.Second)
	refuse := func(last, down float64) sim.LeaseRefusal {
		return sim.LeaseRefusal{Mailbox: "user1@example.com", Holder: "n2", HolderDownS: down, FirstS: down + 0.1, LastS: last, Refusals: 3}
	}
	for _, tc := range []struct {
		name     string
		refusals []sim.LeaseRefusal
		more     int
		want     int
	}{
		{"none", nil, 0, 0},
		{"within detection", []sim.LeaseRefusal{refuse(1.5, 1), refuse(3, 1)}, 0, 0},
		{"beyond detection and margin, one finding per lease", []sim.LeaseRefusal{refuse(1.5, 1), refuse(3.2, 1), refuse(40, 1)}, 0, 2},
		{"the record's overflow counts once one is late", []sim.LeaseRefusal{refuse(10, 1)}, 5, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := *rep
			r.LeaseRefusals, r.LeaseRefusalsMore = tc.refusals, tc.more
			got := checkLeases(&r)
			assert.Equal(t, tc.want, got.Count, "findings: %v", got.IDs)
			res := Result{StaleLeases: got}
			if tc.want > 0 {
				assert.NotEmpty(t, res.Violations())
			} else {
				assert.Empty(t, res.Violations())
			}
		})
	}
}
