package node

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchIngest delivers b.N 4 KiB messages, one SMTP connection and
// transaction each, from `clients` concurrent senders spread over the
// cluster's listeners, and reports acknowledged messages per second. Every
// 250 counted was durable (fsync) on W nodes.
//
// It also reports the process's CPU time per message (cpu-µs/msg: the
// nodes and the senders together), which moves far less than msgs/s with
// the machine's other load: the figure to compare a change by on a busy
// machine, with allocs/op and B/op.
func benchIngest(b *testing.B, nodes, r, w, clients int) {
	c := newTestCluster(b, nodes, r, w)
	var addrs []string
	for i := 1; i <= nodes; i++ {
		addrs = append(addrs, c.nodes[fmt.Sprintf("n%d", i)].Addr("smtp"))
	}
	msg := testMessage("bench", 4096)
	b.SetBytes(int64(len(msg)))
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := send(b, addrs[int(i)%len(addrs)], []string{"alice@example.com"}, msg); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el, cpu := time.Since(start), processCPU()-cpu0
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d deliveries failed", f, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	}
}

// Issue figure: single-node durable ingest (R=1), 4 KiB, one transaction
// per connection. Reference on this machine: Postfix ~860 msgs/s.
func BenchmarkIngestSingleNode(b *testing.B) { benchIngest(b, 1, 1, 1, 32) }

// Issue figure: three-node array, R=2 W=2; target >= 2,600 msgs/s.
func BenchmarkIngestThreeNodesR2(b *testing.B) { benchIngest(b, 3, 2, 2, 48) }
