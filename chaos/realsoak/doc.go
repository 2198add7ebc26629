// Package realsoak is the real-process soak of `make soak-real`: many
// short runs, each of three `mailarray serve` processes on loopback under
// SMTP and POP3 load, with one fault drawn from the run's seed, checked
// against what the load generator saw acknowledged.
//
// A run (run.go) starts a fresh array with bench.StartCluster (free
// loopback ports, R=2 W=2, a generated peer key, short tuning knobs from a
// --config file), waits until every node is ready and sees the others,
// drives the simulator's real-socket load generator (sim.RunReal: several
// senders, unique Message-IDs, every 250 recorded with its queue id, POP3
// readers that delete), and meanwhile applies its fault (faults.go):
//
//   - kill: SIGKILL a node, restart it on the same data directory;
//   - pause: SIGSTOP a node until the others declare it failed, hold it
//     a little longer, SIGCONT;
//   - restore: take a backup of a node as docs/deploy.md section 7 says
//     (stop it with SIGTERM, copy node.db, start it), later stop it again,
//     put the backup back as node.db, start it. Half the seeds stop it for
//     the restore with SIGTERM, as the guide says (the others see it leave
//     and rebuild at once); the other half with SIGKILL and restart it at
//     once, before the others notice (a crashed node back with an older
//     disk).
//
// Then it waits for quiescence (every node: all members alive, nothing
// pending, nothing under-replicated, no push queue, equal catalog
// digests), reads every mailbox by POP3 from every node (verify.go) and
// compares what it reads with the load's records: each acknowledged and
// undeleted message exactly once, in its mailbox, with the bytes sent; no
// refused transaction and no deleted message visible. Finally it stops the
// processes and, with the files closed, runs chaos.Check over the three
// node.db files and counts phantom holders (a catalog location whose store
// lacks the copy).
//
// Soak (soak.go) runs seeds in turn; report.go writes results/soak-real.md.
// A run's kind and every draw come from its seed, so a failing run replays
// with its seed (the wall clock and the scheduler still differ).
package realsoak
