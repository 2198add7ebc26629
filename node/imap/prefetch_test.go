package imap

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
)

// prefetchBox is a mailbox of n messages, message i with UID i+1, whose
// ReadBatch calls are recorded. remote(i) says which copies only other
// nodes hold; a remote batch holding a message at or past heldFrom waits
// until release is closed (or the FETCH is abandoned).
type prefetchBox struct {
	Mailbox // the prefetcher calls Get, Local and ReadBatch only
	entries []catalog.Entry
	remote  func(i int) bool
	// heldFrom and release hold remote batches back (nil release: none).
	heldFrom int
	release  chan struct{}
	// onGet, if set, runs at each Get of message i; onRead at each
	// ReadBatch, once recorded.
	onGet  func(i int)
	onRead func()
	// intoBuf: ReadBatch reads the bodies into the buffer it is given,
	// as the node does.
	intoBuf bool

	mu    sync.Mutex
	calls []batchCall
}

type batchCall struct {
	remote bool
	msgs   []int
}

func newPrefetchBox(n int, size int64, remote func(i int) bool) *prefetchBox {
	b := &prefetchBox{remote: remote}
	for i := range n {
		b.entries = append(b.entries, catalog.Entry{ID: fmt.Sprintf("m%04d", i), Size: size, State: catalog.Committed, UID: uint32(i + 1)})
	}
	return b
}

func (b *prefetchBox) ids() []string {
	var out []string
	for _, e := range b.entries {
		out = append(out, e.ID)
	}
	return out
}

func (b *prefetchBox) body(i int) []byte { return fmt.Appendf(nil, "body of message %d\r\n", i) }

func (b *prefetchBox) Get(id string) (catalog.Entry, bool) {
	for i, e := range b.entries {
		if e.ID == id {
			if b.onGet != nil {
				b.onGet(i)
			}
			return e, true
		}
	}
	return catalog.Entry{}, false
}

func (b *prefetchBox) Local(e *catalog.Entry) bool { return !b.remote(int(e.UID - 1)) }

func (b *prefetchBox) ReadBatch(ctx context.Context, entries []catalog.Entry, buf []byte) ([]ReadResult, []byte) {
	call := batchCall{remote: b.remote(int(entries[0].UID - 1))}
	held := false
	for _, e := range entries {
		i := int(e.UID - 1)
		call.msgs = append(call.msgs, i)
		held = held || (b.release != nil && call.remote && i >= b.heldFrom)
	}
	b.mu.Lock()
	b.calls = append(b.calls, call)
	b.mu.Unlock()
	if b.onRead != nil {
		b.onRead()
	}
	out := make([]ReadResult, len(entries))
	if held {
		select {
		case <-b.release:
		case <-ctx.Done():
			for k := range out {
				out[k].Err = ctx.Err()
			}
			return out, buf
		}
	}
	if b.intoBuf {
		buf = buf[:0]
		for k, i := range call.msgs {
			start := len(buf)
			buf = append(buf, b.body(i)...)
			out[k].Data = buf[start:len(buf):len(buf)]
		}
		return out, buf
	}
	for k, i := range call.msgs {
		out[k].Data = b.body(i)
	}
	return out, buf
}

func (b *prefetchBox) recorded(remote bool) []batchCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []batchCall
	for _, c := range b.calls {
		if c.remote == remote {
			out = append(out, c)
		}
	}
	return out
}

// nextOf is p.next bounded by ioTimeout: a copy never requested fails the
// test instead of hanging it.
func nextOf(t *testing.T, p *prefetcher) ([]byte, error) {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	i := p.pos
	got := make(chan result, 1)
	go func() {
		data, err := p.next()
		got <- result{data, err}
	}()
	select {
	case r := <-got:
		return r.data, r.err
	case <-time.After(ioTimeout):
		require.FailNow(t, "next did not return", "message %d", i)
		return nil, nil
	}
}

// TestPrefetchSendsEveryMessageInOrder: with every third copy remote, the
// writer gets every message's bytes in order, an expunged one as such.
func TestPrefetchSendsEveryMessageInOrder(t *testing.T) {
	b := newPrefetchBox(300, 4500, func(i int) bool { return i%3 == 1 })
	b.entries[100].State = catalog.Deleted // expunged after the FETCH listed it
	p := prefetch(context.Background(), b, b.ids(), fetchWindow)
	defer p.stop()
	for i := range b.entries {
		data, err := nextOf(t, p)
		if i == 100 {
			assert.ErrorIs(t, err, errExpunged)
			continue
		}
		require.NoError(t, err, "message %d", i)
		require.Equal(t, b.body(i), data, "message %d", i)
	}
}

// TestPrefetchLocalRunsSkipRemoteCopies: the local copies are read
// fetchFirstBatch, then fetchBatch at a time, past the remote ones between
// them (three runs for 64 local copies among 96 messages, where stopping
// at each remote copy made 32 runs of two), and each remote copy is read
// once, in a batch.
func TestPrefetchLocalRunsSkipRemoteCopies(t *testing.T) {
	b := newPrefetchBox(96, 4500, func(i int) bool { return i%3 == 1 })
	p := prefetch(context.Background(), b, b.ids(), fetchWindow)
	defer p.stop()
	for range b.entries {
		_, err := nextOf(t, p)
		require.NoError(t, err)
	}
	local := b.recorded(false)
	require.Len(t, local, 3)
	for k, want := range []int{fetchFirstBatch, fetchBatch, 64 - fetchFirstBatch - fetchBatch} {
		assert.Len(t, local[k].msgs, want, "run %d", k)
	}
	for _, c := range local {
		for _, i := range c.msgs {
			assert.False(t, b.remote(i), "remote message %d read as local", i)
		}
	}
	seen := map[int]int{}
	for _, c := range b.recorded(true) {
		for _, i := range c.msgs {
			seen[i]++
		}
	}
	assert.Len(t, seen, 32, "every remote copy read")
	for i, n := range seen {
		assert.Equal(t, 1, n, "remote message %d read once", i)
	}
}

// TestPrefetchLocalRunIsBoundedInBytes: a run of large local copies holds
// what fits in fetchRunBytes, and at least one.
func TestPrefetchLocalRunIsBoundedInBytes(t *testing.T) {
	b := newPrefetchBox(5, 400<<10, func(int) bool { return false })
	p := prefetch(context.Background(), b, b.ids(), fetchWindow)
	defer p.stop()
	for range b.entries {
		_, err := nextOf(t, p)
		require.NoError(t, err)
	}
	for _, c := range b.recorded(false) {
		assert.LessOrEqual(t, int64(len(c.msgs))*(400<<10), int64(fetchRunBytes))
	}
	assert.Len(t, b.recorded(false)[0].msgs, int(fetchRunBytes/(400<<10)))

	big := newPrefetchBox(2, 2*fetchRunBytes, func(int) bool { return false })
	p = prefetch(context.Background(), big, big.ids(), fetchWindow)
	defer p.stop()
	for range big.entries {
		_, err := nextOf(t, p)
		require.NoError(t, err)
	}
	assert.Len(t, big.recorded(false), 2, "one message a run")
}

// TestPrefetchKeepsTheWindowFull: the remote copies are requested a small
// first batch, then fetchBatch at a time, up to fetchWindow not yet sent;
// each batch the writer sends makes room for the next one at once, while
// the batches before it are still unanswered.
func TestPrefetchKeepsTheWindowFull(t *testing.T) {
	const n = 400
	b := newPrefetchBox(n, 4500, func(int) bool { return true })
	b.heldFrom, b.release = fetchFirstBatch, make(chan struct{})
	p := prefetch(context.Background(), b, b.ids(), fetchWindow)
	defer p.stop()

	inWindow := fetchFirstBatch + (fetchWindow-fetchFirstBatch)/fetchBatch*fetchBatch
	assert.Equal(t, inWindow, p.issued, "requested at the start")
	require.Eventually(t, func() bool { return len(b.recorded(true)) == 1+(inWindow-fetchFirstBatch)/fetchBatch }, ioTimeout, pollTick)
	for k, c := range b.recorded(true) {
		if c.msgs[0] == 0 {
			assert.Len(t, c.msgs, fetchFirstBatch, "the first batch")
		} else {
			assert.Len(t, c.msgs, fetchBatch, "batch %d", k)
		}
	}

	// The first batch answered, the others held: sending it makes room.
	for i := range fetchFirstBatch {
		data, err := nextOf(t, p)
		require.NoError(t, err)
		require.Equal(t, b.body(i), data)
	}
	want := inWindow
	for want-fetchFirstBatch+fetchBatch <= fetchWindow {
		want += fetchBatch
	}
	assert.Greater(t, want, inWindow)
	assert.Equal(t, want, p.issued, "requested while the batches before are unanswered, as soon as they fit")

	close(b.release)
	for i := fetchFirstBatch; i < n; i++ {
		data, err := nextOf(t, p)
		require.NoError(t, err)
		require.Equal(t, b.body(i), data, "message %d", i)
		assert.LessOrEqual(t, p.issued-p.sent, fetchWindow, "never more than the window ahead")
	}
}

// TestPrefetchWindowIsBoundedInBytes: large remote copies are requested a
// few at a time, fetchBatchBytes a batch and fetchWindowBytes in all, and
// at least one.
func TestPrefetchWindowIsBoundedInBytes(t *testing.T) {
	const size = 3 << 20
	b := newPrefetchBox(10, size, func(int) bool { return true })
	b.heldFrom, b.release = 0, make(chan struct{})
	p := prefetch(context.Background(), b, b.ids(), fetchWindow)
	defer p.stop()
	assert.Equal(t, int(fetchWindowBytes/size), p.issued)
	require.Eventually(t, func() bool { return len(b.recorded(true)) == p.issued }, ioTimeout, pollTick)
	for _, c := range b.recorded(true) {
		assert.Len(t, c.msgs, int(fetchBatchBytes/size))
	}

	huge := newPrefetchBox(3, 2*fetchWindowBytes, func(int) bool { return true })
	p = prefetch(context.Background(), huge, huge.ids(), fetchWindow)
	defer p.stop()
	assert.Equal(t, 1, p.issued, "one message larger than the window still goes")
	for i := range huge.entries {
		data, err := nextOf(t, p)
		require.NoError(t, err)
		require.Equal(t, huge.body(i), data)
	}
}

// TestPrefetchStopAbandonsHeldBatches: a FETCH that ends (its client gone)
// does not wait for the remote batches still unanswered.
func TestPrefetchStopAbandonsHeldBatches(t *testing.T) {
	b := newPrefetchBox(200, 4500, func(int) bool { return true })
	b.heldFrom, b.release = 0, make(chan struct{})
	p := prefetch(context.Background(), b, b.ids(), fetchWindow)
	require.Eventually(t, func() bool { return len(b.recorded(true)) > 1 }, ioTimeout, pollTick)
	p.stop() // returns: the held readers saw the FETCH's context end
	_, err := nextOf(t, p)
	assert.ErrorIs(t, err, context.Canceled)
}

// TestPrefetchRequestsTheFirstBatchDuringTheScan: the first remote batch
// is requested as soon as its copies are found, not after every message
// of the FETCH was looked up; the batches after it are whole.
func TestPrefetchRequestsTheFirstBatchDuringTheScan(t *testing.T) {
	const n = 2 * (fetchFirstBatch + 2*fetchBatch) // every other one remote: three whole batches
	b := newPrefetchBox(n, 4500, func(i int) bool { return i%2 == 0 })
	requested := make(chan struct{})
	var once sync.Once
	b.onGet = func(i int) {
		if i == n-1 {
			select { // the last lookup waits for the first request
			case <-requested:
			case <-time.After(ioTimeout):
				t.Error("the first batch was not requested during the scan")
			}
		}
	}
	b.heldFrom, b.release = 0, make(chan struct{})
	recorded := b.onRead
	b.onRead = func() {
		if recorded != nil {
			recorded()
		}
		once.Do(func() { close(requested) })
	}
	p := prefetch(context.Background(), b, b.ids(), fetchWindow)
	defer p.stop()
	require.Eventually(t, func() bool { return len(b.recorded(true)) == 1+(p.issued-fetchFirstBatch)/fetchBatch }, ioTimeout, pollTick)
	for _, c := range b.recorded(true) {
		if c.msgs[0] == 0 {
			assert.Len(t, c.msgs, fetchFirstBatch, "the first batch")
		} else {
			assert.Len(t, c.msgs, fetchBatch, "a batch after it")
		}
	}
}

// TestPrefetchEarlyFirstBatchKeepsBatchesWhole: when the first batch is
// cut by its bytes during the scan, the copies after it wait for the scan
// to find the rest of their batch instead of going as a short one.
func TestPrefetchEarlyFirstBatchKeepsBatchesWhole(t *testing.T) {
	const size = 600 << 10
	b := newPrefetchBox(3*fetchBatch, size, func(int) bool { return true })
	b.heldFrom, b.release = 0, make(chan struct{})
	p := prefetch(context.Background(), b, b.ids(), fetchWindow)
	defer p.stop()
	require.Eventually(t, func() bool { return len(b.recorded(true)) == 2 }, ioTimeout, pollTick)
	for _, c := range b.recorded(true) {
		assert.Len(t, c.msgs, int(fetchBatchBytes/size), "a batch as large as fetchBatchBytes allows")
	}
}

// TestPrefetchReadsTheNextLocalRunWhileWaiting: while the writer waits for
// a remote copy, it reads the run of local copies that follows it, so they
// are ready when the remote one arrives; the FETCH's first run is short,
// so its first bytes go out soon.
func TestPrefetchReadsTheNextLocalRunWhileWaiting(t *testing.T) {
	const remote = fetchFirstBatch // right after the first run
	b := newPrefetchBox(60, 4500, func(i int) bool { return i == remote })
	b.heldFrom, b.release = 0, make(chan struct{})
	p := prefetch(context.Background(), b, b.ids(), fetchWindow)
	defer p.stop()
	for i := range remote {
		data, err := nextOf(t, p)
		require.NoError(t, err)
		require.Equal(t, b.body(i), data)
	}
	require.Len(t, b.recorded(false), 1)
	require.Len(t, b.recorded(false)[0].msgs, fetchFirstBatch, "the first run")

	got := make(chan []byte, 1)
	go func() {
		data, _ := p.next() // the remote copy, held
		got <- data
	}()
	require.Eventually(t, func() bool { return len(b.recorded(false)) == 2 }, ioTimeout, pollTick, "a run read during the wait")
	assert.Equal(t, remote+1, b.recorded(false)[1].msgs[0], "the run after the remote copy")
	close(b.release)
	select {
	case data := <-got:
		require.Equal(t, b.body(remote), data)
	case <-time.After(ioTimeout):
		require.FailNow(t, "the remote copy never came")
	}
	for i := remote + 1; i <= remote+fetchBatch; i++ {
		data, err := nextOf(t, p)
		require.NoError(t, err)
		require.Equal(t, b.body(i), data)
	}
	assert.Len(t, b.recorded(false), 2, "the messages after the wait came from the run read during it")
}

// TestPrefetchGivesBuffersBackOnceSent: a remote batch's buffer (which its
// messages' bytes point into) goes back to the pool only once the writer
// asks for a message after the batch's last, never while one of its
// messages may still be written; at stop every buffer is given back.
func TestPrefetchGivesBuffersBackOnceSent(t *testing.T) {
	b := newPrefetchBox(300, 4500, func(i int) bool { return i%3 == 1 })
	b.intoBuf = true
	p := prefetch(context.Background(), b, b.ids(), fetchWindow)
	for i := range b.entries {
		data, err := nextOf(t, p)
		require.NoError(t, err)
		require.Equal(t, b.body(i), data, "message %d", i)
		// The batches up to the one message i is in are answered (the
		// writer waited for them): their fields are safe to read here.
		for k, bt := range p.batches[:p.cur+1] {
			last := p.remote[bt.end-1]
			switch {
			case last < i:
				assert.Nil(t, bt.buf, "batch %d (last message %d) given back at message %d", k, last, i)
				assert.Less(t, k, p.released)
			case b.remote(i) && bt.first <= p.sent-1 && p.sent-1 < bt.end:
				require.NotNil(t, bt.buf, "batch %d holds message %d, being written", k, i)
				assert.GreaterOrEqual(t, k, p.released)
			}
		}
	}
	assert.Greater(t, len(p.batches), 2, "several batches")
	p.stop()
	for k, bt := range p.batches {
		assert.Nil(t, bt.buf, "batch %d given back at stop", k)
	}
	assert.Nil(t, p.localBuf, "the run buffer given back at stop")
}
