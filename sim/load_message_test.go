package sim

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestLoadMessage checks that the bytes the soak expects are the ones a
// sender writes: the seeded Message-ID and exactly the record's size.
func TestLoadMessage(t *testing.T) {
	for _, size := range []int{minMessageBytes, 1000, 4096, 100_000} {
		rec := &Record{Seq: 42, Mailbox: "user3@example.com", Size: size}
		got := LoadMessage(rec, 7)
		assert.Len(t, got, size, "size %d", size)
		assert.True(t, bytes.Contains(got, []byte("\r\nMessage-ID: <42.7@load.test>\r\n")), "size %d: Message-ID", size)
		assert.True(t, bytes.HasSuffix(got, []byte("\r\n")), "size %d: ends with CRLF", size)
		assert.Equal(t, got, LoadMessage(rec, 7), "size %d: not repeatable", size)
	}
}
