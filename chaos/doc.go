// Package chaos holds the array's fault suites: simulator scenarios under
// failpoint fault matrices, and real-network suites that run nodes as
// containers (Docker Engine and Compose) and kill, freeze and cut them off
// under load. The checks are the invariants of docs/design.md.
//
// # Failpoints
//
// Node code names its fault points once, as constants of node/fault, and
// asks fault.Inject (through env.Inject) at each: the node's fault hook,
// then the point's failpoint, through the one marker
// failpoint.InjectCall(point, node, &err) in fault.Inject. Failpoints
// lists the points the matrix fails, with their files; notInMatrix the
// others, with the reason; markers_test.go checks that these, node/fault
// and the call sites agree. An ordinary build compiles the marker to
// nothing. `make chaos` runs chaos/run.sh, which copies the module to
// tmp/chaos-src, rewrites the copy with `go tool failpoint-ctl enable`
// (the marker becomes a call of the function a test registers with
// failpoint.EnableCall under the point's Path) and runs the simulator
// suites there with `-tags chaos`; the working tree is never rewritten, so
// nothing has to be restored, even after kill -9.
//
// # The simulator suites (sim_chaos_test.go, build tag chaos)
//
// Matrix is the fault matrix: each failpoint in each phase where node code
// reaches it (before the acknowledgement, after it, during a rebuild), and
// mixes of several failpoints at once (under a crash and restart, under a
// partition, and on the commit path). Each cell runs baseScenario over several seeds. A
// Plan decides which calls fail: the first call inside the cell's window
// and then each with a fixed probability, drawn from a stream per
// (failpoint, node) seeded by the run's seed, so a run and its faults
// replay exactly from the seed. Every run must fire each failpoint it
// targets: EnableCall succeeds even when nothing was rewritten, so only
// the counts prove the faults happened.
//
// Time cells (TimeCells, timecells.go) fail no failpoint: their schedule
// is a time fault of the simulator (a pause past PendingTimeout, a short
// pause, clocks skewed by ±30 s, a stalled and a slow link, and a crash
// and a pause of a node serving busy POP3 readers for the lease rule,
// checker.go's fifth invariant). ProveFaults
// proves from the report that each fired: applied without error, undone,
// and with its measured effect (a paused node exchanged no packet, a stall
// held packets, a slow link delayed them, a skewed listener's Received
// stamps are offset by its skew).
//
// The disk cells (DiskCells) use the simulator's scheduled disk faults
// instead of failpoints: a listener's disk stalled longer than
// PendingTimeout, a power loss under load then a restart, a restart from
// an early backup, a restart with an empty disk. A scheduled fault proves
// it fired by applying without error. Exposes names the issue-16 bug each
// found on code without its fix (all fixed; the cells must pass); they
// run diskSeeds seeds in make chaos (CHAOS_SEEDS overrides, for the soak).
//
// The ring cells (RingCells, ringcells.go) bring a three-node array, R=2
// W=2, down to one live storage node under load for several maintenance
// passes (two nodes crash together and restart with their data), and in
// one of them the survivor then fails before its rebuild has caught up
// (a stalled link to one returning node holds its repairs back while
// anti-entropy through the other spreads its catalog). On code without
// its fix (issue 16) the survivor unlisted the copies it could not see,
// which checker.go's ninth invariant reports.
//
// After each run, Check opens every live node's store and catalog from
// its files and compares them with the load generator's records and the
// simulator's durability ledger: W copies durable when each 250 was sent,
// nothing acknowledged deleted unasked, no entry listing a node whose
// store lacks the copy, no copy left out of an entry short of R holders
// (checker.go says exactly what it checks). TestCheckerCatches, which
// runs in make test too, breaks a clean run's files behind the array's
// back and proves each check can fail. A failing run prints its seed and
// the make command that replays it; the suite writes results/chaos.md.
package chaos
