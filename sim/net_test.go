package sim

import (
	"testing"
	"testing/synctest"
	"time"

	"mailarray/sim/simnet"
)

// testNet is a net with exact 1 ms links (no jitter, no bandwidth limit),
// as package simnet's tests use.
func testNet(seed uint64, mod func(*simnet.NetConfig)) *simnet.Net {
	cfg := simnet.DefaultNetConfig()
	cfg.Link = simnet.LinkConfig{Latency: time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	return simnet.NewNet(seed, cfg)
}

// simTest runs f in a bubble with a running driver, stopped after f.
func simTest(t *testing.T, mod func(*simnet.NetConfig), f func(t *testing.T, n *simnet.Net)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		n := testNet(1, mod)
		stop := n.Start()
		defer stop()
		f(t, n)
	})
}
