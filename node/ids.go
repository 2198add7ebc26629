package node

import (
	"encoding/hex"
	"strconv"
	"time"

	"mailarray/node/env"
)

// newTxID returns a transaction id: 12 hex digits of milliseconds since
// the epoch then 10 random hex digits. Ids sort by acceptance time, which
// orders a mailbox's messages, and collide with probability 2^-40 per
// millisecond.
func newTxID(r *env.Rand, now time.Time) string {
	var b [11]byte
	ms := uint64(now.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	v := r.Uint64()
	for i := 6; i < 11; i++ {
		b[i] = byte(v)
		v >>= 8
	}
	return hex.EncodeToString(b[:])
}

// copyID names the copy of transaction tx for its i-th recipient.
func copyID(tx string, i int) string { return tx + "." + strconv.Itoa(i) }
