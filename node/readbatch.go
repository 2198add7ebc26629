package node

// Reading many messages at once, for FETCH 1:* and POP3 read-ahead: the
// copies another node holds come in one peer request per node and batch
// (POST /v1/copy-batch, node/peer) instead of one request per message,
// which on a mailbox spread over the array was most of the CPU an access
// node spent per message.

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"mailarray/node/catalog"
	"mailarray/node/peer"
	"mailarray/node/store"
)

// readAheadBytes bounds the bytes one read-ahead holds.
const readAheadBytes = 8 << 20

// readMessages reads entries' messages: copies this node holds from its
// store, the others in one batch per holder (the first live one in
// placement order), and whatever a batch did not bring (a missing or bad
// copy, a holder that failed) one by one with readMessage, which tries
// every holder and repairs bad copies.
func (n *Node) readMessages(ctx context.Context, entries []catalog.Entry) []fetchResult {
	out, _ := n.readMessagesInto(ctx, entries, nil)
	return out
}

// readMessagesInto is readMessages reading into slab: the local copies
// (readLocal) and the answers of the holders asked for the others
// (FetchCopiesInto), each in a region of its own, sized from the entries.
// The results read there are valid until slab is used again; it returns
// slab, grown if it had to be, for the next batch. A caller going through a
// mailbox batch after batch (a FETCH, a POP3 read-ahead) so reuses one
// buffer: a fresh answer per remote batch and a new slab whenever a run
// outgrew the last were most of the bytes a FETCH allocated, and the
// garbage collection they cost a fifth of the reading node's CPU
// (docs/performance.md, "Retrieval").
func (n *Node) readMessagesInto(ctx context.Context, entries []catalog.Entry, slab []byte) ([]fetchResult, []byte) {
	out := make([]fetchResult, len(entries))
	type chunk struct {
		holder string
		idx    []int
		dst    []byte // its region of slab
	}
	var chunks []chunk
	var single []int
	var local []int
	localBytes := 0
	for i := range entries {
		e := &entries[i]
		if e.HasLocation(n.conf().Name) {
			local = append(local, i)
			localBytes += int(max(e.Size, 0))
			continue
		}
		holder := ""
		for _, l := range e.Locations {
			if n.members.Alive(l) {
				holder = l
				break
			}
		}
		if holder == "" {
			single = append(single, i)
			continue
		}
		k := slices.IndexFunc(chunks, func(c chunk) bool { return c.holder == holder && len(c.idx) < peer.CopyBatchMax })
		if k < 0 {
			chunks = append(chunks, chunk{holder: holder})
			k = len(chunks) - 1
		}
		chunks[k].idx = append(chunks[k].idx, i)
	}
	// The regions: the local copies, then each chunk's answer (its copies
	// and their framing). Three-index slices keep them apart: a region
	// that an entry's wrong size overflows grows out of the slab, not into
	// the next region.
	need := localBytes
	rooms := make([]int, len(chunks))
	for k, c := range chunks {
		for _, i := range c.idx {
			rooms[k] += int(max(entries[i].Size, 0)) + peer.CopyBatchFraming
		}
		need += rooms[k]
	}
	if cap(slab) < need {
		slab = make([]byte, 0, need)
	}
	slab = slab[:0]
	at := localBytes
	for k := range chunks {
		chunks[k].dst = slab[at : at : at+rooms[k]]
		at += rooms[k]
	}
	if len(local) > 0 {
		le := entries
		if len(local) < len(entries) {
			le = make([]catalog.Entry, len(local))
			for k, i := range local {
				le[k] = entries[i]
			}
		}
		for k, r := range n.readLocal(le, slab[:0:localBytes]) {
			if r.err != nil {
				single = append(single, local[k]) // other holders, and repair
				continue
			}
			out[local[k]] = r
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range chunks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]string, len(c.idx))
			for k, i := range c.idx {
				ids[k] = entries[i].ID
			}
			datas, err := n.peer.FetchCopiesInto(ctx, c.holder, ids, c.dst)
			mu.Lock()
			defer mu.Unlock()
			for k, i := range c.idx {
				if err == nil && datas[k] != nil && store.Checksum(datas[k]) == entries[i].Sum {
					out[i].data = datas[k]
				} else {
					single = append(single, i)
				}
			}
		}()
	}
	wg.Wait()
	for _, i := range single {
		out[i].data, out[i].err = n.readMessage(ctx, &entries[i])
	}
	if cap(slab) > maxKeptSlabBytes {
		slab = nil // a batch of large messages: not kept for the session
	}
	return out, slab
}

// readLocal reads entries' copies from this node's store in one read
// transaction, appending them to buf (grown, if an entry's size is wrong,
// by append: the results stay valid). Each copy is hashed once: the store
// verifies the bytes against the checksum stored with them, and that
// checksum must be the entry's (store.ErrCorrupt otherwise, as for bytes
// that fail it).
func (n *Node) readLocal(entries []catalog.Entry, buf []byte) []fetchResult {
	out := make([]fetchResult, len(entries))
	err := n.store.Copies(entryIDs(entries), func(i int, data []byte, sum [32]byte, err error) bool {
		switch {
		case err != nil:
			out[i].err = err
		case sum != entries[i].Sum:
			out[i].err = fmt.Errorf("%w: %s differs from its entry", store.ErrCorrupt, entries[i].ID)
		default:
			start := len(buf)
			buf = append(buf, data...)
			out[i].data = buf[start:len(buf):len(buf)]
		}
		return true
	})
	if err != nil {
		for i := range out {
			out[i] = fetchResult{err: err}
		}
	}
	return out
}

// maxKeptSlabBytes bounds the read buffer a session keeps between batches.
const maxKeptSlabBytes = 1 << 20

// entryIDs returns entries' ids.
func entryIDs(entries []catalog.Entry) []string {
	out := make([]string, len(entries))
	for i := range entries {
		out[i] = entries[i].ID
	}
	return out
}
