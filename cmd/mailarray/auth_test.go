package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAuthFlags: the sender authentication flags reach the node's
// configuration, and the example configuration's pipeline.auth block loads.
func TestAuthFlags(t *testing.T) {
	var stderr strings.Builder
	cfg, _, err := loadConfig([]string{"--name", "n1", "--domain", "example.com", "--users", "users",
		"--auth-resolver", "192.0.2.53:53", "--auth-dkim=false", "--dmarc-policy", "honour",
		"--arc-trusted-sealer", "lists.example.org", "--arc-trusted-sealer", "fwd.example.net"}, &stderr)
	require.NoError(t, err, stderr.String())
	a := cfg.Pipeline.Auth
	assert.Equal(t, "192.0.2.53:53", a.Resolver)
	assert.True(t, a.SPF)
	assert.False(t, a.DKIM)
	assert.True(t, a.DMARC)
	assert.Equal(t, "honour", a.DMARCPolicy)
	assert.Equal(t, "example.com", a.AuthservID, "default: the first hosted domain")
	assert.Equal(t, []string{"lists.example.org", "fwd.example.net"}, a.ARCTrustedSealers)

	cfg, _, err = loadConfig([]string{"--config", "../../deploy/mailarray.example.yaml"}, &stderr)
	require.NoError(t, err, stderr.String())
	assert.Equal(t, "127.0.0.1:53", cfg.Pipeline.Auth.Resolver)
	assert.True(t, cfg.Pipeline.Auth.SPF && cfg.Pipeline.Auth.DKIM && cfg.Pipeline.Auth.DMARC, "checks default on under a config file too")
	assert.Equal(t, "mark", cfg.Pipeline.Auth.DMARCPolicy)

	_, _, err = loadConfig([]string{"--name", "n1", "--domain", "example.com", "--users", "users", "--dmarc-policy", "drop"}, &stderr)
	require.ErrorContains(t, err, "pipeline.auth.dmarc-policy")

	conf := filepath.Join(t.TempDir(), "resolv.conf")
	require.NoError(t, os.WriteFile(conf, []byte("search example.com\nnameserver 10.0.0.53\nnameserver 10.0.0.54\n"), 0o600))
	server, err := systemResolver(conf)
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.53:53", server)
}
