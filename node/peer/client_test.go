package peer

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/fault"
	"mailarray/node/store"
)

// Every operation of the client against a server of an in-memory node:
// what the handler holds comes back as the client's answer.
func TestClientOperations(t *testing.T) {
	h := newMemHandler()
	c, _ := pair(t, Config{}, h)
	ctx := context.Background()

	small := []byte("a small copy")
	large := []byte(strings.Repeat("L", streamMaxCopy+1)) // over HTTP, not the stream
	for _, data := range [][]byte{small, large} {
		e := pendingEntry("id-"+string(data[:1]), data)
		require.NoError(t, c.PutCopy(ctx, "s", data, &e), "%d bytes", len(data))
		got, err := c.FetchCopy(ctx, "s", e.ID, e.Sum)
		require.NoError(t, err)
		assert.Equal(t, data, got, "%d bytes: the copy comes back", len(data))
		has, err := c.HasCopy(ctx, "s", e.ID)
		require.NoError(t, err)
		assert.True(t, has)
	}
	has, err := c.HasCopy(ctx, "s", "nope")
	require.NoError(t, err)
	assert.False(t, has, "HEAD of a missing copy")
	_, err = c.FetchCopy(ctx, "s", "id-a", store.Checksum([]byte("other")))
	assert.ErrorIs(t, err, store.ErrCorrupt, "a copy that does not match its sum")

	h.corrupt["id-L"] = true
	datas, err := c.FetchCopies(ctx, "s", []string{"id-a", "nope", "id-L"})
	require.NoError(t, err)
	assert.Equal(t, [][]byte{small, nil, nil}, datas, "batch: found, missing, corrupt")
	// Into a buffer: the answer lands there when it fits, after what the
	// buffer holds, and in a buffer of its own when it does not.
	dst := append(make([]byte, 0, 1024), "kept"...)
	datas, err = c.FetchCopiesInto(ctx, "s", []string{"id-a", "nope"}, dst)
	require.NoError(t, err)
	assert.Equal(t, [][]byte{small, nil}, datas)
	assert.Equal(t, []byte("kept"), dst, "what the buffer held is left alone")
	assert.Same(t, &dst[:cap(dst)][len(dst)+1+1], &datas[0][0], "read into dst, after its length (status, length, copy)")
	tiny := make([]byte, 0, 4)
	datas, err = c.FetchCopiesInto(ctx, "s", []string{"id-a"}, tiny)
	require.NoError(t, err)
	assert.Equal(t, [][]byte{small}, datas, "an answer larger than dst still comes whole")

	// Entries: push, get, bucket, UIDs.
	es := []catalog.Entry{
		{ID: "e1", Mailbox: "bob@example.com", State: catalog.Committed, UID: 4, Version: 1},
		{ID: "e2", Mailbox: "bob@example.com", State: catalog.Committed, UID: 7, Version: 1},
	}
	require.NoError(t, c.PushEntries(ctx, "s", es))
	got, ok, err := c.GetEntry(ctx, "s", "e2")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, es[1], got)
	_, ok, err = c.GetEntry(ctx, "s", "nope")
	require.NoError(t, err)
	assert.False(t, ok, "no entry")
	inBucket, err := c.Bucket(ctx, "s", catalog.BucketOf("e1"))
	require.NoError(t, err)
	assert.Contains(t, inBucket, es[0])
	top, above, err := c.UIDs(ctx, "s", "bob@example.com", 4)
	require.NoError(t, err)
	assert.EqualValues(t, 7, top)
	assert.Equal(t, []catalog.Entry{es[1]}, above, "entries above since")

	// Horizon exchange on the bucket digests.
	h.horizon = Horizon{Horizon: 50, Mark: 60, Complete: true}
	h.digests[3] = 99
	d, theirs, err := c.Buckets(ctx, "s", Horizon{From: "c", Horizon: 10, Mark: 20})
	require.NoError(t, err)
	assert.EqualValues(t, 99, d[3])
	assert.Equal(t, Horizon{Horizon: 50, Mark: 60, Complete: true}, theirs, "the callee's horizon")
	assert.Equal(t, Horizon{From: "c", Horizon: 10, Mark: 20}, h.heard, "the caller's horizon")

	// Locks.
	ok, err = c.Lock(ctx, "s", "bob@example.com", "c/1", time.Minute)
	require.NoError(t, err)
	assert.True(t, ok, "granted")
	ok, err = c.Lock(ctx, "s", "bob@example.com", "c/2", time.Minute)
	require.NoError(t, err)
	assert.False(t, ok, "held by another owner: 409")
	require.NoError(t, c.Unlock(ctx, "s", "bob@example.com", "c/1"))
	ok, err = c.Lock(ctx, "s", "bob@example.com", "c/2", time.Minute)
	require.NoError(t, err)
	assert.True(t, ok, "released")

	// Abort, load, status, rebalance.
	rep, err := c.Abort(ctx, "s", "e1")
	require.NoError(t, err)
	assert.Equal(t, AbortReply{State: AbortCommitted, Boot: "b1"}, rep)
	var load map[string]int
	require.NoError(t, c.Load(ctx, "s", &load))
	assert.Equal(t, 3, load["sessions"])
	var st map[string]string
	require.NoError(t, c.Status(ctx, "s", &st))
	assert.Equal(t, "mem", st["node"])
	require.NoError(t, c.Rebalance(ctx, "s"))
	assert.Equal(t, 1, h.rebalanced)

	// A node without an address.
	assert.ErrorIs(t, c.PushEntries(ctx, "gone", es), ErrUnreachable)
	_, err = c.Abort(ctx, "gone", "e1")
	assert.ErrorIs(t, err, ErrUnreachable)
}

// A copy whose id is a tombstone on the peer is refused with
// ErrCopyDeleted, over the stream and over HTTP alike.
func TestPutCopyRefusedForTombstone(t *testing.T) {
	h := newMemHandler()
	c, _ := pair(t, Config{}, h)
	for name, size := range map[string]int{"stream": 100, "http": streamMaxCopy + 1} {
		data := []byte(strings.Repeat("x", size))
		e := pendingEntry("gone-"+name, data)
		h.deleted[e.ID] = true
		err := c.PutCopy(context.Background(), "s", data, &e)
		assert.ErrorIs(t, err, ErrCopyDeleted, name)
		assert.False(t, h.HasCopy(e.ID), name)
	}
}

// A peer of a version without the abort endpoint is ErrNoAbortEndpoint,
// which pending resolution treats as a listener that is gone.
func TestAbortOfAnOldPeer(t *testing.T) {
	old := startOldPeer(t)
	r := &resolver{}
	r.set("old", old.addr)
	c := newClient(t, Config{}, r)
	_, err := c.Abort(context.Background(), "old", "x.0")
	assert.True(t, errors.Is(err, ErrNoAbortEndpoint), "%v", err)
}

// A request that does not decode is answered 400, a missing copy 404.
func TestServerRefusesBadRequests(t *testing.T) {
	h := newMemHandler()
	_, addr := pair(t, Config{}, h)
	tests := []struct {
		method, path string
		hdr          map[string]string
		want         int
	}{
		{"PUT", "/v1/copies/x", nil, http.StatusBadRequest},
		{"PUT", "/v1/copies/x", map[string]string{headerEntry: "!!"}, http.StatusBadRequest},
		{"GET", "/v1/copies/x", nil, http.StatusNotFound},
		{"GET", "/v1/buckets/-1", nil, http.StatusBadRequest},
		{"GET", "/v1/buckets/99999", nil, http.StatusBadRequest},
		{"POST", "/v1/locks/m", nil, http.StatusBadRequest},
		{"GET", "/v1/uids/m", nil, http.StatusBadRequest},
		{"POST", "/v1/entries", nil, http.StatusNoContent}, // an empty batch
		{"GET", "/v1/stream", nil, http.StatusUpgradeRequired},
	}
	for _, tc := range tests {
		req, err := http.NewRequest(tc.method, "http://"+addr+tc.path, nil)
		require.NoError(t, err)
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, tc.want, resp.StatusCode, "%s %s", tc.method, tc.path)
	}
}

// The peer.fetch fault point fails reads of copies with 503.
func TestInjectedFetchFault(t *testing.T) {
	h := newMemHandler()
	h.copies["a"] = []byte("x")
	fail := errors.New("injected")
	c, _ := pair(t, Config{Inject: func(p fault.Point, _ string) error {
		if p == fault.PeerFetch {
			return fail
		}
		return nil
	}}, h)
	_, err := c.FetchCopy(context.Background(), "s", "a", store.Checksum([]byte("x")))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "503")
	_, err = c.FetchCopies(context.Background(), "s", []string{"a"})
	assert.Contains(t, err.Error(), "503")
}
