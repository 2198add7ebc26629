package imap

import (
	"bufio"
	"bytes"
	"context"
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
type prefetcher struct {
	mb     Mailbox
	ctx    context.Context
	cancel context.CancelFunc
	ids    []string
	slots  []chan ReadResult // nil for local copies
	pos    int
	wg     sync.WaitGroup

	// The remote copies: message remote[k] has entry remoteEntries[k].
	// remote[:issued] are requested, remote[:sent] handed to the writer;
	// inflight is the bytes of remote[sent:issued]. Only the writer's
	// goroutine touches these (next, fill).
	remote        []int
	remoteEntries []catalog.Entry
	window        int
	issued, sent  int
	inflight      int64
	scanning      bool // prefetch has not yet found every remote copy

	// local holds the run of local copies read together, from index
	// localAt on (remote ones in it are left empty), their bytes in
	// localBuf, reused by the next run (the writer is done with a message
	// when it asks for the next).
	local    []ReadResult
	localAt  int
	localBuf []byte
	// beforeWait, if set, runs before next blocks on a remote copy not
	// yet read (the FETCH sends what it gathered meanwhile).
	beforeWait func()
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
)

// prefetch starts reading ids' messages; window bounds the remote copies
// requested ahead of the writer.
func prefetch(ctx context.Context, mb Mailbox, ids []string, window int) *prefetcher {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetcher{mb: mb, ctx: ctx, cancel: cancel, ids: ids, slots: make([]chan ReadResult, len(ids)), window: window, scanning: true}
	for i, id := range ids {
		if e, ok := mb.Get(id); ok && e.Live() && !mb.Local(&e) {
			p.slots[i] = make(chan ReadResult, 1)
			p.remote = append(p.remote, i)
			p.remoteEntries = append(p.remoteEntries, e)
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
			size := max(p.remoteEntries[end].Size, 0)
			if end > start && bytes+size > fetchBatchBytes {
				break
			}
			bytes += size
			end++
		}
		if p.scanning && end == len(p.remote) && end-start < want {
			return // cut short only by the copies not found yet
		}
		if p.issued > p.sent && (p.issued-p.sent+end-start > p.window || p.inflight+bytes > fetchWindowBytes) {
			return // the writer calls again as it sends
		}
		p.issued, p.inflight = end, p.inflight+bytes
		// The reader gets its own slice headers: prefetch may still be
		// appending to p.remote.
		msgs, entries := p.remote[start:end], p.remoteEntries[start:end]
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			got, _ := p.mb.ReadBatch(p.ctx, entries, nil) // results outlive the batch
			for k, r := range got {
				p.slots[msgs[k]] <- r
			}
		}()
	}
}

// next returns the next message's bytes.
func (p *prefetcher) next() ([]byte, error) {
	i := p.pos
	p.pos++
	if p.slots[i] == nil {
		return p.nextLocal(i)
	}
	var r ReadResult
	select {
	case r = <-p.slots[i]:
	default:
		if p.beforeWait != nil {
			p.beforeWait()
		}
		p.readLocalAfter(i) // what the wait is spent on
		select {
		case r = <-p.slots[i]:
		case <-p.ctx.Done():
			return nil, p.ctx.Err()
		}
	}
	p.inflight -= max(p.remoteEntries[p.sent].Size, 0)
	p.sent++
	p.fill()
	return r.Data, r.Err
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
		if p.slots[k] == nil {
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
func (p *prefetcher) readRun(i int) {
	limit := fetchBatch
	if p.local == nil {
		limit = fetchFirstBatch
	}
	var entries []catalog.Entry
	var at []int // entries[k] is message i+at[k]; the others are gone or remote
	results := make([]ReadResult, 0, fetchBatch)
	var bytes int64
	for k, n := i, 0; k < len(p.ids) && n < limit; k++ {
		if p.slots[k] != nil {
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
	p.local, p.localAt = results, i
}

// stop abandons what was not read and waits for the readers.
func (p *prefetcher) stop() {
	p.cancel()
	// Readers send into buffered slots: none blocks.
	p.wg.Wait()
}
