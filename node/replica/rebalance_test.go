package replica

import (
	"context"
	"errors"
	"log/slog"
	"mailarray/node/fault"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/mirror"
	"mailarray/node/peer"
	"mailarray/node/store"
)

// ringView is a membership a test changes: the live storage nodes (the
// ring) and each one's boot tag.
type ringView struct {
	mu   sync.Mutex
	ring []string
	boot map[string]string
}

var _ Members = (*ringView)(nil)

func newRingView(ring ...string) *ringView {
	v := &ringView{boot: map[string]string{}}
	v.set(ring...)
	for _, n := range ring {
		v.boot[n] = n + "-boot1"
	}
	return v
}

func (v *ringView) set(ring ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ring = ring
}

func (v *ringView) setBoot(name, boot string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.boot[name] = boot
}

func (v *ringView) Table() mirror.Table {
	v.mu.Lock()
	defer v.mu.Unlock()
	ms := make([]env.Member, len(v.ring))
	for i, n := range v.ring {
		ms[i] = env.Member{Name: n, Status: env.StatusAlive, Tags: map[string]string{env.TagRoles: mirror.RoleStore}}
	}
	return mirror.Build(ms, 2)
}

func (v *ringView) Live() []env.Member {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []env.Member
	for _, n := range v.ring {
		out = append(out, env.Member{Name: n, Status: env.StatusAlive, Tags: map[string]string{env.TagBoot: v.boot[n]}})
	}
	return out
}

func (v *ringView) Alive(name string) bool { _, ok := v.Get(name); return ok }

func (v *ringView) Get(name string) (env.Member, bool) {
	for _, m := range v.Live() {
		if m.Name == name {
			return m, true
		}
	}
	return env.Member{}, false
}

// askPeer records rebalance requests and answers HasCopy from a table
// (node -> id -> held; a node absent from it fails the call).
type askPeer struct {
	mu        sync.Mutex
	rebalance []string
	holds     map[string]map[string]bool
}

var _ Peer = (*askPeer)(nil)

func (p *askPeer) Rebalance(_ context.Context, node string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rebalance = append(p.rebalance, node)
	return nil
}

func (p *askPeer) HasCopy(_ context.Context, node, id string) (bool, error) {
	h, ok := p.holds[node]
	if !ok {
		return false, errors.New("unreachable")
	}
	return h[id], nil
}

func (p *askPeer) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.rebalance...)
}

func (*askPeer) PushEntries(context.Context, string, []catalog.Entry) error { return nil }
func (*askPeer) Bucket(context.Context, string, int) ([]catalog.Entry, error) {
	return nil, nil
}
func (*askPeer) Buckets(context.Context, string, peer.Horizon) ([catalog.Buckets]uint64, peer.Horizon, error) {
	return [catalog.Buckets]uint64{}, peer.Horizon{}, nil
}
func (*askPeer) GetEntry(context.Context, string, string) (catalog.Entry, bool, error) {
	return catalog.Entry{}, false, nil
}
func (*askPeer) Abort(context.Context, string, string) (peer.AbortReply, error) {
	return peer.AbortReply{}, nil
}

// newMember is node name's replicator over a real store and catalog, not
// started, with membership v and peer p.
func newMember(t *testing.T, name string, v *ringView, p *askPeer, tn Tuning) *Replicator {
	st, err := store.Open(store.DefaultOptions(filepath.Join(t.TempDir(), "node.db")))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	cat, err := catalog.Open(st, log)
	require.NoError(t, err)
	tn.VerifyPerScan, tn.RebuildPerScan = 256, 512
	return New(Deps{
		Name: name, Replicas: 2, WriteQuorum: 2, Tuning: tn,
		Catalog: cat, Store: st, Members: v, Peer: p, Log: log, Rand: env.NewRand(1),
		Inject: func(fault.Point, string) error { return nil }, Wall: time.Now, Settle: func(string) {},
	})
}

// The lowest-named storage node asks every storage node to rebalance once
// a node returned and membership then stayed still for the settle period;
// a change within it restarts the wait; other nodes only watch.
func TestRebalanceAfterReturnDriver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const settle = time.Minute
		ctx := context.Background()
		v := newRingView("n1", "n2", "n3")
		p1, p2 := &askPeer{}, &askPeer{}
		r1 := newMember(t, "n1", v, p1, Tuning{RebalanceAfterReturn: settle})
		r2 := newMember(t, "n2", v, p2, Tuning{RebalanceAfterReturn: settle})
		pass := func() { r1.watchReturns(ctx); r2.watchReturns(ctx) }

		pass() // the array as found at start: no return
		v.set("n1", "n2")
		pass()
		time.Sleep(2 * settle)
		pass()
		assert.Empty(t, p1.asked(), "a failure alone is rebuild's business")

		v.set("n1", "n2", "n3")
		pass()
		time.Sleep(settle / 2)
		v.setBoot("n2", "n2-boot2") // n2 restarts: a change, and a return
		pass()
		time.Sleep(settle / 2)
		pass()
		assert.Empty(t, p1.asked(), "membership changed within the settle period")
		assert.False(t, r1.rebalance.Load())

		time.Sleep(settle / 2)
		pass()
		assert.Equal(t, []string{"n2", "n3"}, p1.asked(), "n1 drives: every other storage node, in ring order")
		assert.True(t, r1.rebalance.Load(), "and rebalances itself")
		assert.EqualValues(t, 1, r1.Stats().AutoRebalances)
		assert.Empty(t, p2.asked(), "n2 is not the lowest-named: it only watches")
		assert.Zero(t, r2.Stats().AutoRebalances)

		time.Sleep(2 * settle)
		pass()
		assert.Len(t, p1.asked(), 2, "one rebalance per return")
	})
}

// A node that the ring never lost but that restarted (a new boot id)
// returned too; with the setting 0 nothing is watched.
func TestRebalanceAfterReturnRestartAndOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		v := newRingView("n1", "n2")
		on, off := &askPeer{}, &askPeer{}
		r := newMember(t, "n1", v, on, Tuning{RebalanceAfterReturn: time.Second})
		r0 := newMember(t, "n1", v, off, Tuning{})
		pass := func() { r.watchReturns(ctx); r0.watchReturns(ctx) }
		pass()
		v.setBoot("n2", "") // announced before it advertised its boot
		pass()
		v.setBoot("n2", "n2-boot2")
		pass()
		time.Sleep(2 * time.Second)
		pass()
		assert.Equal(t, []string{"n2"}, on.asked())
		assert.Empty(t, off.asked(), "0: off")
		assert.False(t, r0.rebalance.Load())
	})
}

// Orphan cleanup trims a copy of a live entry that no longer lists this
// node only once the entry is OrphanGrace old, and only when enough listed
// holders confirm theirs from their stores.
func TestOrphanTrimConfirmsHolders(t *testing.T) {
	data := []byte("Subject: t\r\n\r\nbody\r\n")
	sum := store.Checksum(data)
	tests := []struct {
		name    string
		holds   map[string]map[string]bool
		trimmed bool
	}{
		{"both holders hold it: trimmed", map[string]map[string]bool{"n1": {"m1": true}, "n2": {"m1": true}}, true},
		{"a holder lacks it: kept", map[string]map[string]bool{"n1": {"m1": true}, "n2": {}}, false},
		{"a holder cannot be asked: kept", map[string]map[string]bool{"n1": {"m1": true}}, false},
	}
	for _, tt := range tests {
		// In a bubble: the grace is passed on the fake clock, not by a
		// wall-clock pause.
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				v := newRingView("n1", "n2", "n3")
				r := newMember(t, "n3", v, &askPeer{holds: tt.holds}, Tuning{OrphanGrace: time.Minute})
				e := catalog.Entry{ID: "m1", Mailbox: "alice@example.com", Size: int64(len(data)), Sum: sum, Locations: []string{"n1", "n2"}, State: catalog.Committed, Version: r.d.Catalog.Now()}
				require.NoError(t, r.d.Store.Write(&store.Batch{PutCopies: []store.Copy{{ID: e.ID, Data: data, Sum: sum}}, PutRecords: r.d.Catalog.Records(e)}))
				r.d.Catalog.Installed(e)
				time.Sleep(time.Minute - time.Second)
				r.CleanOrphans(context.Background())
				require.True(t, r.d.Store.Has(e.ID), "kept within the orphan grace")
				time.Sleep(2 * time.Second) // past the orphan grace
				r.CleanOrphans(context.Background())
				assert.Equal(t, !tt.trimmed, r.d.Store.Has(e.ID), "copy kept")
				assert.Equal(t, map[bool]int64{true: 1, false: 0}[tt.trimmed], r.Stats().TrimmedCopies)
			})
		})
	}
}
