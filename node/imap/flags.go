package imap

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailarray/node/catalog"
)

func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	defer s.svc.observe("store", time.Now())
	s.idleDone()
	v := s.sel
	if v.readOnly {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "READ-ONLY", Text: "mailbox is read-only (EXAMINE)"}
	}
	var given []string
	for _, f := range flags.Flags {
		f := canonicalFlag(string(f))
		if f == `\Recent` || f == string(imap.FlagWildcard) || len(f) > maxFlagBytes {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: fmt.Sprintf("flag %q cannot be stored", f)}
		}
		given = append(given, f)
	}
	var op func([]string) []string
	switch flags.Op {
	case imap.StoreFlagsSet:
		op = func([]string) []string { return addFlags(nil, given...) }
	case imap.StoreFlagsAdd:
		op = func(f []string) []string { return addFlags(f, given...) }
	case imap.StoreFlagsDel:
		op = func(f []string) []string { return removeFlags(f, given...) }
	}
	idx := v.resolve(numSet)
	ids := make([]string, 0, len(idx))
	for _, i := range idx {
		if !v.msgs[i].gone {
			ids = append(ids, v.msgs[i].e.ID)
		}
	}
	updated, err := s.setFlags(ids, op)
	if err != nil {
		if e := (*imap.Error)(nil); errors.As(err, &e) {
			return err
		}
		s.svc.log.Error("imap: store", "mailbox", v.mailbox, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "flags not stored, try again"}
	}
	for _, i := range idx {
		m := &v.msgs[i]
		if f, ok := updated[m.e.ID]; ok {
			m.e.Flags = f
		}
		if flags.Silent || m.gone {
			continue
		}
		rw := w.CreateMessage(uint32(i + 1))
		rw.WriteUID(imap.UID(m.e.UID))
		rw.WriteFlags(imapFlags(m.e.Flags))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// setFlags rewrites the flags of the messages ids with op: a new version
// of each entry whose flags change, stored and pushed to every live node
// by Mailbox.StoreFlags before it returns (like an expunge). It returns
// the new flags by id.
func (s *session) setFlags(ids []string, op func([]string) []string) (map[string][]string, error) {
	var changed []catalog.Entry
	out := make(map[string][]string, len(ids))
	for _, id := range ids {
		e, ok := s.mb.Get(id)
		if !ok || !e.Live() {
			continue
		}
		f := op(slices.Clone(e.Flags))
		if len(f) > maxFlags {
			return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: fmt.Sprintf("at most %d flags per message", maxFlags)}
		}
		out[id] = f
		if slices.Equal(f, e.Flags) {
			continue
		}
		e.Flags = f
		changed = append(changed, e)
	}
	if len(changed) == 0 {
		return out, nil
	}
	if err := s.mb.StoreFlags(s.ctx, changed); err != nil {
		return nil, err
	}
	return out, nil
}

// --- flags ---

// canonicalFlag spells system flags the standard way (flags are
// case-insensitive, RFC 9051 section 2.3.2); keywords are kept as given.
func canonicalFlag(f string) string {
	for _, sf := range systemFlags {
		if strings.EqualFold(f, string(sf)) {
			return string(sf)
		}
	}
	if strings.EqualFold(f, `\Recent`) {
		return `\Recent`
	}
	return f
}

func hasFlag(flags []string, f string) bool {
	return slices.ContainsFunc(flags, func(x string) bool { return strings.EqualFold(x, f) })
}

// addFlags returns flags with more added, sorted, without duplicates.
func addFlags(flags []string, more ...string) []string {
	out := slices.Clone(flags)
	for _, f := range more {
		if !hasFlag(out, f) {
			out = append(out, canonicalFlag(f))
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

func removeFlags(flags []string, less ...string) []string {
	out := slices.DeleteFunc(slices.Clone(flags), func(x string) bool {
		return slices.ContainsFunc(less, func(f string) bool { return strings.EqualFold(x, f) })
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}
