package imap

// UIDs (RFC 9051 section 2.3.1.1): the rules the server and the node's
// assigner (node/imap_uid.go, which says how UIDs are assigned across the
// array) share. UIDs follow arrival order (ByArrival); a listing needs an
// assignment when an entry has no UID or two share one (NeedsUIDs); and
// UIDVALIDITY never changes (UIDValidity).

import (
	"cmp"
	"hash/fnv"
	"strings"

	"mailarray/node/catalog"
)

// UIDValidity is mailbox's UIDVALIDITY: a nonzero hash of its address, the
// same on every node and forever (node/imap_uid.go says why it never has
// to change).
func UIDValidity(mailbox string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(mailbox)))
	if v := h.Sum32(); v != 0 {
		return v
	}
	return 1
}

// NeedsUIDs reports whether a listing has committed entries without a UID
// or two entries sharing one (assigned on both sides of a partition).
func NeedsUIDs(list []catalog.Entry) bool {
	seen := make(map[uint32]struct{}, len(list))
	for i := range list {
		u := list[i].UID
		if u == 0 {
			return true
		}
		if _, dup := seen[u]; dup {
			return true
		}
		seen[u] = struct{}{}
	}
	return false
}

// ByArrival orders entries by (Received, ID), the order UIDs follow.
func ByArrival(a, b catalog.Entry) int {
	if c := cmp.Compare(a.Received, b.Received); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}
