package strategy

import (
	"bytes"
)

// maxHeaderScanBytes bounds how much of a message Urgent reads: the header
// block of real mail is a few KiB; a longer one is not worth scanning on
// the delivery path.
const maxHeaderScanBytes = 64 << 10

// Urgent reports whether msg (RFC 5322, CRLF or LF line ends) is marked
// urgent in its header block by any of:
//   - Priority: urgent (RFC 2156 section 5.3, values normal, non-urgent, urgent);
//   - Importance: high (RFC 2156 section 5.3, values low, normal, high);
//   - X-Priority: 1 (de facto, set by common mail clients; "1 (Highest)").
//
// Only the header block is read (at most maxHeaderScanBytes); folded field
// bodies (RFC 5322 section 2.2.3) are unfolded. Comments and case are
// ignored in the values.
func Urgent(msg []byte) bool {
	if len(msg) > maxHeaderScanBytes {
		msg = msg[:maxHeaderScanBytes]
	}
	var name, value []byte // the field being gathered
	urgent := false
	flush := func() {
		if name != nil && fieldUrgent(name, value) {
			urgent = true
		}
		name, value = nil, nil
	}
	for len(msg) > 0 && !urgent {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // end of the header block
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name != nil {
				value = append(append(value, ' '), line...)
			}
			continue
		}
		flush()
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue // not a field (an mbox From_ line, say): ignore it
		}
		name = bytes.TrimSpace(line[:colon])
		value = append([]byte(nil), line[colon+1:]...)
	}
	flush()
	return urgent
}

// fieldUrgent judges one field.
func fieldUrgent(name, value []byte) bool {
	v := firstToken(value)
	switch {
	case bytes.EqualFold(name, []byte("Priority")):
		return bytes.EqualFold(v, []byte("urgent"))
	case bytes.EqualFold(name, []byte("Importance")):
		return bytes.EqualFold(v, []byte("high"))
	case bytes.EqualFold(name, []byte("X-Priority")):
		return bytes.Equal(v, []byte("1"))
	}
	return false
}

// firstToken is the value's first word, stopping at white space, a
// comment or a ';'.
func firstToken(v []byte) []byte {
	v = bytes.TrimLeft(v, " \t")
	end := bytes.IndexAny(v, " \t(;")
	if end >= 0 {
		v = v[:end]
	}
	return v
}
