package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The shape of `go tool pprof -traces` output (Go 1.26).
const tracesOut = `File: mailarray
Type: cpu
Time: 2026-12-07 16:00:00 UTC
Duration: 10s, Total samples = 110ms ( 0.9%)
-----------+-------------------------------------------------------
      30ms   syscall.Syscall
             syscall.Fdatasync
             go.etcd.io/bbolt.fdatasync
             go.etcd.io/bbolt.(*Tx).Commit
             mailarray/node/catalog.(*Catalog).Put
-----------+-------------------------------------------------------
      20ms   runtime.memmove
             go.etcd.io/bbolt.(*Tx).write
             go.etcd.io/bbolt.(*Tx).Commit
             mailarray/node/store.(*Store).Put
-----------+-------------------------------------------------------
      10ms   runtime.mallocgc
             bytes.growSlice
             github.com/emersion/go-smtp.(*Conn).handleData
-----------+-------------------------------------------------------
         bytes:  4096
      10ms   internal/poll.(*FD).Write
             net.(*conn).Write
             mailarray/node/replica.(*stream).send
             mailarray/node.(*Node).deliver
             github.com/emersion/go-smtp.(*Conn).handleData
-----------+-------------------------------------------------------
      10ms   mailarray/node/strategy.(*hash).Pick
             mailarray/node.(*Node).place
-----------+-------------------------------------------------------
      10ms   bytes.IndexByte
             mailarray/node.(*Node).commitTxn
             mailarray/node/smtp.(*session).Data
             github.com/emersion/go-smtp.(*Conn).handleData
-----------+-------------------------------------------------------
      10ms   bufio.(*Writer).Write
             github.com/emersion/go-imap/v2/imapserver.(*FetchWriter).CreateMessage
             mailarray/node.(*imapSession).Fetch
-----------+-------------------------------------------------------
      10ms   runtime.futex
             runtime.findRunnable
             runtime.schedule
-----------+-------------------------------------------------------
`

func TestParseTracesAndBreakdown(t *testing.T) {
	samples, err := parseTraces(strings.NewReader(tracesOut))
	require.NoError(t, err)
	require.Len(t, samples, 8)
	assert.Equal(t, 30*time.Millisecond, samples[0].Value)
	assert.Equal(t, "syscall.Syscall", samples[0].Frames[0])
	assert.Equal(t, []string{"internal/poll.(*FD).Write", "net.(*conn).Write", "mailarray/node/replica.(*stream).send", "mailarray/node.(*Node).deliver", "github.com/emersion/go-smtp.(*Conn).handleData"},
		samples[3].Frames, "a label line is not a frame")

	for _, tt := range []struct {
		i    int
		want string
	}{
		{0, "fsync"},              // inside a bbolt commit inside the catalog
		{1, "bbolt commit"},       // the commit's own work, for the store
		{2, "GC and allocation"},  // an allocation during the SMTP dialogue
		{3, "replication frames"}, // a socket write of a frame
		{4, "placement"},
		{5, "node core (transaction, delivery, retrieval)"}, // the node's code, called from the session
		{6, "IMAP"}, // go-imap's writer, called back from the node
		{7, "scheduler and runtime"},
	} {
		assert.Equal(t, tt.want, categorize(samples[tt.i].Frames), "sample %d", tt.i)
	}

	shares, total := breakdown(samples)
	assert.Equal(t, 110*time.Millisecond, total)
	assert.Equal(t, share{"fsync", 30 * time.Millisecond}, shares[0])
	assert.Equal(t, share{"bbolt commit", 20 * time.Millisecond}, shares[1])

	var b strings.Builder
	formatBreakdown(&b, shares, total, 3)
	assert.Contains(t, b.String(), "fsync")
	assert.Contains(t, b.String(), "10ms", "fsync per message: 30ms over 3 messages")
}

func TestParseTracesRefusesGarbage(t *testing.T) {
	_, err := parseTraces(strings.NewReader("-----------+----\nnot-a-duration runtime.futex\n"))
	assert.Error(t, err)
}

func TestParseStraceSummary(t *testing.T) {
	const out = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 45.10    0.451000          45     10000           fdatasync
 30.00    0.300000          10     30000      1200 write
 24.90    0.249000           8     30000           read
------ ----------- ----------- --------- --------- ----------------
100.00    1.000000          14     70000      1200 total
`
	got, err := parseStrace(strings.NewReader(out))
	require.NoError(t, err)
	assert.Equal(t, []syscallCount{{"read", 30000, 0.249}, {"write", 30000, 0.3}, {"fdatasync", 10000, 0.451}}, got.Calls)
	assert.Equal(t, int64(70000), got.Total)
}
