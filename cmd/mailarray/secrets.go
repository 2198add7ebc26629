package main

import (
	"encoding/base64"
	"fmt"
	"strings"

	"mailarray/node"
)

// placeholderSecrets names every secret of cfg that is still a placeholder
// copied from the example configuration: a key starting "change-me", or a
// gossip key of zero bytes. A node started with one would look protected
// while anyone who read the example could walk in, so serve refuses it
// (issue: safe by default).
func placeholderSecrets(cfg node.Config) []string {
	var bad []string
	for _, s := range []struct{ key, value string }{
		{"peer-key", cfg.PeerKey},
		{"ingest-token", cfg.IngestToken},
		{"admin-token", cfg.AdminToken},
	} {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(s.value)), "change-me") {
			bad = append(bad, s.key)
		}
	}
	if k, err := base64.StdEncoding.DecodeString(cfg.GossipKey); err == nil && len(k) > 0 && allZero(k) {
		bad = append(bad, "gossip-key")
	}
	return bad
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkSecrets is placeholderSecrets as the error serve refuses to start
// with, saying how to make real ones.
func checkSecrets(cfg node.Config) error {
	bad := placeholderSecrets(cfg)
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("config: %s still the example's placeholder; set real secrets (e.g. `head -c 32 /dev/urandom | base64`) before starting a node", strings.Join(bad, ", ")+map[bool]string{true: " is", false: " are"}[len(bad) == 1])
}
