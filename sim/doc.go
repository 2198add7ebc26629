// Package sim is mailarray's deterministic in-process network: the world the
// simulator's nodes live in. The same node code that serves real sockets
// runs here unchanged, because a node reaches the network only through its
// env.Net, and this package provides one per simulated machine.
//
// # Parts
//
//   - Net (simnet.go) is the network: hosts, links, partitions, the
//     digest and the counters. Net.Host(ip) returns a *Host, the node's
//     env.Net: Listen, ListenPacket and DialContext over IP literals, with
//     deterministic ephemeral ports. Host.Crash, Host.Restart and
//     Host.SetDown, Net.Partition, Net.Heal and Net.SetLink are the faults.
//   - Conn and Listener (conn.go) are TCP-like streams: buffered (Write
//     does not wait for the peer to read, up to a large bound), deadlines
//     that wake blocked calls, timeouts that are net.Error with Timeout()
//     and Temporary() true and match os.ErrDeadlineExceeded, io.EOF after
//     the peer's close, ECONNREFUSED, ECONNRESET after a peer's crash.
//   - PacketConn (packet.go) is UDP, with loss, a bounded receive queue and
//     temporary deadline errors (miekg/dns stops serving on any other).
//     Dialing "udp" gives a connected conn that is also a net.PacketConn,
//     as dns.Client.ExchangeWithConnContext needs.
//   - The driver (driver.go) delivers every network event.
//   - Cluster and View (membership.go) model serf: each node's view learns
//     of a crash after a seeded detection delay, of joins, leaves and tag
//     changes after a seeded gossip delay.
//   - WallNow reads the kernel's clock, which the bubble does not fake,
//     for the report's wall-time figures.
//
// # Determinism recipe
//
// The simulator runs inside testing/synctest, whose bubble gives every
// goroutine a fake clock that advances only when all of them are durably
// blocked. The fake clock alone does not make runs repeatable, since
// goroutines still run in varying order. What does:
//
//  1. One driver goroutine (Net.Run) owns all delivery. Senders only queue
//     events. The driver loops: synctest.Wait() until every other
//     goroutine is blocked; take the events queued since; sort them by
//     (stream, sequence number); draw their latency, jitter and loss from
//     the net's seeded PCG in that order; push them on a heap keyed by
//     (due time, canonical order); deliver the earliest due event, and
//     only that one, before waiting again. Whatever goroutine sent first,
//     the draws and the delivery order are the same.
//  2. Every random choice comes from the seed: Net.Rand(name) gives each
//     node its own stream (for env.Env.Rand), derived from the seed and
//     the name only. Node code must not use global math/rand (nor
//     dns.Id's default, which a scenario seeds).
//  3. What goroutines woken together record is made canonical: Net.Note
//     lines of one quiescent step are sorted before they are hashed.
//  4. Actors that start at the same virtual instant race for ports and
//     pooled connections; timers of different nodes that coincide to the
//     nanosecond race too. Stagger them by seeded offsets (env.Rand.Jitter)
//     or start them from the driver with Net.AfterFunc, which runs
//     callbacks in canonical order.
//  5. Faults are applied from one goroutine (the fault schedule) or from
//     Net.AfterFunc callbacks, so their draws happen in a fixed order.
//
// Net.Digest hashes every event's time, stream, sequence, outcome and
// payload, and every note: the same scenario, seed and commit give the
// same digest at any GOMAXPROCS and under -race. When two runs differ, set
// NetConfig.Trace in both and diff the traces.
//
// Pitfalls that silently break it: a goroutine waiting on a sync.Mutex is
// not durably blocked, so never do network I/O inside a bbolt Update, Batch
// or long View (the fake clock freezes and the run hangs); always set bbolt
// Options.Timeout; run bbolt with NoSync (file I/O takes no virtual time,
// disk cost is modeled). Nothing but the driver may call synctest.Wait.
//
// # Teardown order
//
// A synctest bubble ends only when every goroutine it started has
// returned, so a scenario stops in this order:
//
//  1. stop the load (clients finish);
//  2. close idle pooled connections: http.Transport.CloseIdleConnections;
//  3. close the servers: http.Server.Close (not Shutdown, which polls with
//     global-rand jitter), smtp.Server.Close, dns.Server.Shutdown, and
//     membership views (View.Close);
//  4. stop the driver (cancel Run's context, or call the stop function of
//     Net.Start): it keeps delivering the FINs and resets still queued, then
//     returns. Segments held by a partition are abandoned.
//
// A goroutine that sends after the driver has returned waits forever, and
// synctest.Test reports the deadlock.
//
// # Model
//
// Each direction of a host pair is a link with latency, jitter, bandwidth
// (serialisation delay, FIFO per link) and loss. Datagrams are lost; stream
// segments are not (TCP retransmits) but arrive one RetransmitTimeout late.
// A connect takes a round trip (SYN, SYN-ACK). A partition or a down host
// swallows datagrams and holds stream segments, so connects time out after
// NetConfig.ConnectTimeout and streams stall, then resume in order when it
// heals. A crashed host's process is gone but its machine answers: SYNs are
// refused, and its peers' streams are reset. Events per message matter for
// speed: the prototype's SMTP -> HTTP mirror -> bbolt path costs 25 events
// per message and runs at about 3,000 messages per wall second here
// (BenchmarkSMTPMirrorSim).
package sim
