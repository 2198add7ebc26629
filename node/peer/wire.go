package peer

// Wire encodings shared by the client and the server (doc.go).

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"mailarray/node/catalog"
)

// Headers of the protocol.
const (
	headerEntry = "X-Entry"         // PUT /v1/copies/{id}: the base64 catalog entry
	headerSum   = "X-Sum"           // GET /v1/copies/{id}: the copy's SHA-256, hex
	headerKey   = "X-Mailarray-Key" // every request when the array has a peer key

	// The horizon exchange on GET /v1/buckets (Horizon).
	headerFrom    = "X-Mailarray-From"
	headerHorizon = "X-Mailarray-Horizon"
	headerMark    = "X-Mailarray-Mark"
	// headerComplete: "1" when the sender's catalog is complete
	// (catalog.Complete): a reset replica takes the catalog from such a
	// member only.
	headerComplete = "X-Mailarray-Complete"
)

// Status of one copy in a batch answer.
const (
	batchOK byte = iota
	batchMissing
	batchCorrupt
	batchSkipped
)

// EncodeEntries is the wire form of a batch of entries (POST /v1/entries,
// bucket and UID answers): each led by its length (uvarint).
func EncodeEntries(entries []catalog.Entry) []byte {
	return appendEntries(nil, entries)
}

// appendEntries appends entries to buf, each led by its length (uvarint).
func appendEntries(buf []byte, entries []catalog.Entry) []byte {
	var tmp []byte
	for i := range entries {
		tmp = entries[i].Encode(tmp[:0])
		buf = binary.AppendUvarint(buf, uint64(len(tmp)))
		buf = append(buf, tmp...)
	}
	return buf
}

// DecodeEntries decodes EncodeEntries; the entries copy nothing of b.
func DecodeEntries(b []byte) ([]catalog.Entry, error) {
	var out []catalog.Entry
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, catalog.ErrBadEncoding
		}
		e, err := catalog.Decode(b[k : k+int(n)])
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		b = b[k+int(n):]
	}
	return out, nil
}

// DecodeEntryHeader decodes the X-Entry header of a copy PUT.
func DecodeEntryHeader(h string) (catalog.Entry, error) {
	b, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		return catalog.Entry{}, err
	}
	return catalog.Decode(b)
}

// encodeIDs is the body of a batch read: uvarint count, then each id
// (uvarint length, bytes).
func encodeIDs(ids []string) []byte {
	buf := binary.AppendUvarint(nil, uint64(len(ids)))
	for _, id := range ids {
		buf = binary.AppendUvarint(buf, uint64(len(id)))
		buf = append(buf, id...)
	}
	return buf
}

func decodeIDs(b []byte) ([]string, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > CopyBatchMax {
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

// setHorizon writes h into a request's or an answer's header.
func setHorizon(set func(k, v string), h Horizon) {
	if h.From != "" {
		set(headerFrom, h.From)
	}
	set(headerHorizon, strconv.FormatUint(h.Horizon, 10))
	set(headerMark, strconv.FormatUint(h.Mark, 10))
	complete := "0"
	if h.Complete {
		complete = "1"
	}
	set(headerComplete, complete)
}

// horizonOf reads the Horizon from a header; missing fields are zero.
func horizonOf(h http.Header) Horizon {
	num := func(key string) uint64 {
		v, _ := strconv.ParseUint(h.Get(key), 10, 64)
		return v
	}
	return Horizon{From: h.Get(headerFrom), Horizon: num(headerHorizon), Mark: num(headerMark), Complete: h.Get(headerComplete) == "1"}
}

// readBody reads r to its end, at most limit bytes (limit < 0: no limit),
// into a buffer sized from the declared length when there is one:
// io.ReadAll's doubling growth reallocated and copied every message body
// several times, a large share of the simulator's allocations.
func readBody(r io.Reader, length, limit int64) ([]byte, error) {
	return readBodyInto(nil, r, length, limit)
}

// readBodyInto is readBody reading into dst when the body fits it.
func readBodyInto(dst []byte, r io.Reader, length, limit int64) ([]byte, error) {
	if limit >= 0 {
		r = io.LimitReader(r, limit)
	}
	if length <= 0 || (limit >= 0 && length > limit) {
		return io.ReadAll(r)
	}
	var buf []byte
	if int64(cap(dst)) >= length {
		buf = dst[:length]
	} else {
		buf = make([]byte, length)
	}
	if n, err := io.ReadFull(r, buf); err != nil {
		return buf[:n], err
	}
	// Whatever follows the declared length (nothing, for net/http).
	var probe [1]byte
	for {
		k, err := r.Read(probe[:])
		switch {
		case k > 0:
			rest, err := io.ReadAll(r)
			return append(append(buf, probe[:k]...), rest...), err
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return buf, err
		}
	}
}

// writeStatus answers with status, and text as the error when it is not
// a success.
func writeStatus(w http.ResponseWriter, status int, text string) {
	if status/100 == 2 {
		w.WriteHeader(status)
		return
	}
	http.Error(w, text, status)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
