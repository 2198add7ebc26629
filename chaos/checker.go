package chaos

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/store"
	"mailarray/sim"
)

// The checker is independent of the simulator's own accounting: it opens
// every live node's bbolt file after the run (sim.Run has closed the
// nodes), loads its catalog replica the way a restarting node would, reads
// the copies themselves, and identifies each stored message by the
// Message-ID the load generator wrote into it (<seq.seed@load.test>), not
// by the catalog's word. Against the load generator's records it checks
// docs/design.md's invariants:
//
//  1. every acknowledged message that no reader deleted has a copy, with
//     the right checksum and Message-ID, on a live node (else: lost), and
//     every live catalog lists it committed (else: missing);
//  2. after quiescence every committed entry lists min(R, live) distinct
//     live nodes, each holding a valid copy (else: under-replicated); no
//     entry is still pending; every live catalog has the same digest
//     (else: diverging);
//  3. no mailbox lists one message twice (duplicated), and no message a
//     reader's acknowledged DELE removed is committed again (resurrected);
//  4. a transaction the array refused (4xx/5xx), or never received, left
//     no visible message (phantom); a visible message is the one the 250
//     named (else: duplicated);
//  5. no mailbox lease outlives its holder's failure by more than the
//     detection time (else: stale lease; leases.go).
//  6. quorum, from the simulator's durability ledger (sim.Report.Ledger):
//     when the listener sent each 250, at least W copies of the message
//     were durable on distinct nodes (else: under-quorum);
//  7. nothing acknowledged is deleted except by a reader: no live catalog
//     holds a tombstone for an acknowledged message no reader sent DELE
//     for, and the ledger shows no such message whose every copy the
//     nodes deleted (else: deleted-unasked);
//  8. after quiescence catalog locations match the stores: no committed
//     entry lists a live node whose store lacks the copy (else: phantom
//     holder; such an entry also counts as under-replicated).
//  9. after quiescence no copy is left out of an entry that needs it: in
//     every live catalog, every acknowledged message no reader deleted is
//     listed on at least min(R, live) live holders whose stores hold a
//     valid copy (else: under-listed; none at all: unreadable, though
//     another store may hold it), and no live store holds a valid copy of
//     a committed entry that lists fewer than R holders without being
//     listed (else: unlisted copy: rebuild and readers do not see it, and
//     orphan cleanup may trim it). Issue 16's bug broke both: a node that
//     saw fewer than R live storage nodes rewrote entries to list itself
//     alone (chaos/ringcells.go).

// storeFile is a node's bbolt file under its data directory (node/node.go).
const storeFile = "node.db"

// checkerOpenTimeout bounds the wait for a node's file lock: sim.Run has
// closed every node, so the lock is free unless something leaked.
const checkerOpenTimeout = 2 * time.Second

// idsMax bounds the ids kept per finding, for messages.
const idsMax = 10

// Finding is one kind of violation: how many, and the first few ids.
type Finding struct {
	Count int      `json:"count"`
	IDs   []string `json:"ids,omitempty"`
}

// Add counts one more violation and keeps its id among the first few.
func (f *Finding) Add(id string) {
	f.Count++
	if len(f.IDs) < idsMax {
		f.IDs = append(f.IDs, id)
	}
}

// Result is what Check found in one run.
type Result struct {
	LiveNodes    []string `json:"live_nodes"`
	Acknowledged int      `json:"acknowledged"` // 250s the load generator received
	ReaderDelete int      `json:"reader_deleted"`
	Checked      int      `json:"checked"` // acknowledged, not deleted by a reader
	Visible      int      `json:"visible"` // committed entries (union of live catalogs)
	Unacked      int      `json:"unacked"` // visible messages whose transaction got no reply: allowed
	Orphans      int      `json:"orphans"` // copies no entry lists on their node: allowed (cleaned after a grace)
	// Digests are per live node (LiveNodes order): the catalog's own
	// digest (what anti-entropy compares: id, version, state, locations)
	// and a digest of every entry's whole encoding, flags and UIDs
	// included, which the checker compares.
	Digests        []string `json:"digests"`
	ContentDigests []string `json:"content_digests"`

	Lost            Finding `json:"lost"`
	Missing         Finding `json:"missing"`
	UnderReplicated Finding `json:"under_replicated"`
	Pending         Finding `json:"pending"`
	Diverging       int     `json:"diverging"` // live catalogs whose content differs from the majority's
	DivergingIDs    Finding `json:"diverging_ids"`
	Duplicated      Finding `json:"duplicated"`
	Resurrected     Finding `json:"resurrected"`
	Phantom         Finding `json:"phantom"`
	StaleLeases     Finding `json:"stale_leases"`
	UnderQuorum     Finding `json:"under_quorum"`
	DeletedUnasked  Finding `json:"deleted_unasked"`
	PhantomHolder   Finding `json:"phantom_holder"`
	UnderListed     Finding `json:"under_listed"`
	UnlistedCopy    Finding `json:"unlisted_copy"`
}

// Violations describes every broken invariant; empty means the run is
// clean.
func (r *Result) Violations() []string {
	var out []string
	add := func(what string, f Finding) {
		if f.Count > 0 {
			out = append(out, fmt.Sprintf("%s: %d (%s)", what, f.Count, strings.Join(f.IDs, ", ")))
		}
	}
	add("lost (acknowledged, no valid copy on a live node)", r.Lost)
	add("missing (acknowledged, not committed in a live catalog)", r.Missing)
	add("under-replicated after quiescence", r.UnderReplicated)
	add("pending after quiescence", r.Pending)
	if r.Diverging > 0 {
		out = append(out, fmt.Sprintf("catalogs diverging after quiescence: %d of %d (nodes %v, digests %v, contents %v; differing entries %d: %s)",
			r.Diverging, len(r.LiveNodes), r.LiveNodes, r.Digests, r.ContentDigests, r.DivergingIDs.Count, strings.Join(r.DivergingIDs.IDs, ", ")))
	}
	add("duplicated (one message twice in a mailbox, or under another transaction)", r.Duplicated)
	add("resurrected (deleted by a reader, committed again)", r.Resurrected)
	add("phantom (a refused or unsent transaction left a visible message)", r.Phantom)
	add("stale lease (a mailbox lease honoured longer than detection after its holder's node failed)", r.StaleLeases)
	add("under-quorum (fewer than W copies durable when the 250 went out)", r.UnderQuorum)
	add("deleted-unasked (acknowledged, deleted although no reader deleted it)", r.DeletedUnasked)
	add("phantom holder (an entry lists a live node whose store lacks the copy)", r.PhantomHolder)
	add("under-listed (acknowledged, listed on fewer than min(R, live) live holders that hold it; 0: unreadable)", r.UnderListed)
	add("unlisted copy (a live store holds a copy its entry, listing fewer than R holders, leaves out)", r.UnlistedCopy)
	return out
}

// liveNode is one live node's files, opened.
type liveNode struct {
	name    string
	st      *store.Store
	cat     *catalog.Catalog
	entries map[string]catalog.Entry
}

// Check reads the files of every node rep says is alive, under
// dataDir/<node>/, and checks the invariants against rep.Records. It
// must run after sim.Run returned (the nodes are closed). An error means
// the files could not be read, not that an invariant broke.
func Check(rep *sim.Report, dataDir string) (*Result, error) {
	res := &Result{}
	var nodes []*liveNode
	defer func() {
		for _, ln := range nodes {
			ln.st.Close()
		}
	}()
	for _, nr := range rep.Nodes {
		if nr.State != "alive" {
			continue
		}
		st, err := store.Open(store.Options{Path: filepath.Join(dataDir, nr.Name, storeFile), OpenTimeout: checkerOpenTimeout})
		if err != nil {
			return nil, fmt.Errorf("chaos: check: node %s: %w", nr.Name, err)
		}
		ln := &liveNode{name: nr.Name, st: st, entries: map[string]catalog.Entry{}}
		nodes = append(nodes, ln)
		if ln.cat, err = catalog.Open(st, slog.New(slog.DiscardHandler)); err != nil {
			return nil, fmt.Errorf("chaos: check: node %s: %w", nr.Name, err)
		}
		ln.cat.ForEach(func(e *catalog.Entry) bool {
			ln.entries[e.ID] = *e
			return true
		})
		res.LiveNodes = append(res.LiveNodes, nr.Name)
		res.Digests = append(res.Digests, ln.cat.Digest())
		res.ContentDigests = append(res.ContentDigests, contentDigest(ln.entries))
	}
	if len(nodes) == 0 {
		return nil, errors.New("chaos: check: no live node")
	}
	byName := map[string]*liveNode{}
	for _, ln := range nodes {
		byName[ln.name] = ln
	}
	records := rep.Records
	want := min(rep.Config.Replicas, len(nodes))

	// copyOK reports whether node holds a copy of e that matches the
	// entry's checksum, and the load generator's sequence number in it.
	copyOK := func(ln *liveNode, id string, sum [32]byte) (seq int, ok bool) {
		data, err := ln.st.Get(id) // verifies the stored frame's checksum
		if err != nil || store.Checksum(data) != sum {
			return 0, false
		}
		seq, ok = sim.MessageSeq(data, rep.Seed)
		return seq, ok
	}

	// 1. Acknowledged messages.
	acked := map[string]int{} // copy id -> record seq
	for i := range records {
		rec := &records[i]
		if rec.Outcome != sim.Accepted {
			continue
		}
		res.Acknowledged++
		acked[rec.CopyID()] = rec.Seq
		if rec.Deleted {
			res.ReaderDelete++
			continue
		}
		if rec.MaybeDeleted {
			continue
		}
		res.Checked++
		id := rec.CopyID()
		found, tombstoned := false, ""
		for _, ln := range nodes {
			e, ok := ln.entries[id]
			switch {
			case !ok:
				res.Missing.Add(id + "@" + ln.name + " absent")
			case e.State != catalog.Committed:
				res.Missing.Add(id + "@" + ln.name + " " + e.State.String())
			}
			if ok && e.State == catalog.Deleted && tombstoned == "" {
				tombstoned = ln.name
			}
			if !found {
				sum := e.Sum
				if !ok {
					// The catalog lost it: the copy still counts if its bytes
					// are intact (the store's frame checksum) and it is the
					// acknowledged message.
					data, err := ln.st.Get(id)
					if err == nil {
						sum = store.Checksum(data)
					}
				}
				if seq, ok := copyOK(ln, id, sum); ok && seq == rec.Seq {
					found = true
				}
			}
		}
		if !found {
			res.Lost.Add(id + describe(records, rec.Seq))
		}
		for _, ln := range nodes {
			if e, ok := ln.entries[id]; ok && e.State == catalog.Committed {
				if n := validHolders(byName, &e, rec.Seq, copyOK); n < want {
					res.UnderListed.Add(fmt.Sprintf("%s@%s lists %v, %d live with the copy of %d wanted%s", id, ln.name, e.Locations, n, want, describe(records, rec.Seq)))
				}
			}
		}
		switch {
		case tombstoned != "":
			res.DeletedUnasked.Add(id + " (tombstone on " + tombstoned + ")" + describe(records, rec.Seq))
		case rep.Ledger != nil && deletedByNodes(rep.Ledger[id]):
			res.DeletedUnasked.Add(id + " (every copy deleted)" + describe(records, rec.Seq))
		}
	}
	checkQuorum(rep, res)

	// 2-4. Every entry of every live catalog.
	ids := map[string]bool{}
	for _, ln := range nodes {
		for id := range ln.entries {
			ids[id] = true
		}
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)
	type shown struct{ node, mailbox string }
	seen := map[shown]map[int]string{} // (node, mailbox) -> seq -> copy id
	for _, id := range sorted {
		var ref *catalog.Entry
		agree := true
		for _, ln := range nodes {
			e, ok := ln.entries[id]
			if !ok {
				agree = false
				continue
			}
			if ref == nil {
				ref = &e
			} else if !sameEntry(ref, &e) {
				agree = false
			}
			if e.State == catalog.Pending {
				res.Pending.Add(id + "@" + ln.name + describe(records, copySeq(nodes, id, rep.Seed)))
			}
		}
		if !agree {
			res.DivergingIDs.Add(id)
		}
		committed := false
		var e catalog.Entry
		for _, ln := range nodes {
			if x, ok := ln.entries[id]; ok && x.State == catalog.Committed {
				committed, e = true, x
				break
			}
		}
		if !committed {
			continue
		}
		res.Visible++
		// Locations against the stores, in every live catalog.
		for _, ln := range nodes {
			x, ok := ln.entries[id]
			if !ok || x.State != catalog.Committed {
				continue
			}
			if p := phantomHolder(byName, &x); p != "" {
				res.PhantomHolder.Add(fmt.Sprintf("%s on %s (entry of %s lists %v)", id, p, ln.name, x.Locations))
				break
			}
		}
		// An entry short of R listed holders: every valid copy a live store
		// holds must be listed.
		for _, ln := range nodes {
			x, ok := ln.entries[id]
			if !ok || x.State != catalog.Committed {
				continue
			}
			if u := unlistedCopy(nodes, &x, rep.Config.Replicas); u != "" {
				res.UnlistedCopy.Add(fmt.Sprintf("%s on %s (entry of %s lists %v)", id, u, ln.name, x.Locations))
				break
			}
		}
		// Replication: min(R, live) distinct live holders, all valid.
		seq, seqOK := -1, false
		holders := map[string]bool{}
		valid := true
		for _, loc := range e.Locations {
			ln := byName[loc]
			if ln == nil || holders[loc] {
				valid = false
				continue
			}
			holders[loc] = true
			s, ok := copyOK(ln, id, e.Sum)
			if !ok {
				valid = false
				continue
			}
			seq, seqOK = s, true
		}
		if !valid || len(holders) != want {
			res.UnderReplicated.Add(fmt.Sprintf("%s%v", id, e.Locations))
		}
		if !seqOK {
			// No valid listed copy: find the message anywhere to identify it.
			for _, ln := range nodes {
				if s, ok := copyOK(ln, id, e.Sum); ok {
					seq, seqOK = s, true
					break
				}
			}
		}
		if !seqOK || seq < 0 || seq >= len(records) {
			res.Phantom.Add(id + " (not a message of the load)")
			continue
		}
		rec := &records[seq]
		switch {
		case rec.Outcome == sim.Accepted && rec.CopyID() != id:
			res.Duplicated.Add(fmt.Sprintf("%s (message %d, acknowledged as %s)", id, seq, rec.CopyID()))
		case rec.Outcome == sim.Accepted && rec.Deleted:
			res.Resurrected.Add(id)
		case rec.Outcome == sim.Failed:
			res.Unacked++ // no reply: the client cannot know; an MTA retries
		case rec.Outcome != sim.Accepted:
			res.Phantom.Add(fmt.Sprintf("%s (message %d %s %d)", id, seq, rec.Outcome, rec.Code))
		}
		// Per live catalog: the message once per mailbox.
		for _, ln := range nodes {
			x, ok := ln.entries[id]
			if !ok || x.State != catalog.Committed {
				continue
			}
			k := shown{ln.name, x.Mailbox}
			if seen[k] == nil {
				seen[k] = map[int]string{}
			}
			if other, dup := seen[k][seq]; dup {
				res.Duplicated.Add(fmt.Sprintf("%s and %s in %s on %s", other, id, x.Mailbox, ln.name))
			} else {
				seen[k][seq] = id
			}
		}
	}

	// Count the catalogs that differ from the most common one.
	freq := map[string]int{}
	top := 0
	for _, d := range res.ContentDigests {
		freq[d]++
		top = max(top, freq[d])
	}
	res.Diverging = len(res.ContentDigests) - top

	res.StaleLeases = checkLeases(rep)

	// Orphans (informational): copies whose node no entry lists.
	for _, ln := range nodes {
		ln.st.CopyIDs(func(id string) bool {
			if e, ok := ln.entries[id]; !ok || !e.HasLocation(ln.name) {
				res.Orphans++
			}
			return true
		})
	}
	return res, nil
}

// phantomHolder is the first live node e lists whose store lacks the copy,
// or "".
func phantomHolder(byName map[string]*liveNode, e *catalog.Entry) string {
	for _, loc := range e.Locations {
		if ln := byName[loc]; ln != nil && !ln.st.Has(e.ID) {
			return loc
		}
	}
	return ""
}

// validHolders counts the distinct live nodes e lists whose store holds a
// valid copy of message seq (copyOK: the entry's checksum, the load
// generator's sequence number).
func validHolders(byName map[string]*liveNode, e *catalog.Entry, seq int, copyOK func(*liveNode, string, [32]byte) (int, bool)) int {
	n := 0
	seen := map[string]bool{}
	for _, loc := range e.Locations {
		ln := byName[loc]
		if ln == nil || seen[loc] {
			continue
		}
		seen[loc] = true
		if s, ok := copyOK(ln, e.ID, e.Sum); ok && s == seq {
			n++
		}
	}
	return n
}

// unlistedCopy is, for an entry that lists fewer than r distinct holders,
// the first live node e does not list whose store holds a copy with e's
// checksum, or "". An entry with r holders listed may leave copies out:
// rebuild and rebalance move copies and orphan cleanup trims the old ones
// after a grace.
func unlistedCopy(nodes []*liveNode, e *catalog.Entry, r int) string {
	listed := map[string]bool{}
	for _, loc := range e.Locations {
		listed[loc] = true
	}
	if len(listed) >= r {
		return ""
	}
	for _, ln := range nodes {
		if listed[ln.name] {
			continue
		}
		if data, err := ln.st.Get(e.ID); err == nil && store.Checksum(data) == e.Sum {
			return ln.name
		}
	}
	return ""
}

// deletedByNodes reports whether the ledger shows a message whose every
// copy its nodes deleted (not lost to a restore or an empty disk, which
// the lost check judges).
func deletedByNodes(lives []sim.CopyLife) bool {
	if len(lives) == 0 {
		return false
	}
	for _, l := range lives {
		if !l.Gone || l.Cause != sim.LostDeleted {
			return false
		}
	}
	return true
}

// checkQuorum asks the ledger, for every acknowledged message, how many
// distinct nodes held a durable copy when its 250 was sent: fewer than W
// is a 250 the array had no right to send. Runs without a ledger (reports
// of real processes) are not judged.
func checkQuorum(rep *sim.Report, res *Result) {
	if rep.Ledger == nil {
		return
	}
	w := rep.Config.WriteQuorum
	for i := range rep.Records {
		rec := &rep.Records[i]
		if rec.Outcome != sim.Accepted {
			continue
		}
		id := rec.CopyID()
		nodes := map[string]bool{}
		for _, l := range rep.Ledger[id] {
			if l.DurableAt(rec.Acked) {
				nodes[l.Node] = true
			}
		}
		if len(nodes) < w {
			res.UnderQuorum.Add(fmt.Sprintf("%s (%d durable of W=%d at %.6fs)%s", id, len(nodes), w, rec.Acked.Seconds(), describe(rep.Records, rec.Seq)))
		}
	}
}

// copySeq finds a valid copy of id on any of nodes and returns the load
// generator's sequence number in it, or -1.
func copySeq(nodes []*liveNode, id string, seed uint64) int {
	for _, ln := range nodes {
		if data, err := ln.st.Get(id); err == nil {
			if seq, ok := sim.MessageSeq(data, seed); ok {
				return seq
			}
		}
	}
	return -1
}

// describe says what the load generator saw of message seq, for findings.
func describe(records []sim.Record, seq int) string {
	if seq < 0 || seq >= len(records) {
		return " (no copy)"
	}
	r := &records[seq]
	s := fmt.Sprintf(" (message %d: %s", seq, r.Outcome)
	switch {
	case r.Code != 0 && r.Outcome != sim.Accepted:
		s += fmt.Sprintf(" %d", r.Code)
	case r.Reason != "":
		s += " " + r.Reason
	}
	return s + fmt.Sprintf(" by %s at %.3fs)", r.Node, r.Done.Seconds())
}

// contentDigest hashes every entry's whole encoding, in id order.
func contentDigest(entries map[string]catalog.Entry) string {
	ids := make([]string, 0, len(entries))
	for id := range entries {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	h := sha256.New()
	var buf []byte
	for _, id := range ids {
		e := entries[id]
		buf = e.Encode(buf[:0])
		h.Write(binary.AppendUvarint(nil, uint64(len(buf))))
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// sameEntry compares two versions of an entry field by field.
func sameEntry(a, b *catalog.Entry) bool {
	return bytes.Equal(a.Encode(nil), b.Encode(nil))
}
