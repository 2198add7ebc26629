package realsoak

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node"
	"mailarray/node/catalog"
	"mailarray/node/store"
	"mailarray/sim"
)

// TestNewPlan: a run's fault is a function of its seed, consecutive seeds
// cover every kind, every node is a target, and the times fit the load.
func TestNewPlan(t *testing.T) {
	const load = 10 * time.Second
	kinds := map[Kind]int{}
	nodes := map[string]int{}
	crash := 0
	for seed := uint64(1); seed <= 300; seed++ {
		p := NewPlan(seed, load)
		assert.Equal(t, p, NewPlan(seed, load), "seed %d: not repeatable", seed)
		kinds[p.Kind]++
		nodes[p.Node]++
		assert.GreaterOrEqual(t, p.At, 500*time.Millisecond, "seed %d: %s", seed, p)
		assert.LessOrEqual(t, p.At, load, "seed %d: %s", seed, p)
		switch p.Kind {
		case KindKill, KindPause:
			assert.Positive(t, p.Down, "seed %d: %s", seed, p)
		case KindRestore:
			assert.GreaterOrEqual(t, p.At-p.BackupAt, 3*time.Second, "seed %d: the restore must come after mail the backup lacks: %s", seed, p)
			if p.Crash {
				crash++
			}
		default:
			t.Errorf("seed %d: kind %q", seed, p.Kind)
		}
	}
	for _, k := range Kinds {
		assert.Equal(t, 100, kinds[k], "kind %s", k)
	}
	for _, n := range nodeNames {
		assert.Greater(t, nodes[n], 50, "node %s is rarely a target", n)
	}
	assert.True(t, crash > 25 && crash < 75, "restores by SIGKILL: %d of 100", crash)
}

// TestJudge: every POP3 rule of the read check can fail, and a clean
// mailbox passes (bare CRs the load sends are not a finding).
func TestJudge(t *testing.T) {
	const seed = 9
	rep := &sim.Report{Seed: seed, Config: sim.Scenario{Mailboxes: 1, Domain: "example.com"}}
	add := func(o sim.Outcome, size int, deleted bool) *sim.Record {
		rec := sim.Record{Seq: len(rep.Records), ID: "tx" + string(rune('a'+len(rep.Records))), Mailbox: "user1@example.com", Size: size, Outcome: o, Deleted: deleted}
		rep.Records = append(rep.Records, rec)
		return &rep.Records[len(rep.Records)-1]
	}
	ok := add(sim.Accepted, 1000, false)
	// A body cut between CR and LF: the server stores CR CR LF as CR CR CR LF.
	var bareCR *sim.Record
	for size := 600; ; size++ {
		rec := sim.Record{Seq: 1, Mailbox: "user1@example.com", Size: size}
		if bytes.HasSuffix(sim.LoadMessage(&rec, seed), []byte("\r\r\n")) {
			bareCR = add(sim.Accepted, size, false)
			break
		}
	}
	deleted := add(sim.Accepted, 1000, true)
	refused := add(sim.Rejected, 1000, false)
	failed := add(sim.Failed, 1000, false)
	missing := add(sim.Accepted, 1000, false)

	served := func(rec *sim.Record) popMessage {
		data := append([]byte("Received: from x\r\n\tby n1; now\r\n"), sim.LoadMessage(rec, seed)...)
		return popMessage{uid: rec.ID + ".0", data: data}
	}
	crcrcr := served(bareCR)
	crcrcr.data = append(bytes.TrimSuffix(crcrcr.data, []byte("\r\r\n")), "\r\r\r\n"...)
	corrupt := served(ok)
	corrupt.data[len(corrupt.data)-5] ^= 1
	otherTx := served(ok)
	otherTx.uid = "txz.0"

	tests := []struct {
		name string
		msgs []popMessage
		got  func(r *ReadResult) int
		want int
	}{
		{"clean", []popMessage{served(ok), crcrcr, served(failed), served(missing)}, func(r *ReadResult) int { return len(violations(r)) }, 0},
		{"unacknowledged but visible is allowed", []popMessage{served(ok), crcrcr, served(failed), served(missing)}, func(r *ReadResult) int { return r.Unacked }, 1},
		{"unreadable", []popMessage{served(ok), crcrcr}, func(r *ReadResult) int { return r.Unreadable.Count }, 1},
		{"duplicated", []popMessage{served(ok), served(ok), crcrcr, served(missing)}, func(r *ReadResult) int { return r.Duplicated.Count }, 1},
		{"under another transaction", []popMessage{otherTx, crcrcr, served(missing)}, func(r *ReadResult) int { return r.Duplicated.Count }, 1},
		{"refused visible", []popMessage{served(ok), crcrcr, served(missing), served(refused)}, func(r *ReadResult) int { return r.Phantom.Count }, 1},
		{"not of the load", []popMessage{served(ok), crcrcr, served(missing), {uid: "x", data: []byte("Subject: hi\r\n\r\nhi\r\n")}}, func(r *ReadResult) int { return r.Phantom.Count }, 1},
		{"deleted visible", []popMessage{served(ok), crcrcr, served(missing), served(deleted)}, func(r *ReadResult) int { return r.Resurrected.Count }, 1},
		{"corrupt", []popMessage{corrupt, crcrcr, served(missing)}, func(r *ReadResult) int { return r.Corrupt.Count }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One node serves msgs; the others serve the clean mailbox.
			res := &ReadResult{}
			seen := map[string]map[int]int{}
			for _, name := range nodeNames {
				seen[name] = map[int]int{}
				msgs := []popMessage{served(ok), crcrcr, served(missing)}
				if name == "n2" {
					msgs = tc.msgs
				}
				for _, m := range msgs {
					judge(res, rep, name, "user1@example.com", m, seen[name])
				}
			}
			tallySeen(res, rep, seen)
			assert.Equal(t, tc.want, tc.got(res), "got %+v", res)
		})
	}
}

// violations lists the read check's findings, for tests.
func violations(r *ReadResult) []string {
	run := &RunResult{Read: r}
	return run.Violations()
}

// TestQuiet: each condition of quiescence holds the array back.
func TestQuiet(t *testing.T) {
	st := func(name string, mut func(*nodeStatus)) *nodeStatus {
		s := &nodeStatus{Node: name, CatalogDigest: "d", Entries: map[string]int{"committed": 3}}
		for _, n := range nodeNames {
			s.Members = append(s.Members, node.MemberStatus{Name: n, Status: "alive"})
		}
		if mut != nil {
			mut(s)
		}
		return s
	}
	assert.Empty(t, quiet([]*nodeStatus{st("n1", nil), st("n2", nil), st("n3", nil)}))
	for name, mut := range map[string]func(*nodeStatus){
		"failed":     func(s *nodeStatus) { s.Members[0].Status = "failed" },
		"pending":    func(s *nodeStatus) { s.Entries["pending"] = 1 },
		"under":      func(s *nodeStatus) { s.UnderReplicated = 2 },
		"push queue": func(s *nodeStatus) { s.Load.PushQueue = 1 },
		"digests":    func(s *nodeStatus) { s.CatalogDigest = "e" },
	} {
		assert.NotEmpty(t, quiet([]*nodeStatus{st("n1", nil), st("n2", mut), st("n3", nil)}), name)
	}
}

// TestPhantomHolders: a committed entry listing a node whose store lacks
// the copy (a restored backup) is found; a copy that is there is not.
func TestPhantomHolders(t *testing.T) {
	dir := t.TempDir()
	data := []byte("Subject: x\r\n\r\nbody\r\n")
	good := catalog.Entry{ID: "good.0", Mailbox: "user1@example.com", Sum: store.Checksum(data), Locations: []string{"n1", "n3"}, State: catalog.Committed, Version: 1}
	bad := catalog.Entry{ID: "bad.0", Mailbox: "user1@example.com", Sum: store.Checksum(data), Locations: []string{"n1", "n2"}, State: catalog.Committed, Version: 1}
	for _, name := range nodeNames {
		st, err := store.Open(store.Options{Path: filepath.Join(dir, name, storeFile)})
		require.NoError(t, err)
		b := &store.Batch{PutRecords: []store.Record{{ID: good.ID, Value: good.Encode(nil)}, {ID: bad.ID, Value: bad.Encode(nil)}}}
		if name != "n2" {
			b.PutCopies = []store.Copy{{ID: good.ID, Data: data}, {ID: bad.ID, Data: data}}
		}
		require.NoError(t, st.Write(b))
		require.NoError(t, st.Close())
	}
	f, err := phantomHolders(dir)
	require.NoError(t, err)
	assert.Equal(t, Finding{Count: 1, IDs: []string{"bad.0@n2"}}, f)
}

// TestMarkdown: the report names the failing seed with its replay command
// and counts per kind.
func TestMarkdown(t *testing.T) {
	s := &Summary{FirstSeed: 1, Wall: time.Minute, Runs: []*RunResult{
		{Plan: NewPlan(1, 10*time.Second), Accepted: 10, Read: &ReadResult{}, Wall: 30 * time.Second},
		{Plan: NewPlan(2, 10*time.Second), Accepted: 12, Read: &ReadResult{}, PhantomHolders: Finding{Count: 3, IDs: []string{"a.0@n1"}}, Wall: 30 * time.Second},
	}}
	md := string(s.Markdown(DefaultConfig(), "make soak-real RUNS=2", "make soak-real RUNS=1 SEED=%d"))
	assert.Contains(t, md, "**FAIL**: 1 of 2 runs failed")
	assert.Contains(t, md, "make soak-real RUNS=1 SEED=2")
	assert.Contains(t, md, "| restore | 1 | 1 | 12 | 0 | 0 | 0 | 0 | 3 |")
	assert.False(t, strings.Contains(md, "SEED=1`"), "a passing seed is not listed as a failure")
}
