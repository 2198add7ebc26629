package sim

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/sim/simnet"
)

// serfNode is real serf on a simulated host.
type serfNode struct {
	name string
	tr   *MemberlistTransport
	sf   *serf.Serf
	host *simnet.Host

	mu     sync.Mutex
	events []serfEvent
	stop   chan struct{}
	done   chan struct{}
}

// shutdownSerf stops every node and then the network (stop).
func shutdownSerf(nodes []*serfNode, stop func()) {
	for _, sn := range nodes {
		sn.sf.Shutdown()
		close(sn.stop)
		<-sn.done
		sn.tr.Shutdown()
	}
	// serf leaves goroutines sleeping after Shutdown (docs/design.md):
	// outwait them, in virtual time.
	time.Sleep(5 * time.Minute)
	stop()
}

type serfEvent struct {
	at     time.Time
	kind   serf.EventType
	member string
}

// startSerf starts serf with memberlist's LAN profile (what `mailarray
// serve` uses by default) on host.
func startSerf(t *testing.T, n *simnet.Net, name, ip string) *serfNode {
	host := n.Host(ip)
	tr, err := NewMemberlistTransport(host, 7946)
	require.NoError(t, err)
	ml := memberlist.DefaultLANConfig()
	ml.Name = name
	ml.Transport = tr
	ml.BindAddr, ml.BindPort = ip, 7946
	ml.AdvertiseAddr, ml.AdvertisePort = ip, 7946
	ml.LogOutput = io.Discard
	sc := serf.DefaultConfig()
	sc.NodeName = name
	sc.MemberlistConfig = ml
	sc.LogOutput = io.Discard
	ch := make(chan serf.Event, 1024)
	sc.EventCh = ch
	sf, err := serf.Create(sc)
	require.NoError(t, err)
	sn := &serfNode{name: name, tr: tr, sf: sf, host: host, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sn.done)
		for {
			select {
			case ev := <-ch:
				if me, ok := ev.(serf.MemberEvent); ok {
					sn.mu.Lock()
					for _, m := range me.Members {
						sn.events = append(sn.events, serfEvent{time.Now(), me.Type, m.Name})
					}
					sn.mu.Unlock()
				}
			case <-sn.stop:
				return
			}
		}
	}()
	return sn
}

// first returns the time of the first event of kind about member at or
// after since.
func (sn *serfNode) first(kind serf.EventType, member string, since time.Time) (time.Time, bool) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	for _, ev := range sn.events {
		if ev.kind == kind && ev.member == member && !ev.at.Before(since) {
			return ev.at, true
		}
	}
	return time.Time{}, false
}

func (sn *serfNode) alive() int {
	k := 0
	for _, m := range sn.sf.Members() {
		if m.Status == serf.StatusAlive {
			k++
		}
	}
	return k
}

// serfDelays is what one run measured.
type serfDelays struct {
	join, update, detect []time.Duration
}

// measureSerf runs three serf nodes over SimNet: they join, one changes its
// tags, one crashes (its host dies: no goodbye), and the survivors detect
// it. It returns the delays each observer saw.
func measureSerf(t *testing.T, seed uint64) serfDelays {
	var d serfDelays
	synctest.Test(t, func(t *testing.T) {
		n := simnet.NewNet(seed, simnet.DefaultNetConfig())
		stop := n.Start()
		var nodes []*serfNode
		for i := 1; i <= 3; i++ {
			nodes = append(nodes, startSerf(t, n, fmt.Sprintf("s%d", i), fmt.Sprintf("10.0.0.%d", i)))
			time.Sleep(time.Duration(seed%7+1) * 13 * time.Millisecond) // vary the phases between runs
		}
		t0 := time.Now()
		for _, sn := range nodes[1:] {
			_, err := sn.sf.Join([]string{nodes[0].tr.Addr()}, true)
			require.NoError(t, err)
		}
		waitFor(t, 30*time.Second, func() bool {
			return nodes[0].alive() == 3 && nodes[1].alive() == 3 && nodes[2].alive() == 3
		})
		for _, obs := range nodes {
			for _, sn := range nodes {
				if at, ok := obs.first(serf.EventMemberJoin, sn.name, t0); ok && obs != sn {
					d.join = append(d.join, at.Sub(t0))
				}
			}
		}

		// A tag change (a node advertising its listeners) spreads by gossip.
		time.Sleep(2 * time.Second)
		t1 := time.Now()
		require.NoError(t, nodes[0].sf.SetTags(map[string]string{"roles": "smtp,store"}))
		waitFor(t, 30*time.Second, func() bool {
			_, ok1 := nodes[1].first(serf.EventMemberUpdate, "s1", t1)
			_, ok2 := nodes[2].first(serf.EventMemberUpdate, "s1", t1)
			return ok1 && ok2
		})
		for _, obs := range nodes[1:] {
			at, _ := obs.first(serf.EventMemberUpdate, "s1", t1)
			d.update = append(d.update, at.Sub(t1))
		}

		// s3 crashes: its sockets vanish, then its goroutines stop, with no
		// leave message.
		time.Sleep(time.Duration(seed%10) * 97 * time.Millisecond)
		t2 := time.Now()
		victim := nodes[2]
		victim.host.Crash()
		victim.sf.Shutdown()
		waitFor(t, 2*time.Minute, func() bool {
			_, ok1 := nodes[0].first(serf.EventMemberFailed, "s3", t2)
			_, ok2 := nodes[1].first(serf.EventMemberFailed, "s3", t2)
			return ok1 && ok2
		})
		for _, obs := range nodes[:2] {
			at, _ := obs.first(serf.EventMemberFailed, "s3", t2)
			d.detect = append(d.detect, at.Sub(t2))
		}

		shutdownSerf(nodes, stop)
	})
	return d
}

// waitFor polls cond every 50 ms of virtual time until it holds or timeout
// passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v (virtual)", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSerfOverSimNet runs real serf (memberlist's LAN profile) over SimNet:
// three nodes join, a tag change spreads, a crash is detected. Serf draws
// from global randomness, so runs are not repeatable: the test checks
// bounds with tolerance, over several seeds. The bounds follow from the LAN
// profile (probe every 1 s, 500 ms probe timeout, suspicion multiplier 4:
// a suspect is declared failed after 4 s at the earliest, sooner than the
// 24 s maximum once the other survivor confirms) and calibrate
// DefaultMembershipConfig (see doc.go).
func TestSerfOverSimNet(t *testing.T) {
	seeds := serfSeeds()
	if testing.Short() {
		seeds = 1
	}
	var all serfDelays
	for seed := range uint64(seeds) {
		d := measureSerf(t, seed+1)
		t.Logf("seed %d: join %v, tag update %v, crash detected after %v", seed+1, d.join, d.update, d.detect)
		all.join = append(all.join, d.join...)
		all.update = append(all.update, d.update...)
		all.detect = append(all.detect, d.detect...)
	}
	slices.Sort(all.detect)
	slices.Sort(all.update)
	t.Logf("detection: min %v max %v; tag gossip: min %v max %v", all.detect[0], all.detect[len(all.detect)-1], all.update[0], all.update[len(all.update)-1])
	for _, dd := range all.detect {
		assert.GreaterOrEqual(t, dd, 4*time.Second, "suspicion lasts at least SuspicionMult x ProbeInterval")
		assert.LessOrEqual(t, dd, 12*time.Second, "the other survivor's confirmation shortens suspicion well below its 24 s maximum")
	}
	for _, du := range all.update {
		assert.LessOrEqual(t, du, 2*time.Second, "tag changes spread within a few gossip rounds")
	}
	// The model's delays are calibrated against these measurements: its
	// range covers the median, and starts near the fastest detection.
	cfg := DefaultMembershipConfig()
	median := all.detect[len(all.detect)/2]
	assert.True(t, cfg.DetectMin <= median && median <= cfg.DetectMax, "median detection %v within the model's [%v, %v]", median, cfg.DetectMin, cfg.DetectMax)
	assert.InDelta(t, all.detect[0].Seconds(), cfg.DetectMin.Seconds(), 1.5, "fastest detection near the model's minimum")
	assert.LessOrEqual(t, all.update[len(all.update)-1], cfg.GossipMax+100*time.Millisecond, "tag gossip within the model's maximum")
}

// serfSeeds is the number of runs (SERF_SEEDS overrides, for calibration).
func serfSeeds() int {
	if v, err := strconv.Atoi(os.Getenv("SERF_SEEDS")); err == nil && v > 0 {
		return v
	}
	return 6
}

// measureSerfPartition cuts s3 off from s1 and s2 until both sides declare
// the other failed, heals, and returns how long after the heal each side
// saw the other again.
func measureSerfPartition(t *testing.T, seed uint64) (rejoin []time.Duration) {
	synctest.Test(t, func(t *testing.T) {
		n := simnet.NewNet(seed, simnet.DefaultNetConfig())
		stop := n.Start()
		var nodes []*serfNode
		for i := 1; i <= 3; i++ {
			nodes = append(nodes, startSerf(t, n, fmt.Sprintf("s%d", i), fmt.Sprintf("10.0.0.%d", i)))
			time.Sleep(time.Duration(seed%7+1) * 13 * time.Millisecond)
		}
		for _, sn := range nodes[1:] {
			_, err := sn.sf.Join([]string{nodes[0].tr.Addr()}, true)
			require.NoError(t, err)
		}
		waitFor(t, 30*time.Second, func() bool { return nodes[2].alive() == 3 && nodes[0].alive() == 3 })
		time.Sleep(time.Duration(seed%10) * 97 * time.Millisecond)
		t0 := time.Now()
		n.Partition([]string{"10.0.0.3"}, []string{"10.0.0.1", "10.0.0.2"})
		waitFor(t, 2*time.Minute, func() bool {
			_, a := nodes[0].first(serf.EventMemberFailed, "s3", t0)
			_, b := nodes[2].first(serf.EventMemberFailed, "s1", t0)
			return a && b
		})
		time.Sleep(time.Duration(seed%5) * time.Second)
		t1 := time.Now()
		n.Heal()
		waitFor(t, 5*time.Minute, func() bool {
			_, a := nodes[0].first(serf.EventMemberJoin, "s3", t1)
			_, b := nodes[2].first(serf.EventMemberJoin, "s1", t1)
			return a && b
		})
		a, _ := nodes[0].first(serf.EventMemberJoin, "s3", t1)
		b, _ := nodes[2].first(serf.EventMemberJoin, "s1", t1)
		rejoin = append(rejoin, a.Sub(t1), b.Sub(t1))
		shutdownSerf(nodes, stop)
	})
	return rejoin
}

// TestSerfPartitionOverSimNet: after a partition heals, serf's members see
// each other again only when a reconnect attempt (every 30 s) succeeds.
func TestSerfPartitionOverSimNet(t *testing.T) {
	var all []time.Duration
	for seed := range uint64(serfSeeds()) {
		r := measureSerfPartition(t, seed+1)
		t.Logf("seed %d: rejoined after %v", seed+1, r)
		all = append(all, r...)
	}
	slices.Sort(all)
	median := all[len(all)/2]
	t.Logf("rejoin: min %v median %v max %v", all[0], median, all[len(all)-1])
	assert.LessOrEqual(t, all[len(all)-1], 90*time.Second, "serf retries failed members every 30 s")
	cfg := DefaultMembershipConfig()
	assert.InDelta(t, (cfg.RejoinMin+cfg.RejoinMax).Seconds()/2, median.Seconds(), 10, "the model's rejoin delay is calibrated against serf")
}
