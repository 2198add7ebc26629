package imap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"mailarray/node/catalog"
)

func (s *session) read(id string) ([]byte, error) {
	e, ok := s.mb.Get(id)
	if !ok || !e.Live() {
		return nil, errExpunged
	}
	return s.mb.Read(s.ctx, &e)
}

var errExpunged = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "some of the messages were expunged"}

func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) (err error) {
	defer s.svc.observe("fetch", time.Now())
	s.idleDone()
	// The responses go out in few writes (cork.go); all of them before the
	// tagged OK, which imapserver writes once Fetch returns.
	cc := corkOf(s.conn.NetConn())
	if cc != nil {
		cc.cork()
		defer func() {
			if uerr := cc.uncork(); err == nil {
				err = uerr
			}
		}()
	}
	v := s.sel
	idx := v.resolve(numSet)
	needBody := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	markSeen := false
	if !v.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	var pf *prefetcher
	if needBody {
		ids := make([]string, 0, len(idx))
		for _, i := range idx {
			if !v.msgs[i].gone {
				ids = append(ids, v.msgs[i].e.ID)
			}
		}
		pf = prefetch(s.ctx, s.mb, ids, fetchWindow)
		defer pf.stop()
		if cc != nil {
			// What is gathered goes out while the writer waits for a
			// copy from another node; a failed write is sticky and
			// ends the FETCH at its next response.
			pf.beforeWait = func() { _ = cc.flush() }
		}
	}
	var missing bool
	var seen []string
	for _, i := range idx {
		m := &v.msgs[i]
		if m.gone {
			if needBody {
				missing = true // RFC 2180 section 4.1.3: NO for expunged messages
				continue
			}
		}
		var data []byte
		if needBody {
			var err error
			if data, err = pf.next(); err != nil {
				s.svc.log.Warn("imap: fetch", "id", m.e.ID, "err", err)
				missing = true
				continue
			}
			s.svc.chargeCPU(len(data))
		}
		flags := m.e.Flags
		newlySeen := markSeen && !m.gone && !hasFlag(flags, string(imap.FlagSeen))
		if newlySeen {
			flags = addFlags(flags, string(imap.FlagSeen))
			seen = append(seen, m.e.ID)
		}
		rw := w.CreateMessage(uint32(i + 1))
		rw.WriteUID(imap.UID(m.e.UID))
		if options.Flags || newlySeen {
			rw.WriteFlags(imapFlags(flags))
		}
		if options.InternalDate {
			rw.WriteInternalDate(time.Unix(0, m.e.Received))
		}
		if options.RFC822Size {
			rw.WriteRFC822Size(m.e.Size)
		}
		if options.Envelope {
			hdr, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
			rw.WriteEnvelope(imapserver.ExtractEnvelope(hdr))
		}
		if options.BodyStructure != nil {
			rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(data)))
		}
		for _, bs := range options.BodySection {
			part := data
			if bs.Specifier != imap.PartSpecifierNone || len(bs.Part) > 0 || bs.Partial != nil {
				part = imapserver.ExtractBodySection(bytes.NewReader(data), bs)
			}
			if err := writeLiteral(rw.WriteBodySection(bs, int64(len(part))), part); err != nil {
				return err
			}
		}
		for _, bs := range options.BinarySection {
			part := imapserver.ExtractBinarySection(bytes.NewReader(data), bs)
			if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(part))), part); err != nil {
				return err
			}
		}
		for _, bs := range options.BinarySectionSize {
			rw.WriteBinarySectionSize(bs, imapserver.ExtractBinarySectionSize(bytes.NewReader(data), bs))
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	if len(seen) > 0 {
		if cc != nil {
			_ = cc.flush() // the client reads while the flags replicate
		}
		// One catalog write and one push for the whole FETCH.
		updated, err := s.setFlags(seen, func(f []string) []string { return addFlags(f, string(imap.FlagSeen)) })
		if err != nil {
			s.svc.log.Warn("imap: setting \\Seen", "err", err)
		}
		for _, i := range idx {
			if f, ok := updated[v.msgs[i].e.ID]; ok {
				v.msgs[i].e.Flags = f
			}
		}
	}
	if missing {
		return errExpunged
	}
	return nil
}

func writeLiteral(wc interface {
	Write([]byte) (int, error)
	Close() error
}, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// --- reading ahead ---

// prefetcher reads the messages a FETCH will send, in order.
//
// Copies only other nodes hold are read ahead of need, in batches
// (Mailbox.ReadBatch: one peer request per holder and batch), several
// batches in flight: up to window messages and fetchWindowBytes requested
// and not yet sent. The writer itself requests the next batch as soon as
// what it sent makes room (fill), so there is no goroutine between it and
// the requests to wake, and a batch is asked for while the ones before it
// are still being answered: measured on a 3-node array with a third of the
// copies remote, a window of two batches of 32, the next one asked for
// only once a whole batch was sent, left the writer waiting at nearly every
// batch (docs/performance.md, "Retrieval"). The first batch is small
// (fetchFirstBatch) so the first remote copy, often among the first
// messages, is not held back by a whole batch's round trip.
//
// Copies this node holds are read when they are needed, or while the
// writer waits for a remote copy (the run after it), a run of up to
// fetchBatch of them (and fetchRunBytes) in one ReadBatch: one store read
// transaction for the run. The run skips over the remote copies between
// them, so with every third copy remote a run is still fetchBatch copies,
// not the two or three up to the next remote one. The FETCH's first run is
// fetchFirstBatch copies, so its first bytes are not held back by reading
// and hashing a whole run.
//
// Every batch and run is read into a buffer of the slabs pool, given back
// once the writer is past its last message (a run's buffer serves the next
// run): a FETCH of 1:* allocated about 5 MB for 1,000 messages of 4.5 KiB
// before, a fresh answer per remote batch and a new run buffer whenever a
// run outgrew the last, and the garbage collection that cost was a fifth
// of the serving node's CPU (docs/performance.md, "Retrieval").
type prefetcher struct {
	mb       Mailbox
	ctx      context.Context
	cancel   context.CancelFunc
	ids      []string
	isRemote []bool // message i's copies are read ahead, in a remote batch
	pos      int
	wg       sync.WaitGroup

	// The remote copies: message remote[k], of remoteSizes[k] bytes.
	// remote[:issued] are requested, remote[:sent] handed to the writer;
	// inflight is the bytes of remote[sent:issued]. batches are the
	// requests, in order; batches[:released] have given their buffers
	// back, and batches[cur] holds remote[sent] (or is the first not
	// done with). Only the writer's goroutine touches these (next, fill).
	remote        []int
	remoteSizes   []int64
	batches       []*remoteBatch
	cur, released int
	window        int
	issued, sent  int
	inflight      int64
	scanning      bool // prefetch has not yet found every remote copy

	// local holds the run of local copies read together, from index
	// localAt on (remote ones in it are left empty), their bytes in
	// localBuf, reused by the next run (the writer is done with a message
	// when it asks for the next), as are local's array and runEntries.
	local      []ReadResult
	localAt    int
	localBuf   []byte
	runEntries []catalog.Entry
	runAt      []int
	// beforeWait, if set, runs before next blocks on a remote copy not
	// yet read (the FETCH sends what it gathered meanwhile).
	beforeWait func()
}

// remoteBatch is one request for remote[first:end]: results[k] is
// remote[first+k]'s, read into buf; both are set when done is closed.
type remoteBatch struct {
	first, end int
	done       chan struct{}
	results    []ReadResult
	buf        []byte
}

const (
	// fetchBatch bounds the messages of one read-ahead batch, remote or
	// local.
	fetchBatch = 32
	// fetchFirstBatch is the first remote batch's size.
	fetchFirstBatch = 8
	// fetchBatchBytes bounds one remote batch's bytes (after its first
	// message), fetchWindowBytes the bytes of the remote copies requested
	// and not yet sent (after the first batch in flight), fetchRunBytes
	// one run of local copies (after its first): a FETCH of large
	// messages holds a few of them, not fetchBatch or window.
	fetchBatchBytes  = 4 << 20
	fetchWindowBytes = 8 << 20
	fetchRunBytes    = 1 << 20
	// maxPooledSlab bounds the buffers kept in slabs: one grown by a batch
	// of large messages goes back to the garbage collector.
	maxPooledSlab = 2 << 20
)

// slabs holds the buffers FETCHes read copies into, from one batch and
// one FETCH to the next.
var slabs sync.Pool

// getSlab returns an empty buffer from slabs; nil when it has none
// (ReadBatch makes one of the size it needs).
func getSlab() []byte {
	if b, _ := slabs.Get().(*[]byte); b != nil {
		return (*b)[:0]
	}
	return nil
}

// putSlab gives b back to slabs; nothing may use it afterwards.
func putSlab(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledSlab {
		return
	}
	b = b[:0]
	slabs.Put(&b)
}

// prefetch starts reading ids' messages; window bounds the remote copies
// requested ahead of the writer.
func prefetch(ctx context.Context, mb Mailbox, ids []string, window int) *prefetcher {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetcher{mb: mb, ctx: ctx, cancel: cancel, ids: ids, isRemote: make([]bool, len(ids)), window: window, scanning: true}
	// One entry for the whole scan: Local takes its address, which moves
	// it to the heap, and one per message was 200 KB per 1,000.
	var e catalog.Entry
	var ok bool
	for i, id := range ids {
		if e, ok = mb.Get(id); ok && e.Live() && !mb.Local(&e) {
			p.isRemote[i] = true
			p.remote = append(p.remote, i)
			p.remoteSizes = append(p.remoteSizes, max(e.Size, 0))
			if len(p.remote) == fetchFirstBatch {
				// The first batch's round trip overlaps the rest of
				// this scan (a third of a millisecond for 1,000).
				p.fill()
			}
		}
	}
	p.scanning = false
	p.fill()
	return p
}

// fill requests remote batches while the window has room for them.
func (p *prefetcher) fill() {
	for p.issued < len(p.remote) && p.ctx.Err() == nil {
		want := fetchBatch
		if p.issued == 0 {
			want = fetchFirstBatch
		}
		start, end := p.issued, p.issued
		var bytes int64
		for end < len(p.remote) && end-start < want {
			if end > start && bytes+p.remoteSizes[end] > fetchBatchBytes {
				break
			}
			bytes += p.remoteSizes[end]
			end++
		}
		if p.scanning && end == len(p.remote) && end-start < want {
			return // cut short only by the copies not found yet
		}
		if p.issued > p.sent && (p.issued-p.sent+end-start > p.window || p.inflight+bytes > fetchWindowBytes) {
			return // the writer calls again as it sends
		}
		p.issued, p.inflight = end, p.inflight+bytes
		// The entries as the catalog has them now (the scan kept only
		// the sizes): the reader's own slice.
		entries := make([]catalog.Entry, end-start)
		for k := range entries {
			id := p.ids[p.remote[start+k]]
			var ok bool
			if entries[k], ok = p.mb.Get(id); !ok {
				entries[k] = catalog.Entry{ID: id} // gone: its read fails
			}
		}
		b := &remoteBatch{first: start, end: end, done: make(chan struct{})}
		p.batches = append(p.batches, b)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			b.results, b.buf = p.mb.ReadBatch(p.ctx, entries, getSlab())
			close(b.done)
		}()
	}
}

// next returns the next message's bytes, valid until next is called
// again.
func (p *prefetcher) next() ([]byte, error) {
	i := p.pos
	p.pos++
	p.release(i)
	if !p.isRemote[i] {
		return p.nextLocal(i)
	}
	for p.cur < len(p.batches) && p.batches[p.cur].end <= p.sent {
		p.cur++
	}
	if p.cur == len(p.batches) { // never requested: the FETCH was abandoned
		if err := p.ctx.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("imap: fetch: a remote copy was not requested")
	}
	b := p.batches[p.cur]
	select {
	case <-b.done:
	default:
		if p.beforeWait != nil {
			p.beforeWait()
		}
		p.readLocalAfter(i) // what the wait is spent on
		select {
		case <-b.done:
		case <-p.ctx.Done():
			return nil, p.ctx.Err()
		}
	}
	r := b.results[p.sent-b.first]
	p.inflight -= p.remoteSizes[p.sent]
	p.sent++
	p.fill()
	return r.Data, r.Err
}

// release gives back the buffers of the remote batches whose every
// message is before message i: the writer, asking for i, is done with
// them.
func (p *prefetcher) release(i int) {
	for p.released < len(p.batches) {
		b := p.batches[p.released]
		if p.remote[b.end-1] >= i {
			return
		}
		putSlab(b.buf)
		b.buf, b.results = nil, nil
		p.released++
	}
}

// nextLocal returns local message i, reading its run first when it is not
// in the run already read.
func (p *prefetcher) nextLocal(i int) ([]byte, error) {
	if !p.inRun(i) {
		p.readRun(i)
	}
	k := i - p.localAt
	r := p.local[k]
	p.local[k] = ReadResult{} // the writer is done with it after this
	return r.Data, r.Err
}

func (p *prefetcher) inRun(i int) bool {
	k := i - p.localAt
	return k >= 0 && k < len(p.local)
}

// readLocalAfter reads the run of the first local message after i, if
// not read yet, while the writer waits for remote message i: every local
// message before i is sent, so the run's buffer is free.
func (p *prefetcher) readLocalAfter(i int) {
	for k := i + 1; k < len(p.ids); k++ {
		if !p.isRemote[k] {
			if !p.inRun(k) {
				p.readRun(k)
			}
			return
		}
	}
}

// readRun reads local message i with the local messages after it, past
// the remote ones between them: up to fetchBatch (fetchFirstBatch for the
// FETCH's first run, so its first bytes go out soon) and fetchRunBytes.
// The run before it is sent (runs are read in order, each once the writer
// is past the one before), so its buffer and slices are reused.
func (p *prefetcher) readRun(i int) {
	limit := fetchBatch
	if p.local == nil {
		limit = fetchFirstBatch
		p.localBuf = getSlab()
	}
	entries, at := p.runEntries[:0], p.runAt[:0] // entries[k] is message i+at[k]; the others are gone or remote
	results := p.local[:0]
	var bytes int64
	for k, n := i, 0; k < len(p.ids) && n < limit; k++ {
		if p.isRemote[k] {
			results = append(results, ReadResult{}) // remote: read ahead, not here
			continue
		}
		e, ok := p.mb.Get(p.ids[k])
		if ok && e.Live() && n > 0 && bytes+max(e.Size, 0) > fetchRunBytes {
			break
		}
		n++
		if !ok || !e.Live() {
			results = append(results, ReadResult{Err: errExpunged})
			continue
		}
		bytes += max(e.Size, 0)
		results = append(results, ReadResult{})
		entries = append(entries, e)
		at = append(at, k-i)
	}
	if len(entries) > 0 {
		var got []ReadResult
		got, p.localBuf = p.mb.ReadBatch(p.ctx, entries, p.localBuf)
		for k, r := range got {
			results[at[k]] = r
		}
	}
	clear(entries) // the entries' strings are not kept alive by the next run's slice
	p.local, p.localAt, p.runEntries, p.runAt = results, i, entries, at
}

// stop abandons what was not read, waits for the readers and gives their
// buffers back: nothing next returned may be used afterwards.
func (p *prefetcher) stop() {
	p.cancel()
	// Readers close their batch's done: none blocks.
	p.wg.Wait()
	for _, b := range p.batches[p.released:] {
		putSlab(b.buf)
		b.buf = nil
	}
	p.released = len(p.batches)
	putSlab(p.localBuf)
	p.localBuf = nil
}
