// Package strategy holds the array's distribution methods (the patent's
// "sequential, random, load query, size and content"): pure functions that
// order candidate nodes, best first, for one decision.
//
// One interface serves both levels of the array:
//   - DNS: the candidates are the live listeners of a role (MX, pop., imap.);
//     the order sets the MX preferences and the order of A records;
//   - placement: the candidates are the live storage nodes; the first R of
//     the order hold one message's copies, primary first.
//
// A Strategy is stateless: everything it may depend on arrives in the
// Request (rotation index, random seed, message size and urgency, the
// deciding node) and in the candidates (static weight, load report). The
// caller owns time, randomness and load queries, so a strategy gives the
// same order for the same inputs, which is what lets the simulator replay a
// run and lets every DNS node give the same answer for the same cluster
// state. Callers (package node) derive the inputs:
//   - Seq, the rotation index: for DNS, the current time slot (time divided
//     by a rotation period) plus a hash of the question name, so every node
//     computes the same index in the same slot; for placement, a per-node
//     message counter, so each listener places sequentially;
//   - Seed: one draw from the node's Env.Rand per decision, only for the
//     strategies that use it (random, p2c);
//   - Load: the node's latest load report, or Known=false when it is older
//     than the staleness bound or the node did not answer: such a node
//     counts as fully loaded.
//
// The built-in strategies are listed, in order, by List; New builds one by
// name. Size and content are unknown at DNS time (Size 0, Urgent false):
// size and content then order like roundrobin, and the listener that takes
// the message applies them when it asks placement.
package strategy
