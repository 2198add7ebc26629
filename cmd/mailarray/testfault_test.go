package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/fault"
)

// TestTestFaultNeedsItsGate: --test-fault slows a node on purpose, so it
// is refused unless --test-faults-allowed says this is a test array; with
// it, serve gets the delays (and no node.Config key holds them).
func TestTestFaultNeedsItsGate(t *testing.T) {
	base := []string{"--name", "n1", "--domain", "example.com", "--users", "users"}
	var stderr strings.Builder
	_, _, _, _, err := loadConfigLevel(append(base, "--test-fault", "store.sync=8ms"), &stderr)
	require.Error(t, err, "no gate: refused")
	assert.Contains(t, err.Error(), "--test-faults-allowed")

	_, _, _, tf, err := loadConfigLevel(append(base, "--test-faults-allowed", "--test-fault", "store.sync=8ms"), &stderr)
	require.NoError(t, err, stderr.String())
	assert.Equal(t, fault.Delays{fault.StoreSync: 8 * time.Millisecond}, tf.Delays)

	_, _, _, tf, err = loadConfigLevel(base, &stderr)
	require.NoError(t, err)
	assert.Nil(t, tf.Delays, "off by default: no hook")

	_, _, _, _, err = loadConfigLevel(append(base, "--test-faults-allowed", "--test-fault", "store.sync=forever"), &stderr)
	assert.Error(t, err, "a bad duration")
}
