// Package calibrate measures, on this machine, what the simulator's cost
// model (sim/cost.go, sim.NodeSpec) means by its parameters, for make
// calibrate (bench/cmd/calibrate): the arithmetic that turns measurements
// into parameters (Fit, a least-squares line; Summarize, the median and
// range over repeats; Percentile) and the probes that need no mailarray
// process (FsyncProbe: write+fdatasync on the data directory's
// filesystem; EchoProbe: a TCP round trip over loopback; SelfCPU: the
// load generator's own CPU time).
//
// The command starts the real nodes and drives them with the real load
// generator; what each figure means and how it is derived is in
// docs/bench.md ("Calibration").
package calibrate
