package fault

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Inject returns the hook's answer for the point asked (an ordinary
// build's failpoint adds nothing), and no fault without a hook.
func TestInjectAsksTheHook(t *testing.T) {
	boom := errors.New("boom")
	var asked []Point
	ask := func(p Point) error {
		asked = append(asked, p)
		if p == StoreWrite {
			return boom
		}
		return nil
	}
	require.ErrorIs(t, Inject(ask, StoreWrite, "n1"), boom)
	require.NoError(t, Inject(ask, MirrorSend, "n1"))
	assert.Equal(t, []Point{StoreWrite, MirrorSend}, asked)
	require.NoError(t, Inject(nil, StoreWrite, "n1"))
}

// Path is where the rewritten marker (in this package) registers a point.
func TestPath(t *testing.T) {
	assert.Equal(t, "mailarray/node/fault", Package)
	assert.Equal(t, "mailarray/node/fault/store.sync", StoreSync.Path())
}
