// Package env defines the world a node lives in: the network, its random
// stream, cluster membership, its data directory, its logger, a fault hook,
// its wall clock and an observer of its lock manager.
//
// Nothing under node/ reaches the outside except through an Env. In real mode
// (mailarray serve) Env.Net is the operating system's network and Membership
// is serf; inside the simulator (sim/) Net is SimNet, Rand is a seeded stream
// per node and Membership is modeled from the fault schedule. The node code is
// the same in both modes, which is what makes the simulator's figures mean
// something. node.Env is an alias of Env.
package env
