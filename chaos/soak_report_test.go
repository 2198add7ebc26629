package chaos

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestSoakMarkdown: the soak's report sums every kind of finding the
// checker's Result has (read from the type, so a new kind is counted
// without a change), per cell and in all, and lists each failing run with
// the command that replays its seed alone.
func TestSoakMarkdown(t *testing.T) {
	var want []string
	rt := reflect.TypeFor[Result]()
	for i := range rt.NumField() {
		if f := rt.Field(i); f.Type == reflect.TypeFor[Finding]() && f.Name != "DivergingIDs" {
			want = append(want, jsonName(f))
		}
	}
	got := findingKinds()
	for _, k := range append(want, "diverging") {
		assert.Contains(t, got, k, "every kind of finding is reported")
	}
	assert.NotContains(t, got, "diverging_ids", "the ids behind diverging are not another kind")

	clean := RunResult{Cell: "mix/crash-restart", Seed: 1001, Accepted: 10, Check: &Result{Checked: 10}}
	bad := RunResult{Cell: "mix/crash-restart", Seed: 1002, Accepted: 7, Check: &Result{
		Lost: Finding{Count: 2, IDs: []string{"a", "b"}}, Phantom: Finding{Count: 1, IDs: []string{"c"}}, Diverging: 1}}
	md := string(SoakMarkdown([]SoakShard{
		{Offset: 1000, Seeds: 1, WallSeconds: 2, Runs: []RunResult{clean}},
		{Offset: 1001, Seeds: 1, WallSeconds: 3, Runs: []RunResult{bad}},
	}, "abc1234", 3*time.Second))
	for _, line := range []string{
		"| 2 | 1 | 2 | 1001-1002 | abc1234 | 0 | 0 | 0 | 17 | 4 |",
		"| lost | 2 |", "| phantom | 1 |", "| diverging | 1 |", "| resurrected | 0 |",
		"CHAOS_SEED_OFFSET=1001 CHAOS_SEEDS=1 make chaos CHAOS_RUN='^TestSimChaos$/^mix$/^crash-restart$/^seed=1002$'",
		"2.500 s per run per process",
	} {
		assert.True(t, strings.Contains(md, line), "report has %q:\n%s", line, md)
	}
}
