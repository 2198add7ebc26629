package node

// Reading many messages at once, for FETCH 1:* and POP3 read-ahead: the
// copies another node holds come in one peer request per node and batch
// (POST /v1/copy-batch, node/peer) instead of one request per message,
// which on a mailbox spread over the array was most of the CPU an access
// node spent per message.

import (
	"context"
	"fmt"
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

// readMessagesInto is readMessages reading the local copies into slab
// (readLocal): the results of those are valid until slab is used again.
// It returns slab, grown if it had to be, for the next batch.
func (n *Node) readMessagesInto(ctx context.Context, entries []catalog.Entry, slab []byte) ([]fetchResult, []byte) {
	out := make([]fetchResult, len(entries))
	groups := map[string][]int{}
	var order []string
	var single []int
	var local []int
	for i := range entries {
		e := &entries[i]
		if e.HasLocation(n.conf().Name) {
			local = append(local, i)
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
		if _, ok := groups[holder]; !ok {
			order = append(order, holder)
		}
		groups[holder] = append(groups[holder], i)
	}
	if len(local) > 0 {
		le := make([]catalog.Entry, len(local))
		for k, i := range local {
			le[k] = entries[i]
		}
		var got []fetchResult
		got, slab = n.readLocal(le, slab)
		for k, r := range got {
			if r.err != nil {
				single = append(single, local[k]) // other holders, and repair
				continue
			}
			out[local[k]] = r
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, holder := range order {
		idx := groups[holder]
		for start := 0; start < len(idx); start += peer.CopyBatchMax {
			chunk := idx[start:min(start+peer.CopyBatchMax, len(idx))]
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids := make([]string, len(chunk))
				for k, i := range chunk {
					ids[k] = entries[i].ID
				}
				datas, err := n.peer.FetchCopies(ctx, holder, ids)
				mu.Lock()
				defer mu.Unlock()
				for k, i := range chunk {
					if err == nil && datas[k] != nil && store.Checksum(datas[k]) == entries[i].Sum {
						out[i].data = datas[k]
					} else {
						single = append(single, i)
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, i := range single {
		out[i].data, out[i].err = n.readMessage(ctx, &entries[i])
	}
	return out, slab
}

// readLocal reads entries' copies from this node's store in one read
// transaction, into slab (made or grown when it is too small; nil: a new
// one): one buffer for the batch, and none at all when the caller passes
// back the slab of its previous batch, whose results it is done with (a
// FETCH's writer, a POP3 session's read-ahead). Each copy is hashed once:
// the store verifies the bytes against the checksum stored with them, and
// that checksum must be the entry's (store.ErrCorrupt otherwise, as for
// bytes that fail it). It returns the slab for the next batch.
func (n *Node) readLocal(entries []catalog.Entry, slab []byte) ([]fetchResult, []byte) {
	out := make([]fetchResult, len(entries))
	size := 0
	for i := range entries {
		size += int(max(entries[i].Size, 0))
	}
	if cap(slab) < size {
		slab = make([]byte, 0, size)
	}
	slab = slab[:0]
	err := n.store.Copies(entryIDs(entries), func(i int, data []byte, sum [32]byte, err error) bool {
		switch {
		case err != nil:
			out[i].err = err
		case sum != entries[i].Sum:
			out[i].err = fmt.Errorf("%w: %s differs from its entry", store.ErrCorrupt, entries[i].ID)
		default:
			start := len(slab)
			slab = append(slab, data...) // grows past size only if an entry's size is wrong
			out[i].data = slab[start:len(slab):len(slab)]
		}
		return true
	})
	if err != nil {
		for i := range out {
			out[i] = fetchResult{err: err}
		}
	}
	if cap(slab) > maxKeptSlabBytes {
		slab = nil // a batch of large messages: not kept for the session
	}
	return out, slab
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
