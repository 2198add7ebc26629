package sim

import (
	"bytes"
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
