package sim

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseScenarioErrorsNameTheKey(t *testing.T) {
	base := "name: t\nduration: 1s\nnodes: [{name: n1}]\nload: {rate_per_sec: 10}\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", base + "colour: blue\n", "field colour not found"},
		{"bad name", "name: Bad_Name\nduration: 1s\nnodes: [{name: n1}]\nload: {rate_per_sec: 10}\n", "name:"},
		{"no duration", "name: t\nnodes: [{name: n1}]\nload: {rate_per_sec: 10}\n", "duration: must be > 0"},
		{"bad duration", base + "drain: soon\n", "is not a duration"},
		{"no nodes", "name: t\nduration: 1s\nload: {rate_per_sec: 10}\n", "nodes:"},
		{"duplicate node", "name: t\nduration: 1s\nnodes: [{name: n1}, {name: n1}]\nload: {rate_per_sec: 10}\n", "nodes[1].name"},
		{"quorum", base + "replicas: 2\nwrite_quorum: 3\n", "write_quorum"},
		{"strategy", base + "dns_strategy: astrology\n", "dns_strategy"},
		{"placement", base + "placement_strategy: weighted-dice\n", "placement_strategy"},
		{"rate", "name: t\nduration: 1s\nnodes: [{name: n1}]\nload: {rate_per_sec: 0}\n", "load.rate_per_sec"},
		{"arrival", "name: t\nduration: 1s\nnodes: [{name: n1}]\nload: {rate_per_sec: 1, arrival: sometimes}\n", "load.arrival"},
		{"zipf", "name: t\nduration: 1s\nnodes: [{name: n1}]\nload: {rate_per_sec: 1, zipf_s: 0.5}\n", "load.zipf_s"},
		{"size", "name: t\nduration: 1s\nnodes: [{name: n1}]\nload: {rate_per_sec: 1, size: {median_bytes: 100}}\n", "load.size"},
		{"fault node", base + "faults: [{at: 0s, action: crash, node: n9}]\n", "faults[0].node"},
		{"fault action", base + "faults: [{at: 0s, action: meteor}]\n", "faults[0].action"},
		{"fault late", base + "faults: [{at: 1h, action: heal}]\n", "faults[0].at"},
		{"slow disk factor", base + "faults: [{at: 0s, action: slow_disk, node: n1}]\n", "faults[0].factor"},
		{"all spares", "name: t\nduration: 1s\nnodes: [{name: n1, spare: true}]\nload: {rate_per_sec: 10}\n", "every node is a spare"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseScenario([]byte(tc.yaml))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseScenarioDefaults(t *testing.T) {
	sc, err := ParseScenario([]byte("name: t\nduration: 1s\nnodes: [{name: n1}, {name: n2}]\nload: {rate_per_sec: 10}\nfaults: [{at: 500ms, action: heal}, {at: 100ms, action: crash, node: n2}]\n"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), sc.Seed)
	assert.Equal(t, "example.com", sc.Domain)
	assert.Equal(t, 2, sc.Replicas)
	assert.Equal(t, 2, sc.WriteQuorum)
	assert.Equal(t, "roundrobin", sc.DNSStrategy)
	assert.Equal(t, "local", sc.PlacementStrategy)
	assert.Equal(t, Duration(10*time.Second), sc.Drain)
	assert.Equal(t, ArrivalPoisson, sc.Load.Arrival)
	assert.Equal(t, 2, sc.Nodes[0].CPUCores)
	assert.Equal(t, DefaultMembershipConfig().DetectMin, sc.Membership.DetectMin.D())
	assert.Equal(t, FaultCrash, sc.Faults[0].Action, "faults sorted by time")
}

// TestScenarioFilesParse: every scenario in scenarios/ is valid.
func TestScenarioFilesParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(moduleRoot(t), "scenarios", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		sc, err := LoadScenario(f)
		if assert.NoError(t, err, f) {
			assert.Equal(t, filepath.Base(f), sc.Name+".yaml", "a scenario's name is its file's")
		}
	}
}
