package sim

import (
	"bufio"
	"bytes"
	"net/textproto"
	"strconv"
	"strings"
)

// LoadMessage returns the bytes a load sender writes for rec in a run
// with seed (the DATA content, before the server adds its Received
// header): the real-process soak compares what POP3 serves with it.
func LoadMessage(rec *Record, seed uint64) []byte {
	filler := []byte(strings.Repeat(fillerLine, rec.Size/len(fillerLine)+1))
	var b bytes.Buffer
	writeLoadBody(&b, rec, seed, filler) // a bytes.Buffer does not fail
	return b.Bytes()
}

// MessageSeq returns the sequence number of the load message data is, from
// the Message-ID header a load sender writes, <seq.seed@load.test>
// (writeLoadBody); false when data is not a message of the run with seed.
// The checkers identify stored and served messages by it, not by the
// array's word.
func MessageSeq(data []byte, seed uint64) (int, bool) {
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(data))).ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return 0, false
	}
	id := strings.TrimSpace(h.Get("Message-Id"))
	suffix := "." + strconv.FormatUint(seed, 10) + "@load.test>"
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, suffix) {
		return 0, false
	}
	seq, err := strconv.Atoi(id[1 : len(id)-len(suffix)])
	if err != nil || seq < 0 {
		return 0, false
	}
	return seq, true
}
