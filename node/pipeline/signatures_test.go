package pipeline

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// indexPattern answers as bytes.Index: on data of a small alphabet (many
// partial matches), patterns cut from the data or made up, short and
// long, and data repeating a long pattern's head without its tail (the
// head matches everywhere: the fallback to bytes.Index).
func TestIndexPatternIsBytesIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 3000; n++ {
		data := make([]byte, r.IntN(6000))
		for i := range data {
			data[i] = "XXXXY5O!"[r.IntN(8)]
		}
		var pat []byte
		if plen := MinPatternBytes + r.IntN(120); len(data) > plen && r.IntN(2) == 0 {
			at := r.IntN(len(data) - plen)
			pat = bytes.Clone(data[at : at+plen])
		} else {
			pat = make([]byte, plen)
			for i := range pat {
				pat[i] = "XXXY5O!"[r.IntN(7)]
			}
		}
		require.Equal(t, bytes.Index(data, pat), indexPattern(data, pat), "data %q pattern %q", data, pat)
	}
	head := strings.Repeat("X", 40)
	for _, c := range []struct{ data, pat string }{
		{strings.Repeat("X", 5000), head + "Y"},
		{strings.Repeat("X", 5000) + head + "Y", head + "Y"},
		{strings.Repeat("X", 20) + head + "Y" + strings.Repeat("X", 5000), head + "Y"},
		{"", eicar},
		{eicar, eicar},
		{eicar[:len(eicar)-1], eicar},
	} {
		assert.Equal(t, bytes.Index([]byte(c.data), []byte(c.pat)), indexPattern([]byte(c.data), []byte(c.pat)), "data of %d bytes", len(c.data))
	}
}

// EICAR in 'X' filler (the load generator's body) is found where it is,
// every occurrence.
func TestFindEICARInFiller(t *testing.T) {
	db := compileSignatures(builtinSignatures())
	filler := strings.Repeat(strings.Repeat("X", 78)+"\r\n", 30)
	data := []byte(filler + eicar + "\r\n" + filler + eicar)
	got := db.find(data)
	require.Len(t, got, 2)
	offsets := []int{got[0].Offset, got[1].Offset}
	assert.ElementsMatch(t, []int{len(filler), 2*len(filler) + len(eicar) + 2}, offsets)
	assert.Equal(t, EICARName, got[0].Sig.Name)
	assert.Empty(t, db.find([]byte(filler+eicar[:len(eicar)-1])))
}

func BenchmarkFindEICARInFiller(b *testing.B) {
	db := compileSignatures(builtinSignatures())
	data := []byte(strings.Repeat(strings.Repeat("X", 78)+"\r\n", 52))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		db.find(data)
	}
}
