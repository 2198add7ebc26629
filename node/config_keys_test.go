package node

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEveryConfigKeyClassified: every YAML key of Config says whether a
// reload applies it, and the table names no key Config lacks; the deploy
// doc and the example config name every key with its class.
func TestEveryConfigKeyClassified(t *testing.T) {
	fields := configFields()
	require.Greater(t, len(fields), 80, "the walk reaches the nested and inline keys")
	seen := map[string]bool{}
	for _, f := range fields {
		seen[f.key] = true
		c, ok := configKeys[f.key]
		if assert.True(t, ok, "config key %q is not classified in configKeys (config_keys.go)", f.key) {
			assert.Contains(t, []string{KeyLive, KeyRestart}, c.how, f.key)
			assert.NotEmpty(t, c.why, "%s: say why", f.key)
		}
	}
	for k := range configKeys {
		assert.True(t, seen[k], "configKeys names %q, which Config has no longer", k)
	}
	for _, k := range []string{"tuning.maintain-every", "pipeline.auth.dmarc-policy", "smtp-max-sessions-per-ip", "log-level"} {
		assert.True(t, seen[k], "the walk lists %s", k)
	}

	doc, err := os.ReadFile("../docs/deploy.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(doc), "## Reloading the configuration")
	require.True(t, ok, "docs/deploy.md has the reload section")
	section, _, _ = strings.Cut(section, "\n## ")
	example, err := os.ReadFile("../deploy/mailarray.example.yaml")
	require.NoError(t, err)
	_, lists, ok := strings.Cut(section, "\n- live:")
	require.True(t, ok, "the section's live list")
	liveList, restartList, ok := strings.Cut(lists, "\n- restart:")
	require.True(t, ok, "the section's restart list")
	for _, kc := range ConfigKeys() {
		key, how := kc[0], kc[1]
		list := map[string]string{KeyLive: liveList, KeyRestart: restartList}[how]
		assert.Contains(t, list, "`"+key+"`", "docs/deploy.md's reload section lists %s as %s", key, how)
		if how == KeyLive {
			assert.Contains(t, string(example), key, "the example config's reload note names the live key %s", key)
		}
	}
}

// TestDiffConfig: the diff names exactly the keys that changed, nested and
// inline ones by their dotted YAML path.
func TestDiffConfig(t *testing.T) {
	a := DefaultConfig()
	b := DefaultConfig()
	assert.Empty(t, diffConfig(&a, &b))
	b.Name = "other"
	b.SMTPMaxSessionsPerIP++
	b.Tuning.MaintainEvery += time.Second
	b.Pipeline.Auth.SPF = !b.Pipeline.Auth.SPF
	b.Pipeline.AVDomainPolicy = map[string]string{"example.com": "quarantine"}
	b.POP3LoginTimeout += time.Second // AccessLimits, inline
	var keys []string
	for _, f := range diffConfig(&a, &b) {
		keys = append(keys, f.key)
	}
	assert.ElementsMatch(t, []string{"name", "smtp-max-sessions-per-ip", "tuning.maintain-every", "pipeline.auth.spf",
		"pipeline.av-domain-policy", "pop3-login-timeout"}, keys)
}

// TestReloadClassification: Reload applies the live keys that changed,
// keeps the restart-only ones at their running value and reports both;
// an invalid configuration changes nothing; TLS turned on is restart-only
// even though tls-cert is live between two files.
func TestReloadClassification(t *testing.T) {
	c := newTestCluster(t, 1, 1, 1)
	n := c.nodes["n1"]
	before := n.Config()

	next := n.Config()
	next.SMTPMaxSessionsPerIP = 7
	next.Tuning.VerifyPerScan = 9
	next.DNSTTL = 30 * time.Second
	next.AdminToken = "s3cret-token-for-the-test"
	next.MaxMessageBytes = 2 * before.MaxMessageBytes // go-smtp: restart
	next.Replicas = before.Replicas + 1               // restart
	next.WriteQuorum = before.WriteQuorum
	next.TLSCert, next.TLSKey = "/nonexistent.crt", "/nonexistent.key" // TLS on: restart
	st, err := n.Reload(next)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"smtp-max-sessions-per-ip", "tuning.verify-per-scan", "dns-ttl", "admin-token"}, st.Applied)
	assert.ElementsMatch(t, []string{"max-message-bytes", "replicas", "tls-cert", "tls-key"}, st.Restart)
	got := n.Config()
	assert.Equal(t, 7, got.SMTPMaxSessionsPerIP)
	assert.Equal(t, 9, got.Tuning.VerifyPerScan)
	assert.Equal(t, 9, n.repl.Tuning().VerifyPerScan, "the replicator takes the new pace")
	assert.Equal(t, "s3cret-token-for-the-test", got.AdminToken)
	assert.Equal(t, before.MaxMessageBytes, got.MaxMessageBytes)
	assert.Equal(t, before.Replicas, got.Replicas)
	assert.Empty(t, got.TLSCert)

	bad := n.Config()
	bad.SMTPMaxSessionsPerIP = 8
	bad.Tuning.RebuildPerScan = -1
	_, err = n.Reload(bad)
	require.ErrorIs(t, err, ErrReloadRefused)
	assert.ErrorContains(t, err, "tuning.rebuild-per-scan")
	assert.Equal(t, 7, n.Config().SMTPMaxSessionsPerIP, "a refused reload changes nothing")
	last := n.LastReload()
	assert.Equal(t, "error", last.Result)
	assert.Equal(t, 2, last.Count)
}
