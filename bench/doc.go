// Package bench is mailarray's benchmark layer on top of the simulator
// (package sim): the suite of scenarios that compare distribution
// strategies, the saturation search, the growth sweep, and the real-socket
// runner's cluster. Package bench/report renders every result as markdown
// with charts; bench/cmd/benchreport and bench/cmd/benchreal are the
// commands the Makefile calls.
//
// # Parts
//
//   - Strategies (suite.go) lists the eight strategy scenarios, in the
//     order every table shows them. They run the same heterogeneous
//     four-node array and load (scenarios/roundrobin.yaml's), differing
//     only in their DNS and placement strategies; TestSuiteConsistent
//     keeps them so.
//   - Search (saturation.go) finds, for one strategy, the highest offered
//     load the array sustains: every message accepted, none lost, p99
//     within the scenario's target. It doubles the rate from the
//     scenario's own, then bisects between the last rate that passed and
//     the first that failed. Each probe is a short run of the scenario
//     (SaturationConfig). The probe itself runs the simulator, which needs
//     a *testing.T (synctest), so the driver is TestSaturation, which
//     writes results/saturation.json. Each probe runs in a child process
//     (the test binary, TestSaturationProbe), so that a simulator crash at
//     an extreme load fails that probe, with the crash as its reason,
//     rather than the whole search.
//   - ScaleScenario (scale.go) builds the growth sweep's run for n nodes
//     from scenarios/scale.yaml: nodes cloned from the file's, load,
//     senders, readers and mailboxes proportional to n. TestScaleSweep
//     runs 3 to 32 nodes and writes results/scale.json.
//   - Cluster (cluster.go) starts a scenario's nodes as `mailarray serve`
//     processes on loopback for bench-real and make calibrate, and reads
//     their status and CPU time.
//   - The truth run (truth.go, containers.go; bench/cmd/truth, make
//     truth) checks the simulator against a real array: DefaultTruthArray
//     is the strategy scenarios' shape at this machine's scale,
//     TruthScenario the same array as a scenario with a cost profile and
//     cpu_quota, ContainerArray its nodes as containers with docker
//     --cpus and an emulated slow disk (--test-fault store.sync), and
//     TestTruthPredict the simulator's side (a test, for synctest).
//     Both sides run the same search (TruthSaturationConfig).
//   - bench/calibrate and bench/cmd/calibrate (make calibrate) measure the
//     cost model's parameters on this machine with a Cluster and the real
//     load generator, and write a cost profile scenarios can name.
//
// Everything written under results/ is a function of the scenarios, the
// seeds and the code, except the "wall" objects, which hold the only
// machine-dependent figures.
package bench
