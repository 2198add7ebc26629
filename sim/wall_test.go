package sim

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestWallClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w0 := WallNow()
		time.Sleep(time.Hour) // fake: costs no wall time
		assert.Less(t, WallSince(w0), time.Minute)
	})
}
