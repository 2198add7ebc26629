package pop3

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkRetr1000 RETRs a whole mailbox of 1,000 4 KiB messages over
// loopback per iteration, one session each, as the simulator's load
// generator does. The reference is Dovecot at ~6,800 msgs/s on this kind of
// machine (docs/design.md).
func BenchmarkRetr1000(b *testing.B) {
	const messages, msgBytes = 1000, 4 << 10
	backend := newMemBackend()
	line := bytes.Repeat([]byte("x"), 76)
	line = append(line, '\r', '\n')
	msgs := make([]string, messages)
	for i := range msgs {
		var m []byte
		m = fmt.Appendf(m, "Subject: message %d\r\n\r\n", i)
		for len(m)+len(line) <= msgBytes {
			m = append(m, line...)
		}
		m = append(m, bytes.Repeat([]byte("."), msgBytes-len(m)-2)...) // a dot-stuffed line too
		m = append(m, '\r', '\n')
		msgs[i] = string(m)
	}
	backend.addUser("bench", "pw", msgs...)
	cfg := testConfig()
	ts := startServer(b, cfg, backend, nil)

	b.ReportAllocs()
	b.SetBytes(messages * msgBytes)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		c := ts.login(b, "bench", "pw")
		for n := 1; n <= messages; n++ {
			m, err := c.Retr(n)
			if err != nil {
				b.Fatal(err)
			}
			if len(m) != msgBytes {
				b.Fatalf("message %d: %d octets", n, len(m))
			}
		}
		require.NoError(b, c.Quit())
	}
	b.ReportMetric(float64(b.N*messages)/time.Since(start).Seconds(), "msgs/s")
}
