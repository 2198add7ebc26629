package peer

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A peer cannot lock a mailbox for longer than the node's own lease
// (Config.MaxLockTTL): a request for 24 h is granted the maximum, one
// within it what it asked, and a ttl_ms that would overflow a Duration is
// cut too, not turned negative.
func TestLockTTLIsCapped(t *testing.T) {
	h := newMemHandler()
	base := "http://" + serve(t, Config{MaxLockTTL: time.Minute}, h)
	tests := []struct {
		mailbox, ttlMS string
		want           time.Duration
	}{
		{"a@example.com", "86400000", time.Minute},
		{"b@example.com", "30000", 30 * time.Second},
		{"c@example.com", "9223372036854775807", time.Minute},
	}
	for _, tc := range tests {
		q := url.Values{"owner": {"x/1"}, "ttl_ms": {tc.ttlMS}}
		resp, err := http.Post(base+"/v1/locks/"+tc.mailbox+"?"+q.Encode(), "", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode, "lock %s", tc.mailbox)
		h.mu.Lock()
		got := h.lockTTLs[tc.mailbox]
		h.mu.Unlock()
		assert.Equal(t, tc.want, got, "lease granted for ttl_ms=%s", tc.ttlMS)
	}
}
