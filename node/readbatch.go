package node

// Reading many messages at once, for FETCH 1:* and POP3 read-ahead: the
// copies another node holds come in one peer request per node and batch
// instead of one request per message, which on a mailbox spread over the
// array was most of the CPU an access node spent per message.
//
//	POST /v1/copy-batch   body: uvarint count, then each id (uvarint
//	                      length, bytes); answer: per id, a status byte
//	                      (batchOK, batchMissing, batchCorrupt,
//	                      batchSkipped) and for batchOK the copy (uvarint
//	                      length, bytes). The reader verifies each copy
//	                      against its catalog entry.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"mailarray/node/catalog"
	"mailarray/node/store"
)

// Limits of batched reads.
const (
	// copyBatchMax bounds the ids of one batch request.
	copyBatchMax = 64
	// copyBatchBytes bounds the copies in one answer; the ids past it are
	// answered batchSkipped and read one by one.
	copyBatchBytes = 16 << 20
	// readAheadBytes bounds the bytes one read-ahead holds.
	readAheadBytes = 8 << 20
)

// Status of one copy in a batch answer.
const (
	batchOK byte = iota
	batchMissing
	batchCorrupt
	batchSkipped
)

func (p *peerService) handleCopyBatch(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r.Body, r.ContentLength, 1<<20)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	ids, err := decodeIDs(body)
	if err != nil || len(ids) > copyBatchMax {
		http.Error(w, "bad id list", http.StatusBadRequest)
		return
	}
	if err := p.n.env.Inject("peer.fetch"); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	var out []byte
	total := 0
	for _, id := range ids {
		if total >= copyBatchBytes {
			out = append(out, batchSkipped)
			continue
		}
		data, err := p.n.store.Get(id)
		switch {
		case err == nil:
			out = append(out, batchOK)
			out = binary.AppendUvarint(out, uint64(len(data)))
			out = append(out, data...)
			total += len(data)
		case errors.Is(err, store.ErrNotFound):
			out = append(out, batchMissing)
		case errors.Is(err, store.ErrCorrupt):
			p.n.log.Error("peer: copy fails its checksum", "id", id)
			out = append(out, batchCorrupt)
		default:
			http.Error(w, "store failed", http.StatusInternalServerError)
			return
		}
	}
	w.Write(out)
}

func encodeIDs(ids []string) []byte {
	buf := binary.AppendUvarint(nil, uint64(len(ids)))
	for _, id := range ids {
		buf = appendUvarintString(buf, id)
	}
	return buf
}

func appendUvarintString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func decodeIDs(b []byte) ([]string, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > copyBatchMax {
		return nil, errors.New("bad count")
	}
	b = b[k:]
	ids := make([]string, 0, n)
	for range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, errors.New("bad id")
		}
		ids = append(ids, string(b[k:k+int(l)]))
		b = b[k+int(l):]
	}
	return ids, nil
}

// fetchCopies asks node for the copies of ids; a nil slot is a copy not
// returned (missing, corrupt, skipped), to be read one by one.
func (p *peerService) fetchCopies(ctx context.Context, node string, ids []string) ([][]byte, error) {
	_, b, err := p.call(ctx, http.MethodPost, node, "/v1/copy-batch", encodeIDs(ids), nil)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(ids))
	for i := range ids {
		if len(b) == 0 {
			return nil, fmt.Errorf("node: peer %s: short copy batch", node)
		}
		st := b[0]
		b = b[1:]
		if st != batchOK {
			continue
		}
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("node: peer %s: bad copy batch", node)
		}
		out[i] = b[k : k+int(l) : k+int(l)]
		b = b[k+int(l):]
	}
	return out, nil
}

// readMessages reads entries' messages: copies this node holds from its
// store, the others in one batch per holder (the first live one in
// placement order), and whatever a batch did not bring (a missing or bad
// copy, a holder that failed) one by one with readMessage, which tries
// every holder and repairs bad copies.
func (n *Node) readMessages(ctx context.Context, entries []catalog.Entry) []fetchResult {
	out := make([]fetchResult, len(entries))
	groups := map[string][]int{}
	var order []string
	var single []int
	for i := range entries {
		e := &entries[i]
		if e.HasLocation(n.cfg.Name) {
			single = append(single, i)
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
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, holder := range order {
		idx := groups[holder]
		for start := 0; start < len(idx); start += copyBatchMax {
			chunk := idx[start:min(start+copyBatchMax, len(idx))]
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids := make([]string, len(chunk))
				for k, i := range chunk {
					ids[k] = entries[i].ID
				}
				datas, err := n.peer.fetchCopies(ctx, holder, ids)
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
	return out
}
