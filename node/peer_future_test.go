package node

import (
	"bytes"
	"encoding/base64"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/peer"
	"mailarray/node/store"
)

// A peer that pushes an entry, or PUTs a copy, stamped near 2^64 gets
// nothing into the catalog, and the node's clock stays near its wall
// clock: both ways in (push, copy PUT) apply catalog.MaxAhead.
func TestPeerCannotPushTheClockToTheEnd(t *testing.T) {
	n := startNode(t, func(cfg *Config) { cfg.PeerKey = "k" })
	base := "http://" + n.Addr("peer")
	do := func(method, path string, body []byte, hdr map[string]string) int {
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Mailarray-Key", "k")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	data := testMessage("from the future", 200)
	far := catalog.Entry{ID: "future.0", Mailbox: "alice@example.com", Size: int64(len(data)), Sum: store.Checksum(data),
		Version: math.MaxUint64 - 1, State: catalog.Pending, Locations: []string{"n1"}, Origin: "evil"}
	got := do(http.MethodPut, "/v1/copies/future.0", data, map[string]string{"X-Entry": base64.StdEncoding.EncodeToString(far.Encode(nil))})
	assert.Equal(t, http.StatusBadRequest, got, "a copy stamped far ahead is refused")
	pushed := far
	pushed.ID, pushed.State = "future.1", catalog.Committed
	do(http.MethodPost, "/v1/entries", peer.EncodeEntries([]catalog.Entry{pushed}), nil)
	for _, id := range []string{"future.0", "future.1"} {
		_, ok := n.Catalog().Get(id)
		assert.False(t, ok, "%s is not in the catalog", id)
	}
	assert.Less(t, n.Catalog().Now(), uint64(time.Now().Add(2*time.Hour).UnixNano()), "the clock stays near the wall clock")
	assert.Equal(t, int64(2), n.Catalog().FutureRefused(), "both refusals counted")
}
