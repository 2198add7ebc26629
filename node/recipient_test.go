package node

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConfigIDNDomains: a hosted IDN domain may be given in U-labels or
// A-labels; the node keeps one A-label entry, the form the DNS is asked in
// and the SMTP listener's recipients are normalised to.
func TestConfigIDNDomains(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.Mailboxes = "n1", t.TempDir(), testUsers
	cfg.Domains = []string{"Bücher.example.", "xn--BCHER-kva.example", "example.com"}
	require.NoError(t, cfg.Validate())
	assert.Equal(t, []string{"example.com", "xn--bcher-kva.example"}, cfg.Domains)

	cfg.Domains = []string{"xn--a.example"}
	assert.ErrorContains(t, cfg.Validate(), "domain", "an A-label that does not decode is refused")
}
