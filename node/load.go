package node

import (
	"context"
	"slices"
	"sync"
	"time"

	"mailarray/node/env"
	"mailarray/node/fault"
	"mailarray/node/strategy"
)

// loadTracker keeps the latest load report of every live member, for the
// strategies that query load (strategy.Info.UsesLoad). It polls each peer's
// GET /v1/load every half of Config.LoadStale (jittered from Env.Rand) and
// samples the local node's Load at the same pace, so that every node works
// from reports of the same age and their DNS answers agree as far as the
// reports do. A report older than LoadStale, or a node that never
// answered, is handed to strategies as unknown: fully loaded.
//
// It also measures the node's recent delivery latency, which Load reports.
type loadTracker struct {
	n     *Node
	stale time.Duration
	every time.Duration

	mu      sync.RWMutex
	reports map[string]loadReport // by node name

	latMu    sync.Mutex
	latMs    float64 // EWMA of delivery latency
	latValid bool
}

// loadReport is one node's load and when this node received it. Staleness
// is judged on the receiver's clock, so clock skew between nodes does not
// make a fresh report look stale or a stale one fresh.
type loadReport struct {
	load Load
	at   time.Time
}

const (
	// latencyAlpha is the weight of the newest sample in the latency
	// EWMA: about the last ten deliveries count.
	latencyAlpha = 0.2
	// loadPollJitter spreads the nodes' poll rounds apart (fraction of the
	// interval).
	loadPollJitter = 0.2
)

func newLoadTracker(n *Node) *loadTracker {
	return &loadTracker{n: n, stale: n.conf().LoadStale, every: n.conf().LoadStale / 2, reports: map[string]loadReport{}}
}

// start polls until ctx ends, when a configured strategy reads loads.
// Otherwise it does nothing: no strategy would read the reports, and the
// simulator is spared the traffic.
func (l *loadTracker) start(ctx context.Context, wg *sync.WaitGroup, needed bool) {
	if !needed {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(0) // a first round at once: until then every peer is unknown
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				// Rounds start every interval whatever their length (a
				// round takes at most half of it): a report is then at
				// most 1.2 + 0.5 intervals old, within LoadStale, when the
				// next one lands.
				next := time.Now().Add(l.n.env.Rand.Jitter(l.every, loadPollJitter))
				l.poll(ctx)
				t.Reset(time.Until(next))
			}
		}
	}()
}

// poll runs one round: the local sample, then every live peer in
// parallel, each bounded by half the poll interval (a peer slower than
// that to report its load is as good as loaded). Each report is published
// as it lands.
func (l *loadTracker) poll(ctx context.Context) {
	live := l.n.members.Live()
	l.prune(live)
	l.put(l.n.conf().Name, loadReport{load: l.n.Load(), at: time.Now()})
	ctx, cancel := context.WithTimeout(ctx, l.every/2)
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range live {
		if m.Name == l.n.conf().Name || m.Tags[env.TagPeer] == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ld Load
			err := l.n.peer.Load(ctx, m.Name, &ld)
			if err == nil {
				// The peer's report is lost on the way back.
				err = l.n.env.Inject(fault.LoadQuery, l.n.conf().Name)
			}
			if err != nil || ld.Node != m.Name {
				if ctx.Err() == nil {
					l.n.log.Debug("node: load query failed", "peer", m.Name, "err", err)
				}
				return
			}
			l.put(m.Name, loadReport{load: ld, at: time.Now()})
		}()
	}
	wg.Wait()
}

func (l *loadTracker) put(node string, r loadReport) {
	l.mu.Lock()
	l.reports[node] = r
	l.mu.Unlock()
}

// prune forgets the reports of nodes that are no longer live members; a
// live peer that stops answering keeps its last report, which goes stale.
func (l *loadTracker) prune(live []env.Member) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name := range l.reports {
		if !slices.ContainsFunc(live, func(m env.Member) bool { return m.Name == name }) {
			delete(l.reports, name)
		}
	}
}

// get is what strategies know of node's load at now.
func (l *loadTracker) get(node string, now time.Time) strategy.Load {
	l.mu.RLock()
	r, ok := l.reports[node]
	l.mu.RUnlock()
	if !ok || now.Sub(r.at) > l.stale {
		return strategy.Load{} // unknown: fully loaded
	}
	return strategy.Load{
		Known:         true,
		Sessions:      r.load.SMTPSessions,
		Queue:         r.load.PushQueue,
		LatencyMs:     r.load.LatencyMs,
		FreeDiskBytes: r.load.FreeDiskBytes,
	}
}

// observe adds one delivery's duration to the latency EWMA.
func (l *loadTracker) observe(d time.Duration) {
	ms := float64(d) / float64(time.Millisecond)
	l.latMu.Lock()
	if l.latValid {
		l.latMs += latencyAlpha * (ms - l.latMs)
	} else {
		l.latMs, l.latValid = ms, true
	}
	l.latMu.Unlock()
}

// latencyMs is the recent delivery latency, 0 before the first delivery.
func (l *loadTracker) latencyMs() float64 {
	l.latMu.Lock()
	defer l.latMu.Unlock()
	return l.latMs
}
