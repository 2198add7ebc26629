package node

// Readiness: whether this node can do its job, judged by the node itself
// and published to the array (issue 18, item 6). A node is ready when
//
//  1. it reaches a write quorum: at least W storage nodes of its mirroring
//     ring, itself included, answered its last peer request (a GET
//     /v1/load probe every Tuning.ReadyProbeEvery), and
//  2. its catalog is in sync: when the ring holds other members, it has
//     completed at least one anti-entropy round with one of them since it
//     started (alone, it is the array and in sync by definition).
//
// A node that is not ready answers /readyz with 503 and the reason,
// advertises env.TagReady "0" so that every node's DNS answers leave it
// out (dnsSource.Nodes, readyOnly), logs the reason once per change, and
// reports it in Status and in the mailarray_ready metric. A node whose
// peer certificate is from another CA is the case this was built for:
// every peer refuses its requests, so it reaches only itself.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"mailarray/node/ddns"
	"mailarray/node/env"
)

// Reasons a node is not ready (the reason label of mailarray_ready).
const (
	ReadyOK           = "ok"
	ReadyStarting     = "starting"           // not judged yet
	ReadyNoQuorum     = "no_write_quorum"    // fewer than W storage nodes answer
	ReadyCatalogStale = "catalog_not_synced" // no anti-entropy round with a peer since start
)

const (
	// readyErrMaxBytes bounds each peer's error in NotAnswering.
	readyErrMaxBytes = 160
	// readyProbeTimeoutMin is the least time a probe may take: a peer
	// slowed by load (a loaded machine, a GC pause) is not unreachable,
	// and readiness that flaps takes nodes in and out of DNS answers.
	readyProbeTimeoutMin = 3 * time.Second
	// readyRetryMin bounds how often a node that is not ready probes.
	readyRetryMin = 50 * time.Millisecond
)

// ReadyState is the node's readiness as last judged.
type ReadyState struct {
	Ready bool `json:"ready"`
	// Reason is ReadyOK or one of the Ready* reasons it is not.
	Reason string `json:"reason"`
	// Detail says why in words (also on the unauthenticated /readyz:
	// it names no peer).
	Detail string `json:"detail,omitempty"`
	// NotAnswering lists the ring peers that did not answer the last
	// probe, each with its error ("n1 (remote error: ...)"), for status
	// and the log.
	NotAnswering []string `json:"not_answering,omitempty"`
	// Reachable counts the storage nodes, itself included, that answered
	// the last probe; WriteQuorum is how many a write needs.
	Reachable   int `json:"reachable_storage_nodes"`
	WriteQuorum int `json:"write_quorum"`
}

// readyInput is what the readiness rule looks at.
type readyInput struct {
	self        string
	ring        []string         // the mirroring ring (storage nodes), sorted
	writeQuorum int              // W
	probes      map[string]error // last probe of each other ring member; absent: not probed yet
	synced      bool             // an anti-entropy round with some peer completed since start
}

// judgeReady applies the readiness rule (see the top of this file).
func judgeReady(in readyInput) ReadyState {
	st := ReadyState{WriteQuorum: in.writeQuorum}
	var down []string
	others := 0
	for _, m := range in.ring {
		if m == in.self {
			st.Reachable++
			continue
		}
		others++
		err, probed := in.probes[m]
		switch {
		case !probed:
			down = append(down, m+" (not probed yet)")
		case err != nil:
			e := err.Error()
			if len(e) > readyErrMaxBytes {
				e = e[:readyErrMaxBytes] + "..."
			}
			down = append(down, m+" ("+e+")")
		default:
			st.Reachable++
		}
	}
	if st.Reachable < in.writeQuorum {
		st.Reason = ReadyNoQuorum
		st.Detail = fmt.Sprintf("%d of the %d storage nodes a write needs answer (itself included)", st.Reachable, in.writeQuorum)
		st.NotAnswering = down
		return st
	}
	if others > 0 && !in.synced {
		st.Reason = ReadyCatalogStale
		st.Detail = "no anti-entropy round with a peer has completed since start: the catalog may miss messages"
		return st
	}
	st.Ready, st.Reason = true, ReadyOK
	return st
}

// readiness probes the peers and keeps the node's judgement.
type readiness struct {
	n    *Node
	kick chan struct{} // a membership change: judge again now

	mu    sync.Mutex
	state ReadyState // guarded by mu
}

func newReadiness(n *Node) *readiness {
	return &readiness{n: n, kick: make(chan struct{}, 1), state: ReadyState{Reason: ReadyStarting, Detail: "starting", WriteQuorum: n.conf().WriteQuorum}}
}

// State is the last judgement.
func (r *readiness) State() ReadyState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// tag is the value of env.TagReady the node advertises.
func (r *readiness) tag() string {
	if r.State().Ready {
		return "1"
	}
	return "0"
}

// changed asks for a new judgement at once (membership changed): a node
// that was alone must not wait a whole probe interval to count the peers
// that just joined.
func (r *readiness) changed() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run judges readiness every Tuning.ReadyProbeEvery (a tenth of it while
// not ready), the first time at once, and after each membership change,
// until ctx ends.
func (r *readiness) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
			t.Stop()
		}
		every := r.n.conf().Tuning.ReadyProbeEvery // at each turn: a reload may change it
		r.round(ctx, max(every, readyProbeTimeoutMin))
		if r.State().Ready {
			t.Reset(every)
		} else {
			// Not ready: look again soon. At start the peers may not be
			// listening yet, and each interval spent not ready is one
			// out of the DNS answers.
			t.Reset(max(every/10, readyRetryMin))
		}
	}
}

// round probes every other ring member (in parallel, each bounded by
// timeout), runs a first anti-entropy round if none has completed yet,
// then judges and publishes a change.
func (r *readiness) round(ctx context.Context, timeout time.Duration) {
	n := r.n
	ring := n.members.Table().Ring
	probes := make(map[string]error, len(ring))
	var mu sync.Mutex
	var wg sync.WaitGroup
	pctx, cancel := context.WithTimeout(ctx, timeout)
	for _, m := range ring {
		if m == n.conf().Name {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := n.probePeer(pctx, m)
			mu.Lock()
			probes[m] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	cancel()
	if ctx.Err() != nil {
		return
	}
	synced := n.repl.SyncedSinceStart()
	if !synced {
		// Do not wait for the anti-entropy loop's random pick: compare
		// catalogs now with the first peer that answered.
		for _, m := range ring {
			if err, ok := probes[m]; ok && err == nil {
				// Bounded like the probes: a round that hangs must not
				// keep the node's readiness unjudged (and out of DNS).
				sctx, scancel := context.WithTimeout(ctx, timeout)
				err := n.repl.SyncWith(sctx, m)
				scancel()
				if err != nil {
					n.log.Debug("node: first anti-entropy round failed", "peer", m, "err", err)
				}
				synced = n.repl.SyncedSinceStart()
				break
			}
		}
	}
	st := judgeReady(readyInput{self: n.conf().Name, ring: ring, writeQuorum: n.conf().WriteQuorum, probes: probes, synced: synced})
	r.mu.Lock()
	prev := r.state
	r.state = st
	r.mu.Unlock()
	if prev.Ready == st.Ready && prev.Reason == st.Reason {
		return
	}
	if st.Ready {
		n.log.Info("node: ready", "reachable_storage_nodes", st.Reachable, "write_quorum", st.WriteQuorum)
	} else {
		n.log.Warn("node: not ready", "reason", st.Reason, "detail", st.Detail, "not_answering", strings.Join(st.NotAnswering, "; "))
	}
	if prev.Ready != st.Ready {
		if err := n.advertise(); err != nil {
			n.log.Warn("node: readiness not advertised", "err", err)
		}
	}
}

// probePeer asks peer for its load report: any request the peer API
// answers proves the peer takes this node's requests (same transport,
// authentication and certificates as a write). The one call into the
// peer client, kept here so the client's move to node/peer changes one
// line (there: n.peer.Load(ctx, peer, &ld)).
func (n *Node) probePeer(ctx context.Context, peer string) error {
	if n.peer == nil {
		return errors.New("node: no peer API client")
	}
	var ld Load
	if err := n.peer.Load(ctx, peer, &ld); err != nil {
		return err
	}
	if ld.Node != peer {
		return fmt.Errorf("answered as %q", ld.Node)
	}
	return nil
}

// readyOnly leaves out of a DNS answer's candidates the members that
// advertise not ready. The rule, for every node's DNS server alike:
//   - node names (RoleAny) are never filtered: an operator asking for one
//     node by name gets it;
//   - otherwise members advertising env.TagDraining "1" are left out,
//     and so are those advertising env.TagReady "0";
//   - if that leaves none (a lone node that cannot be ready, an array
//     that is starting or lost its quorum everywhere), the answer keeps
//     every live candidate: a listener that may answer 451 is no worse
//     than no answer, and names must not vanish while an array forms.
//     The minority rule of dnsSource.Nodes (SERVFAIL for SMTP when this
//     node sees fewer than W storage nodes) still applies first.
func readyOnly(role string, ms []env.Member) []env.Member {
	if role == ddns.RoleAny {
		return ms
	}
	// A draining node is leaving for good: never an answer, not even the
	// last resort (drain.go).
	ms = slices.DeleteFunc(slices.Clone(ms), func(m env.Member) bool { return m.Tags[env.TagDraining] == "1" })
	out := slices.DeleteFunc(slices.Clone(ms), func(m env.Member) bool { return m.Tags[env.TagReady] == "0" })
	if len(out) == 0 {
		return ms
	}
	return out
}
