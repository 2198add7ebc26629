package chaos

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/store"
	"mailarray/sim"
)

// TestCheckerCatches proves the checker can fail: one clean run, then for
// each invariant a copy of the run's files (or records) broken behind the
// array's back, and the finding the checker must report. Runs in make test
// (no failpoints needed) and in make chaos.
func TestCheckerCatches(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the simulator")
	}
	clean := mustRunSim(t, Cell{Group: "checker", Name: "clean", Window: Window{0, time.Hour}}, 1)
	res, err := Check(clean.rep, clean.dir)
	require.NoError(t, err)
	require.Empty(t, res.Violations(), "the clean run is clean")
	require.Positive(t, res.Checked, "the clean run has acknowledged mail left")
	t.Logf("clean run: %d acknowledged, %d deleted by readers, %d checked, %d visible, live %v",
		res.Acknowledged, res.ReaderDelete, res.Checked, res.Visible, res.LiveNodes)

	// A committed, acknowledged message no reader touched, and its entry.
	var victim sim.Record
	var entry catalog.Entry
	for _, rec := range clean.rep.Records {
		if rec.Outcome == sim.Accepted && !rec.Deleted && !rec.MaybeDeleted {
			victim = rec
			break
		}
	}
	withFiles(t, clean.dir, res.LiveNodes[0], func(st *store.Store, cat *catalog.Catalog) {
		var ok bool
		entry, ok = cat.Get(victim.CopyID())
		require.True(t, ok)
	})
	require.Len(t, entry.Locations, 2)
	holders := entry.Locations
	other := "" // a live node that holds no copy
	for _, n := range res.LiveNodes {
		if !slices.Contains(holders, n) {
			other = n
		}
	}
	require.NotEmpty(t, other)

	tests := []struct {
		name string
		// breakFiles changes the files of a copy of the run; breakRecords
		// the load generator's records.
		breakFiles   func(t *testing.T, dir string)
		breakRecords func(recs []sim.Record)
		got          func(r *Result) int
	}{
		{
			name: "lost: every copy deleted",
			breakFiles: func(t *testing.T, dir string) {
				for _, h := range holders {
					writeBatch(t, dir, h, &store.Batch{DeleteCopies: []string{victim.CopyID()}})
				}
			},
			got: func(r *Result) int { return r.Lost.Count },
		},
		{
			name: "lost: every copy replaced by other bytes",
			breakFiles: func(t *testing.T, dir string) {
				for _, h := range holders {
					writeBatch(t, dir, h, &store.Batch{PutCopies: []store.Copy{{ID: victim.CopyID(), Data: []byte("Message-ID: <0.1@load.test>\r\n\r\nother\r\n")}}})
				}
			},
			got: func(r *Result) int { return r.Lost.Count },
		},
		{
			name: "under-replicated: one copy deleted",
			breakFiles: func(t *testing.T, dir string) {
				writeBatch(t, dir, holders[1], &store.Batch{DeleteCopies: []string{victim.CopyID()}})
			},
			got: func(r *Result) int { return r.UnderReplicated.Count - r.Lost.Count },
		},
		{
			name: "missing and diverging: one catalog forgets the entry",
			breakFiles: func(t *testing.T, dir string) {
				writeBatch(t, dir, other, &store.Batch{DeleteRecords: []string{victim.CopyID()}})
			},
			got: func(r *Result) int { return min(r.Missing.Count, r.Diverging, r.DivergingIDs.Count) },
		},
		{
			name: "diverging: one catalog has another version",
			breakFiles: func(t *testing.T, dir string) {
				e := entry
				e.Flags = append(slices.Clone(e.Flags), `\Seen`)
				putEntry(t, dir, other, e)
			},
			got: func(r *Result) int { return r.Diverging },
		},
		{
			name: "pending after quiescence",
			breakFiles: func(t *testing.T, dir string) {
				e := entry
				e.State = catalog.Pending
				for _, n := range res.LiveNodes {
					putEntry(t, dir, n, e)
				}
			},
			got: func(r *Result) int { return min(r.Pending.Count, r.Missing.Count) },
		},
		{
			name: "duplicated: the message again in its mailbox",
			breakFiles: func(t *testing.T, dir string) {
				data := readCopy(t, dir, holders[0], victim.CopyID())
				e := entry
				e.ID = victim.ID + "-dup.0"
				for _, h := range holders {
					writeBatch(t, dir, h, &store.Batch{PutCopies: []store.Copy{{ID: e.ID, Data: data}}})
				}
				for _, n := range res.LiveNodes {
					putEntry(t, dir, n, e)
				}
			},
			got: func(r *Result) int { return r.Duplicated.Count },
		},
		{
			name:         "phantom: the transaction was refused",
			breakRecords: func(recs []sim.Record) { recs[victim.Seq].Outcome, recs[victim.Seq].Code = sim.Rejected, 451 },
			got:          func(r *Result) int { return r.Phantom.Count },
		},
		{
			name: "under-quorum: the 250 went out before the second copy was durable",
			breakRecords: func(recs []sim.Record) {
				var last time.Duration
				for _, l := range clean.rep.Ledger[victim.CopyID()] {
					last = max(last, l.Durable)
				}
				recs[victim.Seq].Acked = last - time.Nanosecond
			},
			got: func(r *Result) int { return r.UnderQuorum.Count },
		},
		{
			name: "deleted-unasked: a tombstone no reader asked for",
			breakFiles: func(t *testing.T, dir string) {
				e := entry
				e.State = catalog.Deleted
				putEntry(t, dir, other, e)
			},
			got: func(r *Result) int { return r.DeletedUnasked.Count },
		},
		{
			name: "phantom holder: an entry lists a node that lacks the copy",
			breakFiles: func(t *testing.T, dir string) {
				e := entry
				e.Locations = append(slices.Clone(e.Locations), other)
				for _, n := range res.LiveNodes {
					putEntry(t, dir, n, e)
				}
			},
			got: func(r *Result) int { return r.PhantomHolder.Count },
		},
		{
			// Issue 16's shape: n1, alone, rewrote the entry to list itself,
			// then failed; here a node that never ran ("n9") stands for it.
			name: "under-listed: listed on one live holder of the two wanted",
			breakFiles: func(t *testing.T, dir string) {
				e := entry
				e.Locations = []string{holders[0], "n9"}
				for _, n := range res.LiveNodes {
					putEntry(t, dir, n, e)
				}
			},
			got: func(r *Result) int { return min(r.UnderListed.Count, 1-r.UnlistedCopy.Count) },
		},
		{
			name: "unlisted copy: the entry lists one holder, the other still holds its copy",
			breakFiles: func(t *testing.T, dir string) {
				e := entry
				e.Locations = holders[:1:1]
				for _, n := range res.LiveNodes {
					putEntry(t, dir, n, e)
				}
			},
			got: func(r *Result) int { return min(r.UnlistedCopy.Count, r.UnderListed.Count) },
		},
		{
			name:         "resurrected: a reader deleted it",
			breakRecords: func(recs []sim.Record) { recs[victim.Seq].Deleted = true },
			got:          func(r *Result) int { return r.Resurrected.Count },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyTree(t, clean.dir, dir)
			rep := *clean.rep
			rep.Records = slices.Clone(clean.rep.Records)
			if tc.breakFiles != nil {
				tc.breakFiles(t, dir)
			}
			if tc.breakRecords != nil {
				tc.breakRecords(rep.Records)
			}
			r, err := Check(&rep, dir)
			require.NoError(t, err)
			assert.Positive(t, tc.got(r), "finding not reported; violations: %v", r.Violations())
			assert.NotEmpty(t, r.Violations())
		})
	}
}

// withFiles opens node's store and catalog under dir.
func withFiles(t *testing.T, dir, node string, fn func(*store.Store, *catalog.Catalog)) {
	t.Helper()
	st, err := store.Open(store.Options{Path: filepath.Join(dir, node, storeFile)})
	require.NoError(t, err)
	defer st.Close()
	cat, err := catalog.Open(st, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	fn(st, cat)
}

func writeBatch(t *testing.T, dir, node string, b *store.Batch) {
	t.Helper()
	withFiles(t, dir, node, func(st *store.Store, _ *catalog.Catalog) { require.NoError(t, st.Write(b)) })
}

// putEntry overwrites node's record of e (no merge: behind the catalog's
// back).
func putEntry(t *testing.T, dir, node string, e catalog.Entry) {
	t.Helper()
	writeBatch(t, dir, node, &store.Batch{PutRecords: []store.Record{{ID: e.ID, Value: e.Encode(nil)}}})
}

func readCopy(t *testing.T, dir, node, id string) []byte {
	t.Helper()
	var data []byte
	withFiles(t, dir, node, func(st *store.Store, _ *catalog.Catalog) {
		var err error
		data, err = st.Get(id)
		require.NoError(t, err)
	})
	return data
}

// copyTree copies the node files of a run.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	require.NoError(t, err)
}
