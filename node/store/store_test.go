package store

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func open(t testing.TB) *Store {
	s, err := Open(DefaultOptions(filepath.Join(t.TempDir(), "node.db")))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestWriteGetDelete(t *testing.T) {
	s := open(t)
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "a", Data: []byte("hello")}}, PutRecords: []Record{{ID: "a", Value: []byte("e1")}}}))
	got, err := s.Get("a")
	require.NoError(t, err)
	assert.Equal(t, "hello", string(got))
	assert.True(t, s.Has("a"))
	_, err = s.Get("b")
	assert.ErrorIs(t, err, ErrNotFound)
	var recs []string
	require.NoError(t, s.Records(func(id string, v []byte) error { recs = append(recs, id+"="+string(v)); return nil }))
	assert.Equal(t, []string{"a=e1"}, recs)
	require.NoError(t, s.Write(&Batch{DeleteCopies: []string{"a"}, DeleteRecords: []string{"a"}}))
	assert.False(t, s.Has("a"))
	st, err := s.Stats()
	require.NoError(t, err)
	assert.Equal(t, 0, st.Copies)
	assert.Equal(t, 0, st.Records)
}

func TestChecksumDetectsCorruption(t *testing.T) {
	s := open(t)
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "m", Data: []byte("payload")}}}))
	require.NoError(t, s.Corrupt("m"))
	_, err := s.Get("m")
	assert.ErrorIs(t, err, ErrCorrupt)
}

func TestMergeRecordKeepsTheWinner(t *testing.T) {
	s := open(t)
	// Merge keeps the larger value: concurrent writers of one record in any
	// order end with the maximum.
	maxMerge := func(v string) Record {
		return Record{ID: "k", Value: []byte(v), Merge: func(old []byte) []byte {
			if old != nil && string(old) >= v {
				return nil
			}
			return []byte(v)
		}}
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			assert.NoError(t, s.Write(&Batch{PutRecords: []Record{maxMerge(fmt.Sprintf("v%03d", i))}}))
		}(i)
	}
	wg.Wait()
	require.NoError(t, s.Records(func(id string, v []byte) error {
		assert.Equal(t, "v049", string(v))
		return nil
	}))
}

func TestDurableAcrossReopen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "node.db")
	s, err := Open(DefaultOptions(p))
	require.NoError(t, err)
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "x", Data: []byte("kept")}}}))
	require.NoError(t, s.Close())
	s, err = Open(DefaultOptions(p))
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Get("x")
	require.NoError(t, err)
	assert.Equal(t, "kept", string(got))
}

func TestOpenTimesOutWhileLocked(t *testing.T) {
	p := filepath.Join(t.TempDir(), "node.db")
	s, err := Open(DefaultOptions(p))
	require.NoError(t, err)
	defer s.Close()
	o := DefaultOptions(p)
	o.OpenTimeout = 50 * time.Millisecond
	_, err = Open(o)
	assert.Error(t, err, "a second open of a held file fails instead of hanging")
}

// BenchmarkWrite4KiBConcurrent measures durable group commit: 4 KiB copies
// with their catalog records from 32 concurrent writers, fsync on.
func BenchmarkWrite4KiBConcurrent(b *testing.B) {
	s := open(b)
	data := make([]byte, 4096)
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("%012d", n.Add(1))
			if err := s.Write(&Batch{PutCopies: []Copy{{ID: id, Data: data}}, PutRecords: []Record{{ID: id, Value: data[:120]}}}); err != nil {
				b.Error(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}

// payload is n deterministic bytes that differ with seed.
func payload(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31 + i*7)
	}
	return b
}

func TestCopiesOfEverySize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	s, err := Open(DefaultOptions(path))
	require.NoError(t, err)
	// Less than a page, most of one, two, many.
	sizes := map[string]int{"small": 10, "page": 3000, "two": 5000, "big": 100 << 10}
	for id, n := range sizes {
		require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: id, Data: payload(n, n)}}}))
	}
	// A rewrite replaces the bytes.
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "two", Data: payload(1, 4500)}}}))
	sizes["two"] = 4500
	require.NoError(t, s.Close())

	s, err = Open(DefaultOptions(path))
	require.NoError(t, err)
	defer s.Close()
	var ids []string
	require.NoError(t, s.CopyIDs(func(id string) bool { ids = append(ids, id); return true }))
	assert.Equal(t, []string{"big", "page", "small", "two"}, ids)
	for id, n := range sizes {
		data, err := s.Get(id)
		require.NoError(t, err, id)
		want := payload(n, n)
		if id == "two" {
			want = payload(1, n)
		}
		assert.Equal(t, want, data, id)
	}
	st, err := s.Stats()
	require.NoError(t, err)
	assert.Equal(t, 4, st.Copies)
	assert.Equal(t, int64(10+3000+4500+100<<10), st.CopyBytes)
	require.NoError(t, s.Write(&Batch{DeleteCopies: []string{"small", "big", "absent"}}))
	assert.False(t, s.Has("big"))
	assert.False(t, s.Has("small"))
	assert.True(t, s.Has("page"))
}

// TestUncheckedCopiesGiveTheStoredBytes: UncheckedCopies gives each
// copy's bytes as stored, a bad copy's too (its reader verifies), and
// tells a missing copy; Copies refuses the bad one.
func TestUncheckedCopiesGiveTheStoredBytes(t *testing.T) {
	s := open(t)
	good, bad := payload(1, 4500), payload(2, 4500)
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "good", Data: good}, {ID: "bad", Data: bad}}}))
	require.NoError(t, s.Corrupt("bad"))
	var datas [][]byte
	var errs []error
	require.NoError(t, s.UncheckedCopies([]string{"good", "bad", "absent"}, func(i int, data []byte, err error) bool {
		datas, errs = append(datas, bytes.Clone(data)), append(errs, err)
		return true
	}))
	require.Len(t, datas, 3)
	assert.Equal(t, good, datas[0])
	assert.NoError(t, errs[0])
	assert.Len(t, datas[1], len(bad), "the bad copy's bytes, as stored")
	assert.NotEqual(t, Checksum(bad), Checksum(datas[1]), "not the message: its reader's check fails")
	assert.NoError(t, errs[1])
	assert.Nil(t, datas[2])
	assert.ErrorIs(t, errs[2], ErrNotFound)
	require.NoError(t, s.Copies([]string{"bad"}, func(i int, data []byte, sum [32]byte, err error) bool {
		assert.ErrorIs(t, err, ErrCorrupt, "Copies verifies")
		return true
	}))
}

// A checksum passed by the caller is written as given: a wrong one is
// caught on read, never returned as data.
func TestGivenChecksumIsVerifiedOnRead(t *testing.T) {
	s := open(t)
	data := payload(7, 6000)
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "right", Data: data, Sum: Checksum(data)}}}))
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "wrong", Data: data, Sum: Checksum([]byte("other"))}}}))
	got, err := s.Get("right")
	require.NoError(t, err)
	assert.Equal(t, data, got)
	_, err = s.Get("wrong")
	assert.ErrorIs(t, err, ErrCorrupt)
}

// Frames are recycled once their commit is done: concurrent writers of
// different sizes must each find exactly their bytes afterwards.
func TestConcurrentWritersKeepTheirBytes(t *testing.T) {
	s := open(t)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 40 {
				id := fmt.Sprintf("w%d-%d", w, i)
				n := 100 + (w*977+i*131)%9000
				assert.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: id, Data: payload(w*100+i, n)}}}))
			}
		})
	}
	wg.Wait()
	for w := range 8 {
		for i := range 40 {
			id := fmt.Sprintf("w%d-%d", w, i)
			got, err := s.Get(id)
			require.NoError(t, err, id)
			require.Equal(t, payload(w*100+i, 100+(w*977+i*131)%9000), got, id)
		}
	}
}

func TestVerify(t *testing.T) {
	s := open(t)
	data := payload(3, 5000)
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "m", Data: data}}}))
	assert.NoError(t, s.Verify("m", Checksum(data)))
	assert.ErrorIs(t, s.Verify("m", Checksum([]byte("other"))), ErrCorrupt, "another message's checksum")
	assert.ErrorIs(t, s.Verify("absent", Checksum(data)), ErrNotFound)
	require.NoError(t, s.Corrupt("m"))
	assert.ErrorIs(t, s.Verify("m", Checksum(data)), ErrCorrupt, "bytes changed on disk")
}

func TestHasEach(t *testing.T) {
	s := open(t)
	require.NoError(t, s.Write(&Batch{PutCopies: []Copy{{ID: "a", Data: []byte("x")}, {ID: "c", Data: []byte("y")}}, PutRecords: []Record{{ID: "b", Value: []byte("entry only")}}}))
	assert.Equal(t, []bool{true, false, true, false}, s.HasEach([]string{"a", "b", "c", "d"}), "a record without a copy is not a copy")
	assert.Empty(t, s.HasEach(nil))
}
