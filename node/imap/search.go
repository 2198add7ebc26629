package imap

import (
	"bufio"
	"bytes"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	s.idleDone()
	v := s.sel
	data := &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for i := range v.msgs {
		m := &v.msgs[i]
		if m.gone {
			continue
		}
		ok, err := s.matches(v, i, criteria)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		uids.AddNum(imap.UID(m.e.UID))
		num := uint32(i + 1)
		if kind == imapserver.NumKindUID {
			num = m.e.UID
		} else {
			seqs.AddNum(num)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	if options.ReturnSave {
		v.searchRes = uids
	}
	return data, nil
}

// matches evaluates a SEARCH key on message i (RFC 9051 section 6.4.4).
// HEADER, BODY and TEXT are case-insensitive substring matches on the raw
// header and body (no MIME decoding).
func (s *session) matches(v *view, i int, c *imap.SearchCriteria) (bool, error) {
	m := &v.msgs[i]
	for _, set := range c.SeqNum {
		if !v.names(set, i) {
			return false, nil
		}
	}
	for _, set := range c.UID {
		if !v.names(set, i) {
			return false, nil
		}
	}
	if !matchDay(time.Unix(0, m.e.Received), c.Since, c.Before) {
		return false, nil
	}
	for _, f := range c.Flag {
		if !hasFlag(m.e.Flags, string(f)) {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if hasFlag(m.e.Flags, string(f)) {
			return false, nil
		}
	}
	if (c.Larger != 0 && m.e.Size <= c.Larger) || (c.Smaller != 0 && m.e.Size >= c.Smaller) {
		return false, nil
	}
	if len(c.Header) > 0 || len(c.Body) > 0 || len(c.Text) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		data, err := s.read(m.e.ID)
		if err != nil {
			return false, err
		}
		head, body := data, []byte(nil)
		if k := bytes.Index(data, []byte("\r\n\r\n")); k >= 0 {
			head, body = data[:k+2], data[k+4:]
		}
		hdr, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(slices.Clip(head), '\r', '\n'))))
		for _, h := range c.Header {
			vals := hdr.Values(h.Key)
			found := len(vals) > 0 && h.Value == ""
			for _, val := range vals {
				found = found || containsFold(val, h.Value)
			}
			if !found {
				return false, nil
			}
		}
		for _, t := range c.Body {
			if !containsFold(string(body), t) {
				return false, nil
			}
		}
		for _, t := range c.Text {
			if !containsFold(string(data), t) {
				return false, nil
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			sent, err := parseMailDate(hdr.Get("Date"))
			if err != nil || !matchDay(sent, c.SentSince, c.SentBefore) {
				return false, nil
			}
		}
	}
	for k := range c.Not {
		if ok, err := s.matches(v, i, &c.Not[k]); err != nil || ok {
			return false, err
		}
	}
	for _, or := range c.Or {
		a, err := s.matches(v, i, &or[0])
		if err != nil {
			return false, err
		}
		b, err := s.matches(v, i, &or[1])
		if err != nil {
			return false, err
		}
		if !a && !b {
			return false, nil
		}
	}
	return true, nil
}

// parseMailDate parses a Date header (RFC 5322 section 3.3).
func parseMailDate(v string) (time.Time, error) { return mail.ParseDate(v) }

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// matchDay compares dates without time or zone (RFC 9051 section 6.4.4).
func matchDay(t, since, before time.Time) bool {
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	return before.IsZero() || t.Before(before)
}

// read returns a message's bytes from any live copy, as the catalog has it
// now.
