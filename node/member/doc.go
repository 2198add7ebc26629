// Package member implements env.Membership: Serf on real sockets (gossip,
// join, failure detection, tags carrying each node's endpoints and roles)
// and Static, a fixed membership for a lone node and for tests. The
// simulator brings its own modeled implementation.
package member
