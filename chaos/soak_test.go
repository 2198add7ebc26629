//go:build chaos

package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The soak (make chaos-soak, chaos/soak.sh) runs TestSimChaos in several
// processes, each over its own range of seeds: CHAOS_SEED_OFFSET=K runs
// seeds K+1..K+CHAOS_SEEDS in every cell, without the regression seeds
// (make chaos runs those), and CHAOS_SOAK_JSON names the file the process
// writes its runs to (a SoakShard) for the soak's report.

// chaosSeedOffset is CHAOS_SEED_OFFSET, and whether it is set.
func chaosSeedOffset(t *testing.T) (uint64, bool) {
	v := os.Getenv("CHAOS_SEED_OFFSET")
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	require.NoError(t, err, "CHAOS_SEED_OFFSET")
	return n, true
}

// cellSeeds lists the seeds TestSimChaos runs in cell: seedsOf, or with
// an offset, offset+1..offset+n.
func cellSeeds(cell string, offset uint64, soak bool, n int) []uint64 {
	if !soak {
		return seedsOf(cell, n)
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = offset + uint64(i) + 1
	}
	return out
}

// replayFor is the command that reruns the test called name, seed seed:
// a soak's seed is replayed with an offset that makes it the only one.
func replayFor(name string, seed uint64, seeds int, soak bool) string {
	if !soak {
		return replayCommand(name, seeds, defaultSeeds)
	}
	return fmt.Sprintf("CHAOS_SEED_OFFSET=%d CHAOS_SEEDS=1 %s", seed-1, replayCommand(name, defaultSeeds, defaultSeeds))
}

// writeSoakShard writes the runs of this process for the soak's report.
func writeSoakShard(t *testing.T, path string, offset uint64, seeds int, sum *Summary, wall time.Duration) {
	b, err := json.Marshal(SoakShard{Offset: offset, Seeds: seeds, WallSeconds: wall.Seconds(), Runs: sum.Runs})
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// TestChaosSoakCells prints the number of cells of the matrix, which the
// soak divides its runs by.
func TestChaosSoakCells(t *testing.T) {
	// CHAOS_SOAK_CELLS (chaos/soak.sh SOAK_CELLS) restricts the count to
	// the cells whose Group/Name it matches, as -run TestSimChaos/<it> does.
	re, err := regexp.Compile(os.Getenv("CHAOS_SOAK_CELLS"))
	if err != nil {
		t.Fatalf("CHAOS_SOAK_CELLS: %v", err)
	}
	n := 0
	for _, c := range Matrix() {
		if re.MatchString(c.Group + "/" + c.Name) {
			n++
		}
	}
	t.Logf("chaos cells: %d", n)
}
