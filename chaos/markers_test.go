//go:build !chaos

package chaos

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFailpointMarkers checks that node code has exactly the markers
// Failpoints lists, in the packages it says. (Under make chaos the code is
// rewritten; TestSimChaosMarkers checks the rewritten form.)
func TestFailpointMarkers(t *testing.T) {
	root := repoRoot(t)
	re := regexp.MustCompile(`failpoint\.InjectCall\("([^"]+)"`)
	seen := map[string]bool{}
	err := filepath.WalkDir(filepath.Join(root, "node"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".go" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		for _, m := range re.FindAllSubmatch(b, -1) {
			seen["mailarray/"+filepath.ToSlash(rel)+"/"+string(m[1])] = true
		}
		return nil
	})
	require.NoError(t, err)
	var got, want []string
	for k := range seen {
		got = append(got, k)
	}
	for _, fp := range Failpoints() {
		want = append(want, fp.Path())
	}
	slices.Sort(got)
	slices.Sort(want)
	assert.Equal(t, want, got)
}
