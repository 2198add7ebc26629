package replica

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/fault"
	"mailarray/node/mirror"
	"mailarray/node/store"
)

// loneView is the membership of an array of one node, n1: a real, fixed
// view (the root package's memberView of a lone node says the same).
type loneView struct{}

var _ Members = loneView{}

func (loneView) Table() mirror.Table    { return mirror.Table{Version: 1, R: 2, Ring: []string{"n1"}} }
func (loneView) Live() []env.Member     { return []env.Member{{Name: "n1", Status: env.StatusAlive}} }
func (loneView) Alive(name string) bool { return name == "n1" }
func (loneView) Get(name string) (env.Member, bool) {
	if name != "n1" {
		return env.Member{}, false
	}
	return env.Member{Name: "n1", Status: env.StatusAlive}, true
}

// newLone is the replicator of node n1, alone and not started, over a real
// store and catalog: its verifier's decisions can be driven step by step.
// It has no peer: alone, it never asks one.
func newLone(t *testing.T) *Replicator {
	st, err := store.Open(store.DefaultOptions(filepath.Join(t.TempDir(), "node.db")))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	cat, err := catalog.Open(st, log)
	require.NoError(t, err)
	return New(Deps{
		Name: "n1", Replicas: 2, WriteQuorum: 2, Tuning: Tuning{VerifyPerScan: 256},
		Catalog: cat, Store: st, Members: loneView{}, Log: log, Rand: env.NewRand(1),
		Inject: func(fault.Point, string) error { return nil }, Wall: time.Now, Settle: func(string) {},
	})
}

// takeQueue empties the verifier's queue and returns what it held.
func takeQueue(v *verifier) map[string]struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	q := v.queue
	v.queue = map[string]struct{}{}
	return q
}

func TestVerifierDecisions(t *testing.T) {
	data := []byte("Subject: x\r\n\r\nbody\r\n")
	sum := store.Checksum(data)
	tests := []struct {
		name     string
		state    catalog.State
		locs     []string
		copy     string // "", "good" or "corrupt"
		wantLocs []string
		missing  int64
		lost     int
	}{
		{"missing copy: republished without this node", catalog.Committed, []string{"n1", "n2"}, "", []string{"n2"}, 1, 0},
		{"damaged copy: republished without this node", catalog.Committed, []string{"n2", "n1"}, "corrupt", []string{"n2"}, 1, 0},
		{"copy present: nothing", catalog.Committed, []string{"n1", "n2"}, "good", []string{"n1", "n2"}, 0, 0},
		{"pending: not checked (its copies are on their way)", catalog.Pending, []string{"n1", "n2"}, "", []string{"n1", "n2"}, 0, 0},
		{"last holder: kept and reported lost", catalog.Committed, []string{"n1"}, "", []string{"n1"}, 0, 1},
		{"not listed here: nothing", catalog.Committed, []string{"n2", "n3"}, "", []string{"n2", "n3"}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newLone(t)
			e := catalog.Entry{ID: "m1", Mailbox: "alice@example.com", Size: int64(len(data)), Sum: sum, Locations: tt.locs, State: tt.state, Version: r.d.Catalog.Now()}
			b := &store.Batch{PutRecords: r.d.Catalog.Records(e)}
			if tt.copy != "" {
				b.PutCopies = []store.Copy{{ID: e.ID, Data: data, Sum: sum}}
			}
			require.NoError(t, r.d.Store.Write(b))
			r.d.Catalog.Installed(e)
			if tt.copy == "corrupt" {
				require.NoError(t, r.d.Store.Corrupt(e.ID))
			}
			r.verify.checkQueued(context.Background())
			r.verify.checkSome(context.Background())
			got, ok := r.d.Catalog.Get(e.ID)
			require.True(t, ok)
			assert.Equal(t, tt.wantLocs, got.Locations, "locations after the check")
			assert.Equal(t, tt.state, got.State, "state untouched")
			if slices.Equal(tt.wantLocs, tt.locs) {
				assert.Equal(t, e.Version, got.Version, "no new version")
			} else {
				assert.Greater(t, got.Version, e.Version, "a new version, so every replica takes it")
			}
			vs := r.VerifyStatus()
			assert.Equal(t, tt.missing, vs.Missing, "missing counted")
			assert.Equal(t, tt.lost, vs.Lost, "lost reported")
		})
	}
}

// The catalog hook queues a changed entry that lists this node only when
// the copy is absent, and the start pass finds what the hook never saw.
func TestVerifierHookAndStartPass(t *testing.T) {
	r := newLone(t)
	data := []byte("Subject: y\r\n\r\nbody\r\n")
	sum := store.Checksum(data)
	with := catalog.Entry{ID: "a1", Mailbox: "alice@example.com", Sum: sum, Locations: []string{"n1", "n2"}, State: catalog.Committed, Version: r.d.Catalog.Now()}
	require.NoError(t, r.d.Store.Write(&store.Batch{PutCopies: []store.Copy{{ID: with.ID, Data: data, Sum: sum}}, PutRecords: r.d.Catalog.Records(with)}))
	r.d.Catalog.Installed(with)
	without := catalog.Entry{ID: "a2", Mailbox: "alice@example.com", Sum: sum, Locations: []string{"n2", "n1"}, State: catalog.Committed, Version: r.d.Catalog.Now()}
	_, err := r.d.Catalog.Apply(without)
	require.NoError(t, err)
	assert.Equal(t, map[string]struct{}{"a2": {}}, takeQueue(r.verify), "only the entry whose copy is absent is queued")

	r.verify.checkAll(context.Background())
	got, _ := r.d.Catalog.Get("a2")
	assert.Equal(t, []string{"n2"}, got.Locations, "the start pass unlists this node")
	got, _ = r.d.Catalog.Get("a1")
	assert.Equal(t, []string{"n1", "n2"}, got.Locations)
	assert.Equal(t, int64(1), r.VerifyStatus().Missing)
}

// Orphan cleanup's deletes are rechecked: an entry that came to list this
// node again between cleanup's scan and its delete is unlisted at once.
func TestVerifierRecheckAfterOrphanCleanup(t *testing.T) {
	r := newLone(t)
	data := []byte("Subject: z\r\n\r\nbody\r\n")
	sum := store.Checksum(data)
	e := catalog.Entry{ID: "o1", Mailbox: "alice@example.com", Sum: sum, Locations: []string{"n2", "n1"}, State: catalog.Committed, Version: r.d.Catalog.Now()}
	require.NoError(t, r.d.Store.Write(&store.Batch{PutCopies: []store.Copy{{ID: e.ID, Data: data, Sum: sum}}, PutRecords: r.d.Catalog.Records(e)}))
	r.d.Catalog.Installed(e)
	require.NoError(t, r.d.Store.Write(&store.Batch{DeleteCopies: []string{e.ID}})) // cleanup's delete, decided earlier
	r.verify.recheck([]string{e.ID, "unknown"})
	r.verify.checkQueued(context.Background())
	got, _ := r.d.Catalog.Get(e.ID)
	assert.Equal(t, []string{"n2"}, got.Locations)
}
