package node

// Draining: taking a node out of the array without ever leaving a message
// with fewer than R copies (issue 18, item 11). `mailarray drain NODE`
// asks the node (through any node's admin API, forwarded over the peer
// API) to
//
//  1. stop being chosen: it takes itself off its own ring and advertises
//     env.TagDraining, so every node leaves it off its ring too (no new
//     copies placed on it, its copies no longer count as live holders) and
//     out of DNS answers; its SMTP listener answers 451 (senders retry
//     another MX) and it refuses copies from peers that have not heard
//     yet (they fall back to the next ring member);
//  2. wait until every message it holds has R copies on the other nodes:
//     the rebuild of each message's first live holder writes the missing
//     copy and drops this node from the entry, and this node hands on the
//     copies no other live node holds (replica.DrainLeft lists what is
//     left; replica.DrainVerify then asks the others' stores);
//  3. leave the array (membership Leave) and report done.
//
// The decision is kept in the store's metadata, so a node restarted while
// draining resumes at start, and asking again is harmless. Draining is
// refused while the rest of the array has fewer than R storage nodes
// (it could not hold R copies, and W follows since W <= R). There is no
// undrain: a drained node comes back with an empty data directory.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"mailarray/node/env"
	"mailarray/node/peer"
)

// Drain states (DrainStatus.State).
const (
	DrainDraining = "draining"
	DrainLeaving  = "leaving" // every message is safe elsewhere; membership Leave under way
	DrainLeft     = "left"
)

// drainMetaKey marks, in the store's metadata, a node asked to drain.
const drainMetaKey = "drain"

// drainPollMin bounds how often a drain looks at its progress.
const drainPollMin = 100 * time.Millisecond

// ErrDrainRefused: draining the node would leave the array unable to hold
// R copies of every message.
var ErrDrainRefused = errors.New("drain refused")

// DrainStatus is a drain's progress, as the drained node reports it.
type DrainStatus struct {
	Node string `json:"node"`
	// State is "" (not draining), DrainDraining, DrainLeaving or
	// DrainLeft.
	State string `json:"state"`
	// Moved counts the messages this node held that now have R copies on
	// the other nodes (since this process started draining); Left those
	// still waiting (not yet rebuilt elsewhere, or pending resolution).
	Moved int `json:"moved"`
	Left  int `json:"left"`
	// Detail says what the drain waits for, when it waits for more than
	// rebuild.
	Detail string `json:"detail,omitempty"`
	Done   bool   `json:"done"`
}

// drainer runs this node's drain.
type drainer struct {
	// gate orders the start of the drain against copies arriving from
	// peers: a copy that passed the check is in the store (and its entry,
	// listing this node, in the catalog) before the drain starts counting.
	gate sync.RWMutex
	on   bool // guarded by gate

	mu   sync.Mutex
	st   DrainStatus         // guarded by mu
	seen map[string]struct{} // messages that needed this node; guarded by mu
}

// draining reports whether this node is draining (or has left).
func (d *drainer) draining() bool {
	d.gate.RLock()
	defer d.gate.RUnlock()
	return d.on
}

func (d *drainer) status() DrainStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

// errDraining refuses a copy sent to a draining node.
var errDraining = errors.New("node: draining: takes no new copies")

// admitCopy runs store (a peer's copy) unless this node is draining.
func (d *drainer) admitCopy(store func() error) error {
	d.gate.RLock()
	defer d.gate.RUnlock()
	if d.on {
		return errDraining
	}
	return store()
}

// Drain starts draining this node (start) or reports its progress. A
// node already draining reports its progress either way.
func (n *Node) Drain(start bool) (DrainStatus, error) {
	if n.drain.draining() || !start {
		st := n.drain.status()
		st.Node = n.conf().Name
		return st, nil
	}
	t := n.members.Table()
	others := 0
	for _, m := range t.Ring {
		if m != n.conf().Name {
			others++
		}
	}
	if others < n.conf().Replicas {
		n.log.Warn("node: drain refused", "other_storage_nodes", others, "replicas", n.conf().Replicas)
		return DrainStatus{Node: n.conf().Name}, fmt.Errorf("%w: the rest of the array has %d live storage nodes, fewer than R=%d copies (W=%d): add a node first",
			ErrDrainRefused, others, n.conf().Replicas, n.conf().WriteQuorum)
	}
	if err := n.store.PutMeta(drainMetaKey, []byte("1")); err != nil {
		return DrainStatus{Node: n.conf().Name}, fmt.Errorf("node: drain: %w", err)
	}
	n.startDrain()
	return n.Drain(false)
}

// newDrainer reads whether a drain was asked before this start. A node
// resuming its drain is off its own ring from the start, and its first
// advertisement already carries the tag: no peer places a copy on it in
// between.
func newDrainer(n *Node) *drainer {
	d := &drainer{}
	if string(n.store.GetMeta(drainMetaKey)) == "1" {
		d.on = true
		n.members.setLeaving()
	}
	return d
}

// resumeDrain continues, at start, a drain that was asked before.
func (n *Node) resumeDrain() {
	if n.drain.draining() {
		n.log.Info("node: resuming the drain asked before the restart")
		n.runDrainFrom()
	}
}

// startDrain takes the node out of placement and DNS and runs the drain.
func (n *Node) startDrain() {
	d := n.drain
	d.gate.Lock()
	was := d.on
	d.on = true
	d.gate.Unlock()
	if was {
		return
	}
	n.log.Info("node: draining: no new mail or copies; waiting for every message it holds to have R copies elsewhere")
	n.members.setLeaving()
	n.onMembership(nil)
	if err := n.advertise(); err != nil {
		n.log.Warn("node: draining not advertised yet", "err", err)
	}
	n.runDrainFrom()
}

// runDrainFrom starts the drain's loop, its progress from zero.
func (n *Node) runDrainFrom() {
	d := n.drain
	d.mu.Lock()
	d.st = DrainStatus{State: DrainDraining, Detail: "starting: first scan under way"}
	d.seen = map[string]struct{}{}
	d.mu.Unlock()
	n.goLoop(n.runDrain)
}

// runDrain waits for the rest of the array to hold every message of this
// node, then leaves the array.
func (n *Node) runDrain(ctx context.Context) {
	d := n.drain
	poll := max(n.conf().Tuning.MaintainEvery/2, drainPollMin)
	for {
		left := n.repl.DrainLeft()
		detail := ""
		if ring := len(n.members.Table().Ring); ring < n.conf().Replicas {
			detail = fmt.Sprintf("waiting: only %d other live storage nodes for R=%d", ring, n.conf().Replicas)
		}
		d.mu.Lock()
		for _, id := range left {
			d.seen[id] = struct{}{}
		}
		d.st.Left, d.st.Moved, d.st.Detail = len(left), len(d.seen)-len(left), detail
		d.mu.Unlock()
		if len(left) == 0 {
			checked, err := n.repl.DrainVerify(ctx)
			if err == nil {
				n.log.Info("node: drain: every message this node holds has R copies on the other nodes", "checked", checked)
				break
			}
			d.mu.Lock()
			d.st.Detail = "verifying the other nodes' copies: " + err.Error()
			d.mu.Unlock()
			n.log.Info("node: drain: not yet", "err", err)
		} else {
			n.log.Info("node: drain progress", "moved", len(d.seen)-len(left), "left", len(left))
		}
		n.repl.TriggerMaintenance()
		select {
		case <-ctx.Done():
			return
		case <-time.After(poll):
		}
	}
	// Hand on the entries this node changed (the copies it passed on)
	// before it goes: the new holders have them already, the others would
	// otherwise wait for anti-entropy.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	n.repl.Flush(fctx)
	cancel()
	d.mu.Lock()
	d.st.State, d.st.Detail = DrainLeaving, "leaving the array"
	d.mu.Unlock()
	if err := n.env.Membership.Leave(); err != nil {
		n.log.Warn("node: drain: leave", "err", err)
	}
	d.mu.Lock()
	d.st.State, d.st.Done, d.st.Detail = DrainLeft, true, ""
	d.mu.Unlock()
	n.log.Info("node: drained: left the array; stop the service now")
}

// DrainNode starts draining node (start) or reports its progress: this
// node itself, or another over the peer API. A node that has left is
// reported done.
func (n *Node) DrainNode(ctx context.Context, node string, start bool) (DrainStatus, error) {
	if node == n.conf().Name {
		return n.Drain(start)
	}
	m, ok := n.members.Get(node)
	switch {
	case !ok:
		return DrainStatus{Node: node}, fmt.Errorf("%w: %q is not a member", errNoMember, node)
	case m.Status == env.StatusLeft:
		return DrainStatus{Node: node, State: DrainLeft, Done: true}, nil
	case m.Status == env.StatusFailed:
		return DrainStatus{Node: node}, fmt.Errorf("%w: %q failed: it cannot drain; rebuild restores its copies from the others (docs/deploy.md, Removing a node)", errNoMember, node)
	}
	var st DrainStatus
	if err := n.peer.Drain(ctx, node, start, &st); err != nil {
		if errors.Is(err, peer.ErrDrainRefused) {
			err = fmt.Errorf("%w: %w", ErrDrainRefused, err)
		}
		return DrainStatus{Node: node}, err
	}
	return st, nil
}

// serveDrain answers the admin API's drain requests: the progress as
// JSON; 409 for a refusal, 404 for a node that is not a live member, 502
// when the node did not answer.
func (n *Node) serveDrain(w http.ResponseWriter, r *http.Request, start bool) {
	st, err := n.DrainNode(r.Context(), r.PathValue("node"), start)
	if err != nil {
		code := http.StatusBadGateway
		switch {
		case errors.Is(err, ErrDrainRefused):
			code = http.StatusConflict
		case errors.Is(err, errNoMember):
			code = http.StatusNotFound
		}
		http.Error(w, err.Error(), code)
		return
	}
	writeJSON(w, st)
}

// errNoMember: the node asked about is not a live member.
var errNoMember = errors.New("no such live member")
