package store

import (
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
