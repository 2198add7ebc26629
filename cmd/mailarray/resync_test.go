package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --resync-catalog reaches the node's configuration, with or without a
// config file (it has no YAML key: a file would resync at every restart),
// and the example file's collection interval is read.
func TestResyncCatalogFlag(t *testing.T) {
	for _, args := range [][]string{
		{"--name", "n1", "--domain", "example.com", "--users", "/etc/mailarray/users", "--resync-catalog"},
		{"--config", "../../deploy/mailarray.example.yaml", "--resync-catalog"},
	} {
		var stderr strings.Builder
		cfg, _, err := loadConfig(args, &stderr)
		require.NoError(t, err, "stderr: %s", stderr.String())
		assert.True(t, cfg.ResyncCatalog, "%v", args)
	}
	var stderr strings.Builder
	cfg, _, err := loadConfig([]string{"--config", "../../deploy/mailarray.example.yaml"}, &stderr)
	require.NoError(t, err)
	assert.False(t, cfg.ResyncCatalog)
	assert.Equal(t, 10*time.Minute, cfg.Tuning.CollectEvery)
}
