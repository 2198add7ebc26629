// Package mirror derives the mirroring table (the patent's table 50): for
// each storage node, the nodes that hold mirrors of the copies it takes as
// primary. The table is a pure function of the live storage members and R,
// so every node that sees the same membership computes the same table
// with the same version, and no coordination is needed to agree on it.
//
// Layout: the live storage nodes sorted by name form a ring; a node's
// mirrors are the next R-1 nodes clockwise. When a node fails, its
// successors take over its mirrors, and only copies that lost a holder
// need rebuilding.
package mirror

import (
	"hash/fnv"
	"slices"
	"strings"

	"mailarray/node/env"
)

// RoleStore is the role a member needs to hold copies.
const RoleStore = "store"

// Table is one version of the mirroring table.
type Table struct {
	// Version identifies the table's content: equal versions, equal tables.
	Version uint64 `json:"version"`
	// R is the number of copies each message gets.
	R int `json:"replicas"`
	// Ring is the live storage nodes, sorted by name.
	Ring []string `json:"ring"`
}

// HasRole reports whether m advertises role in its roles tag.
func HasRole(m env.Member, role string) bool {
	for r := range strings.SplitSeq(m.Tags[env.TagRoles], ",") {
		if r == role {
			return true
		}
	}
	return false
}

// Build derives the table from membership.
func Build(members []env.Member, r int) Table {
	t := Table{R: r}
	for _, m := range members {
		if m.Status == env.StatusAlive && HasRole(m, RoleStore) {
			t.Ring = append(t.Ring, m.Name)
		}
	}
	slices.Sort(t.Ring)
	h := fnv.New64a()
	h.Write([]byte{byte(r)})
	for _, n := range t.Ring {
		h.Write([]byte(n))
		h.Write([]byte{0})
	}
	t.Version = h.Sum64()
	return t
}

// Mirrors returns the nodes mirroring node: the next R-1 ring members
// (fewer if the ring is smaller). A node not on the ring mirrors onto the
// ring members that follow its name.
func (t Table) Mirrors(node string) []string {
	if len(t.Ring) == 0 || t.R <= 1 {
		return nil
	}
	i, found := slices.BinarySearch(t.Ring, node)
	if found {
		i++
	}
	var out []string
	for k := 0; k < len(t.Ring) && len(out) < t.R-1; k++ {
		n := t.Ring[(i+k)%len(t.Ring)]
		if n != node {
			out = append(out, n)
		}
	}
	return out
}

// Replicas returns primary followed by its mirrors: where a message taken
// by primary is stored. If primary is not a live storage node, its place
// goes to the next ring member.
func (t Table) Replicas(primary string) []string {
	if slices.Contains(t.Ring, primary) {
		return append([]string{primary}, t.Mirrors(primary)...)
	}
	m := t.Mirrors(primary)
	if len(t.Ring) >= t.R && len(m) < t.R {
		// primary is off the ring: Mirrors gave R-1 successors; add one more.
		i, _ := slices.BinarySearch(t.Ring, primary)
		if extra := t.Ring[(i+len(m))%len(t.Ring)]; !slices.Contains(m, extra) {
			m = append(m, extra)
		}
	}
	return m
}

// Pairs lists each ring member with its mirrors, for operators.
func (t Table) Pairs() map[string][]string {
	out := make(map[string][]string, len(t.Ring))
	for _, n := range t.Ring {
		out[n] = t.Mirrors(n)
	}
	return out
}
