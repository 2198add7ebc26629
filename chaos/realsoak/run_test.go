package realsoak

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/bench"
)

// TestRunKill carries out one real run end to end: three mailarray serve
// processes, the load, a SIGKILL and restart, quiescence, the POP3 reads
// from every node, the phantom-holder scans and chaos.Check. A kill is
// what the array has long survived: the run must be clean and leave no
// process behind.
func TestRunKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds mailarray and runs three processes for ~40 s")
	}
	// Issue 16: this run once failed about one time in two on a loaded
	// machine — the nodes stop together at its end, and the last one up
	// unlisted the others from every entry it held (rebuild with a ring of
	// one). Rebuild now never unlists a holder short of R live ones, and a
	// stopping node starts no repairs (node/replica/maintain_test.go).
	wd, err := os.Getwd()
	require.NoError(t, err)
	root, err := bench.ModuleRoot(wd)
	require.NoError(t, err)
	dir := t.TempDir()
	if keep := os.Getenv("REALSOAK_KEEP_DIR"); keep != "" {
		// A failing run's node logs and databases survive the test here.
		dir = keep
		require.NoError(t, os.MkdirAll(dir, 0o755))
	}
	cfg := DefaultConfig()
	cfg.Bin = filepath.Join(dir, "mailarray")
	cfg.Dir = filepath.Join(dir, "soak")
	cfg.LoadDuration, cfg.Drain, cfg.SMTPTimeout, cfg.RatePerSec = 5*time.Second, 10*time.Second, 5*time.Second, 20
	build := exec.Command("go", "build", "-o", cfg.Bin, "./cmd/mailarray")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	const seed = 3 // a kill: Kinds[3 % 3]
	require.Equal(t, KindKill, NewPlan(seed, cfg.LoadDuration).Kind)
	s, err := Soak(context.Background(), cfg, seed, 1, testWriter{t}, nil)
	require.NoError(t, err)
	require.Len(t, s.Runs, 1)
	r := s.Runs[0]
	assert.Empty(t, r.Violations(), "seed %d: %s", seed, r.Plan)
	assert.Positive(t, r.Accepted)
	require.NotNil(t, r.Read)
	require.NotNil(t, r.Check)
	assert.Equal(t, r.Accepted, r.Check.Acknowledged)
	assert.Positive(t, r.Read.Retrieved)
	assert.Contains(t, r.Fault.Steps[0], "SIGKILL")

	// A passing run's directory is removed (chaos.Check opened its files:
	// every process had exited).
	for _, name := range nodeNames {
		_, err := os.Stat(filepath.Join(RunDir(cfg.Dir, seed), name))
		assert.True(t, os.IsNotExist(err), "a passing run's directory is removed")
	}
}

// testWriter sends the soak's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
