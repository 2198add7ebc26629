package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node"
)

// The example configuration loads (TestExampleConfigLoads), but serve
// refuses its placeholder secrets, naming each.
func TestServeRefusesExampleSecrets(t *testing.T) {
	var stderr strings.Builder
	cfg, _, err := loadConfig([]string{"--config", "../../deploy/mailarray.example.yaml"}, &stderr)
	require.NoError(t, err, "stderr: %s", stderr.String())
	assert.Equal(t, []string{"peer-key", "ingest-token", "admin-token", "gossip-key"}, placeholderSecrets(cfg))
	err = checkSecrets(cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "peer-key, ingest-token, admin-token, gossip-key are still the example's placeholder")

	_, errOut, code := runCommand(t, "", "serve", "--config", "../../deploy/mailarray.example.yaml", "--data", t.TempDir())
	assert.Equal(t, 1, code, "serve exits: %s", errOut)
	assert.Contains(t, errOut, "placeholder")
}

func TestRealSecretsPass(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.PeerKey, cfg.AdminToken, cfg.GossipKey = "k3y-from-urandom", "t0ken", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0" // "secretsecret..."
	assert.Empty(t, placeholderSecrets(cfg))
	cfg.PeerKey = "Change-Me-please"
	assert.Equal(t, []string{"peer-key"}, placeholderSecrets(cfg))
	assert.EqualError(t, checkSecrets(cfg), "config: peer-key is still the example's placeholder; set real secrets (e.g. `head -c 32 /dev/urandom | base64`) before starting a node")
}

// `mailarray tls ca` never silently replaces the array's CA: every node
// certificate it signed would stop being trusted.
func TestTLSCARefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := runCommand(t, "", "tls", "ca", "--out", dir)
	require.Equal(t, 0, code, errOut)
	before, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	require.NoError(t, err)

	_, errOut, code = runCommand(t, "", "tls", "ca", "--out", dir)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "refusing to replace the array's CA")
	after, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	require.NoError(t, err)
	assert.Equal(t, before, after, "the CA key is untouched")

	_, errOut, code = runCommand(t, "", "tls", "ca", "--out", dir, "--force")
	require.Equal(t, 0, code, errOut)
	after, err = os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	require.NoError(t, err)
	assert.NotEqual(t, before, after, "--force replaces it")
}

// An array mirrors by default; a lone node keeps one copy; what the
// operator sets is kept.
func TestCopiesDefault(t *testing.T) {
	for _, tt := range []struct {
		args         []string
		wantR, wantW int
	}{
		{nil, 1, 1},
		{[]string{"--gossip", "127.0.0.1:7946"}, 2, 2},
		{[]string{"--gossip", "127.0.0.1:7946", "--replicas", "3"}, 3, 2},
		{[]string{"--gossip", "127.0.0.1:7946", "--replicas", "1"}, 1, 1},
		{[]string{"--gossip", "127.0.0.1:7946", "--write-quorum", "1"}, 2, 1},
		{[]string{"--replicas", "3", "--write-quorum", "3"}, 3, 3},
	} {
		var stderr strings.Builder
		cfg, _, err := loadConfig(append([]string{"--name", "n1", "--domain", "example.com", "--users", "users"}, tt.args...), &stderr)
		require.NoError(t, err, "%v: %s", tt.args, stderr.String())
		assert.Equal(t, tt.wantR, cfg.Replicas, "R for %v", tt.args)
		assert.Equal(t, tt.wantW, cfg.WriteQuorum, "W for %v", tt.args)
	}
}
