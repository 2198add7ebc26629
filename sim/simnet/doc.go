// Package simnet is a deterministic in-process network for programs that
// run inside a testing/synctest bubble: hosts with IP literals, TCP-like
// streams, UDP datagrams, links with latency, jitter, bandwidth and loss,
// partitions, crashes, paused hosts and stalled links, and one driver
// goroutine that delivers every packet in a canonical order. A Host offers
// Listen, ListenPacket and DialContext with the net package's signatures,
// so unmodified servers and clients (net/http, go-smtp, miekg/dns, serf)
// run over it. It imports only the standard library and xxhash; package
// sim builds the mail simulator on it.
//
// # Parts
//
//   - Net (net.go) is the network: hosts, links, partitions, the trace,
//     the digest, notes, the counters and the seeded streams. Net.Host(ip)
//     returns a *Host: Listen, ListenPacket and DialContext over IP
//     literals, with ports picked per destination (a hash of the
//     destination and the dial's number there). Host.Crash,
//     Host.Restart and Host.SetDown, Net.Partition, Net.Heal and
//     Net.SetLink are the faults; Host.Pause and Host.Resume,
//     Net.StallLink and Net.SetPath (holdnet.go) the time faults.
//   - NetConfig and LinkConfig (config.go) are the model, with
//     DefaultNetConfig (a 1 Gbit/s LAN, Linux's socket limits) and Validate.
//   - Conn and Listener (conn.go) are TCP-like streams: buffered (Write
//     does not wait for the peer to read, up to StreamBufferBytes),
//     deadlines that wake blocked calls, timeouts that are net.Error with
//     Timeout() and Temporary() true and match os.ErrDeadlineExceeded,
//     io.EOF after the peer's close, ECONNREFUSED, ECONNRESET after a
//     peer's crash (errors.go).
//   - PacketConn (packet.go) is UDP, with loss, a bounded receive queue and
//     temporary deadline errors (miekg/dns stops serving on any other).
//     Dialing "udp" gives a connected conn that is also a net.PacketConn,
//     as dns.Client.ExchangeWithConnContext needs.
//   - The driver (driver.go, Net.Run or Net.Start) delivers every event;
//     Net.AfterFunc schedules callbacks among them.
//
// # What it guarantees
//
// Canonical ordering. Senders only queue events. The driver loops:
// synctest.Wait() until every other goroutine of the bubble is durably
// blocked; take the events queued since; sort them by (stream, sequence
// number); draw their latency, jitter and loss from the net's seeded PCG in
// that order; push them on a heap keyed by (due time, canonical order);
// deliver the earliest due event, and only that one, before waiting again.
// Whatever goroutine sent first, the draws and the delivery order are the
// same. A sender pokes the driver only when its event could be due before
// the driver's next wake-up; events queued without a poke are drawn, when
// the driver wakes, as of the instant they were sent, instants in order.
// AfterFunc callbacks are events too, ordered at equal times by (key, call
// order within the key).
//
// Deterministic, given the same seed, config and sequence of calls per
// stream: every draw, every delivery time and order, the ephemeral ports of
// a host (if its dials to each destination come in the same order: dials
// to different destinations may race), the trace, and
// Net.Digest, an xxHash64 of every event's time, stream, sequence, outcome
// and payload and of every note. Notes (Net.Note) recorded during one
// quiescent step are sorted before they are hashed, so goroutines woken
// together may record in any order. Net.Rand(name) is a stream derived
// from the seed and the name only (StreamSeed), the same in every run.
//
// Not deterministic by itself: the order in which goroutines that one
// delivery wakes together run, and so anything they do with shared state
// other than sending (taking pooled connections, drawing from a shared
// stream, picking ports). The caller makes that canonical: pin the bubble
// to one P (GOMAXPROCS=1), stagger actors that start at the same instant by
// seeded offsets or start them from AfterFunc, record through Note. Calls
// of AfterFunc with one key from several goroutines are ordered by who
// called first. Wall-clock time is outside the model (the bubble fakes
// time.Now; the package never reads the kernel's clock).
//
// # Concurrency rules
//
//   - Everything a Host returns (conns, listeners, packet conns) may be used
//     from any goroutine of the bubble, as the net package's are; Net's
//     methods too. Nothing may be called from outside the bubble of NewNet.
//   - Exactly one driver runs per Net (a second Run panics), and nothing
//     else in the bubble may call synctest.Wait while it runs.
//   - A goroutine waiting on a sync.Mutex is not durably blocked: a caller
//     that holds a lock across network I/O freezes the fake clock and the
//     run hangs silently (bbolt's Update, Batch or a long View, for one).
//   - AfterFunc callbacks run on the driver goroutine: they must not block,
//     and they must not call synctest.Wait.
//   - Lock order: Host.mu and the conns' mutexes may be held while taking
//     Net.mu; Net.mu is always innermost.
//
// # Teardown
//
// A synctest bubble ends only when every goroutine it started has returned:
// stop the clients; close idle pooled connections
// (http.Transport.CloseIdleConnections); close the servers
// (http.Server.Close, not Shutdown, which polls with global-rand jitter);
// then stop the driver (cancel Run's context, or call Start's stop): it
// keeps delivering the FINs and resets still queued, then returns.
// Segments held by a partition are abandoned. A goroutine that sends after
// the driver has returned waits forever, and synctest.Test reports the
// deadlock.
//
// # Model
//
// Each direction of a host pair is a link with latency, jitter, bandwidth
// (serialisation delay, FIFO per link) and loss. Datagrams are lost; stream
// segments are not (TCP retransmits) but arrive one RetransmitTimeout late.
// Writes a goroutine makes within one step travel as one segment. A
// connect takes a round trip (SYN, SYN-ACK). A partition or a down host
// swallows datagrams and holds stream segments, so connects time out after
// NetConfig.ConnectTimeout and streams stall, then resume in order when it
// heals. A crashed host's process is gone but its machine answers: SYNs
// are refused, and its peers' streams are reset. A stalled link or a
// paused host holds stream segments and datagrams alike, losing none, and
// sends them again in order when restored or resumed.
package simnet
