package fault

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDelay(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"store.sync=8ms", 8 * time.Millisecond, true},
		{" store.sync = 1s ", time.Second, true},
		{"store.sync", 0, false},
		{"disk.slow=8ms", 0, false},
		{"store.sync=fast", 0, false},
		{"store.sync=0s", 0, false},
		{"store.sync=2s", 0, false},
	}
	for _, tt := range tests {
		d := Delays{}
		err := d.ParseDelay(tt.in)
		if !tt.ok {
			assert.Error(t, err, "%q: got %v, want an error", tt.in, d)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, d[StoreSync], "%q", tt.in)
	}
}

// TestDelaysWait: the hook waits at its points only and fails nothing.
func TestDelaysWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := Delays{StoreSync: 8 * time.Millisecond}
		t0 := time.Now()
		assert.NoError(t, d.Fault(StoreSync))
		assert.Equal(t, 8*time.Millisecond, time.Since(t0), "store.sync waits its delay")
		t0 = time.Now()
		assert.NoError(t, d.Fault(StoreWrite))
		assert.Zero(t, time.Since(t0), "other points do not wait")
	})
}
