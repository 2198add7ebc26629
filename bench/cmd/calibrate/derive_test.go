package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/bench/calibrate"
)

// synthPhase is a phase of nodes whose CPU follows the model exactly:
// bg CPUs for the array whatever the load, plus per charge
// perMsg + size/KiB * perKiB.
func synthPhase(size int, rate float64, msgs int, bg, perMsg, perKiB float64) phase {
	wall := time.Duration(float64(msgs)/rate*float64(time.Second)) + 2*time.Second
	charges := float64(msgs * chargesPerMsg)
	cpu := bg*wall.Seconds() + charges*(perMsg+float64(size)/1024*perKiB)
	// The machine: the nodes, 0.2 of a CPU of daemons, 300 us a message
	// of load generator and kernel.
	host := cpu + 0.2*wall.Seconds() + float64(msgs)*300e-6
	return phase{size: size, rate: rate, count: msgs, offered: msgs, wall: wall,
		nodeCPU: time.Duration(cpu * 1e9), hostCPU: time.Duration(host * 1e9), idle: time.Duration(0.01 * wall.Seconds() * 1e9)}
}

// TestRepeatFiguresSeparateBackground: on nodes that burn 0.3 CPUs
// whatever the load and 500 us + 20 us/KiB a charge, the sweep at one rate
// alone reads a charge as far dearer (the background spread over its
// charges); the load line recovers the marginal cost and the background.
func TestRepeatFiguresSeparateBackground(t *testing.T) {
	const bg, perMsg, perKiB = 0.3, 500e-6, 20e-6
	cfg := config{nodes: 4, sizes: []int{1024, 8192, 32768}, rate: 100, rates: []float64{200, 400}, messages: 1000}
	res := repeatResult{idlePerSec: 0.01,
		fsync: []calibrate.SyncSamples{{Bytes: 4096, Seconds: []float64{1e-4, 1.2e-4}}, {Bytes: 65536, Seconds: []float64{2e-4, 2.2e-4}}},
		rtt:   []float64{20e-6, 21e-6, 22e-6}}
	for _, size := range cfg.sizes {
		res.ingest = append(res.ingest, synthPhase(size, cfg.rate, cfg.messages, bg, perMsg, perKiB))
		res.read = append(res.read, synthPhase(size, cfg.rate, cfg.messages, bg, perMsg, perKiB))
	}
	res.load = append(res.load, res.ingest[0])
	for _, r := range cfg.rates {
		res.load = append(res.load, synthPhase(1024, r, int(1000*r/100), bg, perMsg, perKiB))
	}
	f, err := repeatFigures(cfg, res)
	require.NoError(t, err)
	assert.InDelta(t, perKiB, f.cpuPerKiB, 1e-9, "per KiB: the sweep's slope")
	assert.InDelta(t, 0.01/4, f.cpuBackground, 1e-9, "background per node: the idle array's")
	assert.InDelta(t, bg/4-0.01/4, f.cpuIdle, 0.02, "idle CPU per node: the rest of the intercept")
	assert.InDelta(t, perMsg, f.cpuPerMsg, 50e-6, "the marginal cost of a charge")
	assert.Greater(t, f.cpuAvgPerMsg, 2*perMsg, "the one-rate average holds the background too")
	assert.InDelta(t, 300e-6, f.hostPerMsg, 1e-6, "the machine's CPU outside the nodes per message: the slope, not the daemons")

	// The same load against the array as containers: the host pays 900 us
	// a message beyond them, and that is the figure.
	for _, p := range res.load {
		p.hostCPU = p.nodeCPU + time.Duration((0.2*p.wall.Seconds()+float64(p.count)*900e-6)*1e9)
		res.containers = append(res.containers, p)
	}
	f, err = repeatFigures(cfg, res)
	require.NoError(t, err)
	assert.InDelta(t, 900e-6, f.hostPerMsg, 1e-6, "from the containers when they ran")
	assert.True(t, f.hostFromContainers)

	res.containers = nil
	for i := range res.load {
		res.load[i].hostCPU = 0 // no /proc/stat
	}
	f, err = repeatFigures(cfg, res)
	require.NoError(t, err)
	assert.Zero(t, f.hostPerMsg, "unknown where the machine's CPU cannot be read")
}

// TestRepeatFiguresBusyCharge: a busy phase whose containers, 4 at 0.15
// CPU each, burned their quotas over 10 s on 2,000 messages of 1 KiB
// (4,000 charges), with a background of 0.0025 CPUs a node, gives
// (6 - 0.1) CPU-s / 4,000 less 1 KiB's per-KiB share.
func TestRepeatFiguresBusyCharge(t *testing.T) {
	const perKiB = 20e-6
	cfg := config{nodes: 4, sizes: []int{1024, 8192}, rate: 100, rates: []float64{200, 400}, messages: 1000, busyQuota: 0.15}
	res := repeatResult{idlePerSec: 0.01,
		fsync: []calibrate.SyncSamples{{Bytes: 4096, Seconds: []float64{1e-4, 1.2e-4}}, {Bytes: 65536, Seconds: []float64{2e-4, 2.2e-4}}},
		rtt:   []float64{20e-6, 21e-6, 22e-6}}
	for _, size := range cfg.sizes {
		res.ingest = append(res.ingest, synthPhase(size, cfg.rate, cfg.messages, 0.3, 500e-6, perKiB))
		res.read = append(res.read, synthPhase(size, cfg.rate, cfg.messages, 0.3, 500e-6, perKiB))
	}
	res.load = append(res.load, res.ingest[0])
	for _, r := range cfg.rates {
		res.load = append(res.load, synthPhase(1024, r, int(1000*r/100), 0.3, 500e-6, perKiB))
	}
	f, err := repeatFigures(cfg, res)
	require.NoError(t, err)
	assert.Zero(t, f.cpuPerMsgBusy, "no busy phase, no figure")

	res.busy = &phase{size: 1024, count: 2000, offered: 4000, wall: 10 * time.Second, nodeCPU: 6 * time.Second}
	f, err = repeatFigures(cfg, res)
	require.NoError(t, err)
	assert.InDelta(t, (6-0.1)/4000-perKiB, f.cpuPerMsgBusy, 1e-7)
	assert.InDelta(t, 1.0, f.busyUtil, 1e-9, "the quotas were used in full")
	assert.InDelta(t, 200, f.busyRate, 1e-9)
}
