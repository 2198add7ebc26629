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

// TestMessageSeq: the checkers read a load message's sequence number back
// from its Message-ID, and only for the run's seed.
func TestMessageSeq(t *testing.T) {
	rec := &Record{Seq: 42, Mailbox: "user3@example.com", Size: 1000}
	seq, ok := MessageSeq(LoadMessage(rec, 7), 7)
	assert.True(t, ok)
	assert.Equal(t, 42, seq)
	for name, data := range map[string][]byte{
		"another seed":  LoadMessage(rec, 8),
		"no Message-ID": []byte("Subject: x\r\n\r\nbody\r\n"),
		"negative":      []byte("Message-ID: <-1.7@load.test>\r\n\r\n"),
		"not a number":  []byte("Message-ID: <x.7@load.test>\r\n\r\n"),
		"not a message": []byte("\x00\x01"),
	} {
		_, ok := MessageSeq(data, 7)
		assert.False(t, ok, name)
	}
}
