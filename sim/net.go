package sim

import (
	"mailarray/node/env"
	"mailarray/sim/simnet"
)

// A simulated host is the env.Net of the node running on it.
var _ env.Net = (*simnet.Host)(nil)

// netRand is the node's or the load's stream called name, as an env.Rand:
// the net's stream for that name (the same one at every call within a run).
func netRand(n *simnet.Net, name string) *env.Rand {
	return &env.Rand{Rand: n.Rand(name)}
}

// signal wakes one waiter of ch (capacity 1) without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
