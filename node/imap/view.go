package imap

import (
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailarray/node/catalog"
)

// view is the selected mailbox as the client knows it.
type view struct {
	mailbox  string
	readOnly bool
	msgs     []message // by sequence number - 1; UIDs strictly increasing
	gen      uint64    // the mailbox's generation at the last refresh
	pending  bool      // entries without a UID were seen at the last refresh
	notify   chan struct{}
	// nextAssign and backoff pace assignment retries after a failure.
	nextAssign time.Time
	backoff    time.Duration
	searchRes  imap.UIDSet // SEARCHRES ($), RFC 5182
}

type message struct {
	e    catalog.Entry // as of the last refresh (slices shared: read only)
	gone bool          // deleted elsewhere; its EXPUNGE is not sent yet
}

// --- updates ---

func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	s.idleDone()
	if s.sel == nil {
		return nil
	}
	return s.refresh(w, allowExpunge, false)
}

func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	// go-imap runs Idle on a goroutine of its own, which may first run
	// after the connection closed: Close cancels the context before its
	// barrier (idleDone) and only then unselects, so an Idle that gets the
	// lock after the barrier must not look at the selection.
	if s.ctx.Err() != nil {
		return nil
	}
	if s.sel == nil {
		select {
		case <-stop:
		case <-s.ctx.Done():
		}
		return nil
	}
	v := s.sel
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	if err := s.refresh(w, true, false); err != nil {
		return err
	}
	for {
		select {
		case <-stop:
			return nil
		case <-s.ctx.Done():
			return nil
		case <-v.notify:
		case <-tick.C:
			if !v.pending {
				continue
			}
		}
		if err := s.refresh(w, true, false); err != nil {
			return err
		}
	}
}

// snapshot returns the mailbox's committed entries that have a UID, in UID
// order, first assigning UIDs to those without one when assign is set and
// the retry pacing allows. A UID carried by two entries (see node/imap_uid.go)
// shows only the first in (Received, ID) order until the duplicate is
// renumbered.
func (s *session) snapshot(v *view, assign bool) []catalog.Entry {
	list := s.mb.List()
	pending := NeedsUIDs(list)
	if pending && assign && !time.Now().Before(v.nextAssign) {
		if err := s.mb.AssignUIDs(s.ctx); err != nil {
			v.backoff = min(max(2*v.backoff, pollEvery), assignBackoffMax)
			v.nextAssign = time.Now().Add(v.backoff)
			s.svc.log.Warn("imap: UID assignment failed; new messages stay hidden until it succeeds", "mailbox", v.mailbox, "retry_in", v.backoff, "err", err)
		} else {
			v.backoff, v.nextAssign = 0, time.Time{}
		}
		list = s.mb.List()
		pending = NeedsUIDs(list)
	}
	v.pending = pending
	out := list[:0]
	for _, e := range list {
		if e.UID != 0 {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b catalog.Entry) int {
		if a.UID != b.UID {
			return int(int64(a.UID) - int64(b.UID))
		}
		return ByArrival(a, b)
	})
	return slices.CompactFunc(out, func(a, b catalog.Entry) bool { return a.UID == b.UID })
}

// refresh brings the view up to date with the catalog and tells the client
// what changed: EXPUNGE (when allowed), EXISTS, FETCH FLAGS.
func (s *session) refresh(w *imapserver.UpdateWriter, allowExpunge, force bool) error {
	v := s.sel
	gen := s.svc.generation(v.mailbox)
	hasGone := false
	for i := range v.msgs {
		if v.msgs[i].gone {
			hasGone = true
			break
		}
	}
	if !force && gen == v.gen && !v.pending && !(hasGone && allowExpunge) {
		return nil
	}
	v.gen = gen
	cur := s.snapshot(v, true)
	// Walk the view and the catalog, both in UID order.
	var flagsChanged []imap.UID
	before := len(v.msgs)
	j := 0
	var top uint32
	for i := range v.msgs {
		m := &v.msgs[i]
		top = m.e.UID
		if m.gone {
			continue
		}
		for j < len(cur) && cur[j].UID < m.e.UID {
			// A UID below the view's highest that the view does not have:
			// an assignment that reached this node late (see node/imap_uid.go).
			// Sequence numbers cannot make room for it: it shows at the
			// next SELECT.
			j++
		}
		if j < len(cur) && cur[j].UID == m.e.UID && cur[j].ID == m.e.ID {
			if !slices.Equal(cur[j].Flags, m.e.Flags) {
				flagsChanged = append(flagsChanged, imap.UID(m.e.UID))
			}
			m.e = cur[j]
			j++
			continue
		}
		m.gone = true
	}
	for ; j < len(cur); j++ {
		if cur[j].UID > top {
			v.msgs = append(v.msgs, message{e: cur[j]})
			top = cur[j].UID
		}
	}
	added := len(v.msgs)
	if allowExpunge {
		// Highest sequence number first: each EXPUNGE renumbers only the
		// messages above it (RFC 9051 section 7.5.1).
		for i := len(v.msgs) - 1; i >= 0; i-- {
			if v.msgs[i].gone {
				if err := w.WriteExpunge(uint32(i + 1)); err != nil {
					return err
				}
				v.msgs = slices.Delete(v.msgs, i, i+1)
			}
		}
	}
	if added > before {
		if err := w.WriteNumMessages(uint32(len(v.msgs))); err != nil {
			return err
		}
	}
	for _, uid := range flagsChanged {
		if i, ok := v.indexOf(uid); ok {
			if err := w.WriteMessageFlags(uint32(i+1), uid, imapFlags(v.msgs[i].e.Flags)); err != nil {
				return err
			}
		}
	}
	return nil
}

// indexOf finds uid in the view.
func (v *view) indexOf(uid imap.UID) (int, bool) {
	return slices.BinarySearchFunc(v.msgs, uint32(uid), func(m message, u uint32) int {
		return int(int64(m.e.UID) - int64(u))
	})
}

// resolve returns the view indexes numSet names, in order. "*" is the
// last message (or the highest UID); n:* with n above it still names it
// (RFC 9051 section 6.4.8).
func (v *view) resolve(numSet imap.NumSet) []int {
	if imap.IsSearchRes(numSet) {
		numSet = v.searchRes
	}
	var out []int
	switch set := numSet.(type) {
	case imap.SeqSet:
		last := uint32(len(v.msgs))
		for _, r := range set {
			lo, hi := staticRange(r.Start, r.Stop, last)
			for seq := max(lo, 1); seq <= min(hi, last); seq++ {
				out = append(out, int(seq-1))
			}
		}
	case imap.UIDSet:
		var last uint32
		if len(v.msgs) > 0 {
			last = v.msgs[len(v.msgs)-1].e.UID
		}
		for _, r := range set {
			lo, hi := staticRange(uint32(r.Start), uint32(r.Stop), last)
			from, _ := v.indexOf(imap.UID(lo))
			for i := from; i < len(v.msgs) && v.msgs[i].e.UID <= hi; i++ {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// names reports whether numSet names message i of the view, resolving "*"
// against the view as resolve does. imap.NumSet's Contains does not: with
// it "*" alone names nothing and n:* with n above the highest UID misses
// the last message.
func (v *view) names(numSet imap.NumSet, i int) bool {
	if imap.IsSearchRes(numSet) {
		numSet = v.searchRes
	}
	switch set := numSet.(type) {
	case imap.SeqSet:
		last, seq := uint32(len(v.msgs)), uint32(i+1)
		for _, r := range set {
			if lo, hi := staticRange(r.Start, r.Stop, last); lo <= seq && seq <= hi {
				return true
			}
		}
	case imap.UIDSet:
		last, uid := v.msgs[len(v.msgs)-1].e.UID, v.msgs[i].e.UID
		for _, r := range set {
			if lo, hi := staticRange(uint32(r.Start), uint32(r.Stop), last); lo <= uid && uid <= hi {
				return true
			}
		}
	}
	return false
}

func staticRange(start, stop, last uint32) (uint32, uint32) {
	if start == 0 {
		start = last
	}
	if stop == 0 {
		stop = last
	}
	if start > stop {
		start, stop = stop, start
	}
	return start, stop
}
