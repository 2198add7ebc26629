package catalog

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"mailarray/node/intern"
	"slices"
)

// State of an entry.
type State uint8

const (
	// Pending: copies are being written; not shown to readers.
	Pending State = iota
	// Committed: W copies were durable and the message was acknowledged.
	Committed
	// Deleted: a tombstone. Final: no later version revives the entry.
	Deleted
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Committed:
		return "committed"
	case Deleted:
		return "deleted"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Entry describes one message of one mailbox and where its copies are.
type Entry struct {
	ID       string
	Mailbox  string
	Size     int64
	Received int64    // unix nanoseconds when the listener accepted it
	Sum      [32]byte // SHA-256 of the message bytes, the same on every copy
	// Locations are the names of the nodes holding a copy, primary first.
	Locations []string
	Flags     []string
	State     State
	// Version orders the entry's updates (hybrid logical clock, ns).
	Version uint64
	// UID is the mailbox-wide IMAP UID; 0 until assigned.
	UID uint32
	// Trace records the inbound pipeline's decisions, one line each.
	Trace []string
	// Origin and Boot name the listener whose transaction wrote a pending
	// entry, and that listener's boot id (drawn at each start): pending
	// resolution asks a live listener of the same boot to abort instead of
	// deciding for it, and decides alone only when the listener is gone
	// or restarted. Empty on final entries and on entries of older
	// versions.
	Origin string
	Boot   uint64
}

// Live reports whether readers see the entry.
func (e *Entry) Live() bool { return e.State == Committed }

// HasLocation reports whether node holds a copy according to the entry.
func (e *Entry) HasLocation(node string) bool { return slices.Contains(e.Locations, node) }

// rank orders two versions of one entry; the greater wins the merge. The
// UID takes no part: it merges on its own (see Merge), and two versions
// that differ only in their UIDs rank equal.
func rank(a, b *Entry) int {
	ad, bd := a.State == Deleted, b.State == Deleted
	if ad != bd {
		if ad {
			return 1
		}
		return -1
	}
	if c := cmp.Compare(a.Version, b.Version); c != 0 {
		return c
	}
	if c := cmp.Compare(a.State, b.State); c != 0 {
		return c
	}
	// The same version arriving again (pushes, anti-entropy) is the common
	// case: equal entries rank equal without encoding them.
	if sameContent(a, b) {
		return 0
	}
	// Equal version and state from two writers is rare (clocks include the
	// node's counter), but the merge must still be a total order.
	return bytes.Compare(a.encodeRanked(), b.encodeRanked())
}

// encodeRanked is the encoding rank breaks ties with: the UID left out.
func (e *Entry) encodeRanked() []byte {
	c := *e
	c.UID = 0
	return c.Encode(nil)
}

// sameContent reports whether a and b encode identically but for their
// UIDs (State and Version compared by the caller).
func sameContent(a, b *Entry) bool {
	return a.ID == b.ID && a.Mailbox == b.Mailbox && a.Size == b.Size && a.Received == b.Received &&
		a.Sum == b.Sum && slices.Equal(a.Locations, b.Locations) &&
		slices.Equal(a.Flags, b.Flags) && slices.Equal(a.Trace, b.Trace) &&
		a.Origin == b.Origin && a.Boot == b.Boot
}

// Wins reports whether merging a into b changes b: a outranks it, or a
// carries a higher UID (see Merge).
func Wins(a, b *Entry) bool { return rank(a, b) > 0 || a.UID > b.UID }

// Merge returns the entry a replica holds after merging versions a and b
// of one entry: every field of the version that ranks higher, and the
// higher of the two UIDs.
//
// UIDs are sticky. They are assigned lazily by an IMAP node (node/imap_uid.go)
// as a new version of a committed entry, while other writers (a commit
// resolved from a copy, a rebuild moving a copy, a flag change made on a
// replica that has not yet seen the assignment) make newer versions that
// still carry UID 0. Were the UID simply part of the winning version,
// those writers would erase it and the message would get another UID
// later. Taking the maximum keeps it, and keeps the merge a join: the
// winning version's fields are a maximum under rank (a total order that
// ignores the UID) and the UID is a maximum of numbers, so any order and
// any repetition of merges ends in the same entry, and the replicas'
// digests (which hash the UID) converge. A UID can still be replaced on
// purpose by a higher one (duplicate repair, see node/imap_uid.go).
func Merge(a, b *Entry) Entry {
	out := *a
	if rank(b, a) > 0 {
		out = *b
	}
	out.UID = max(a.UID, b.UID)
	return out
}

// Encoding versions: 2 adds Origin and Boot at the end. An entry without
// an origin is written as version 1, which every node decodes, so final
// entries (and the catalogs' records) stay readable by older nodes.
const (
	encodingVersion       = 1
	encodingVersionOrigin = 2
)

// Encode appends the entry's binary form to buf.
func (e *Entry) Encode(buf []byte) []byte {
	v := byte(encodingVersion)
	if e.Origin != "" || e.Boot != 0 {
		v = encodingVersionOrigin
	}
	// One allocation at most, of the right size, instead of the several of
	// append's growth from nil (a visible share of ingest's allocations:
	// every copy's entry is encoded on each holder and in its frame).
	buf = slices.Grow(buf, e.encodedSize())
	buf = append(buf, v, byte(e.State))
	buf = binary.AppendUvarint(buf, e.Version)
	buf = appendString(buf, e.ID)
	buf = appendString(buf, e.Mailbox)
	buf = binary.AppendVarint(buf, e.Size)
	buf = binary.AppendVarint(buf, e.Received)
	buf = append(buf, e.Sum[:]...)
	buf = binary.AppendUvarint(buf, uint64(e.UID))
	buf = appendStrings(buf, e.Locations)
	buf = appendStrings(buf, e.Flags)
	buf = appendStrings(buf, e.Trace)
	if v == encodingVersionOrigin {
		buf = appendString(buf, e.Origin)
		buf = binary.AppendUvarint(buf, e.Boot)
	}
	return buf
}

// encodedSize bounds the bytes Encode appends (varints counted at their
// longest).
func (e *Entry) encodedSize() int {
	n := 2 + 4*binary.MaxVarintLen64 + len(e.Sum) +
		stringsSize(e.Locations) + stringsSize(e.Flags) + stringsSize(e.Trace) +
		2*binary.MaxVarintLen64 + len(e.ID) + len(e.Mailbox)
	if e.Origin != "" || e.Boot != 0 {
		n += 2*binary.MaxVarintLen64 + len(e.Origin)
	}
	return n
}

func stringsSize(ss []string) int {
	n := binary.MaxVarintLen64
	for _, s := range ss {
		n += binary.MaxVarintLen64 + len(s)
	}
	return n
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func appendStrings(buf []byte, ss []string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(ss)))
	for _, s := range ss {
		buf = appendString(buf, s)
	}
	return buf
}

// ErrBadEncoding is returned by Decode for bytes that are not an entry.
var ErrBadEncoding = errors.New("catalog: bad entry encoding")

// Limits that protect Decode from hostile input.
const (
	maxStringBytes = 1 << 16
	maxListLen     = 1 << 10
)

// Decode parses an entry encoded by Encode.
func Decode(b []byte) (Entry, error) {
	d := decoder{b: b}
	var e Entry
	v := d.byte()
	if v != encodingVersion && v != encodingVersionOrigin {
		return e, fmt.Errorf("%w: version %d", ErrBadEncoding, v)
	}
	e.State = State(d.byte())
	e.Version = d.uvarint()
	e.ID = d.string()
	e.Mailbox = d.shared()
	e.Size = d.varint()
	e.Received = d.varint()
	copy(e.Sum[:], d.bytes(32))
	e.UID = uint32(d.uvarint())
	e.Locations = d.strings()
	e.Flags = d.strings()
	e.Trace = d.strings()
	if v == encodingVersionOrigin {
		e.Origin = d.shared()
		e.Boot = d.uvarint()
	}
	if d.err != nil {
		return Entry{}, d.err
	}
	if len(d.b) != 0 || e.State > Deleted || e.ID == "" {
		return Entry{}, fmt.Errorf("%w: trailing bytes or bad fields", ErrBadEncoding)
	}
	return e, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = ErrBadEncoding
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > maxStringBytes {
		d.fail()
		return ""
	}
	return string(d.bytes(int(n)))
}

func (d *decoder) strings() []string {
	n := d.uvarint()
	if n > maxListLen {
		d.fail()
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		out = append(out, d.shared())
	}
	return out
}

// shared is string for the fields whose values repeat across entries
// (mailbox, node names, flags, trace lines): it returns one shared copy of
// each value (package intern). A node holds every entry of the array,
// tombstones included, so these copies were most of the catalog's memory
// (and of the simulator's live heap, which its garbage collection time
// follows).
func (d *decoder) shared() string {
	n := d.uvarint()
	if n > maxStringBytes {
		d.fail()
		return ""
	}
	return intern.Bytes(d.bytes(int(n)))
}
