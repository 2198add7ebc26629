package bufpool

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGetGivesRoomAndPutKeepsOnlyPoolableSizes(t *testing.T) {
	b := Get(10)
	assert.Zero(t, len(b))
	assert.GreaterOrEqual(t, cap(b), MinSize, "small requests get a buffer every path can reuse")
	big := Get(MinSize * 4)
	assert.GreaterOrEqual(t, cap(big), MinSize*4)
	Put(append(b, "x"...))
	Put(big)
	Put(make([]byte, 0, MinSize-1)) // dropped: too small for the next taker
	Put(make([]byte, 0, MaxSize+1)) // dropped: too large to keep
	for range 4 {
		got := Get(100)
		assert.Zero(t, len(got), "a reused buffer comes back empty")
		assert.GreaterOrEqual(t, cap(got), 100)
		assert.LessOrEqual(t, cap(got), MaxSize)
	}
}
