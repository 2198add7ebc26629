// Package sim is mailarray's deterministic simulator: N real nodes (package
// node, unchanged) and a load generator of real clients, over an
// in-process network, in virtual time, with a cost model and a fault
// schedule. The same node code that serves real sockets runs here, because
// a node reaches the network only through its env.Net, and this package
// provides one per simulated machine: a host of the deterministic network
// of package sim/simnet, whose doc states what the network guarantees.
//
// # The harness
//
//   - Scenario (scenario.go) is a run described in YAML
//     (scenarios/<name>.yaml): the nodes and their hardware, the link, R and
//     W, the strategies, the load and the faults. docs/bench.md
//     documents every key and every report field.
//   - Run (run.go) executes a scenario inside testing/synctest: it starts
//     the net's driver, the modeled membership and the nodes (listeners on
//     10.0.0.N :25 :110 :53 :7000, NoSync stores, inline mailboxes
//     user<k>@domain), warms up one second, starts the load, applies the
//     faults at their virtual times, stops the load after `duration`, waits
//     `drain`, freezes the world to read the report, and tears down in the
//     order below. The simulator is a test binary: make bench runs
//     TestScenario.
//   - The load generator (loadgen.go): senders, each on its own host, get
//     arrivals (constant, Poisson or bursty; sizes fixed or lognormal;
//     recipients Zipf over the mailboxes) by join-the-shortest-queue, resolve
//     MX through the array's own DNS (a DNS node chosen from the seed, the
//     answer cached for its TTL) and deliver with the go-smtp client to the
//     first MX that answers, so the DNS strategy shapes the load. The
//     sender loop (sender.go) is shared with the real-socket generator
//     (real_load.go): each generator supplies its clock, resolver, dialer
//     and queue. Readers
//     resolve pop.<domain>, log in by POP3, RETR and DELE, QUIT. Every
//     offered message is a Record; the accepted ones are what the chaos
//     checker compares with the stores.
//   - The cost model (cost.go) implements env.Cost per node: a pool of
//     cpu_cores servers charged cpu_per_msg + size/KiB x cpu_per_kib per
//     message, a background share of a CPU while the node runs
//     (background.go), a CFS bandwidth quota for a cpu_quota node
//     (quota.go), and a disk that syncs groups (disk_fsync + bytes /
//     disk_bytes_per_sec). Both are queues served by the driver, so waiting
//     is durable blocking and completions happen in canonical order.
//     A scenario may name a cost profile measured on a machine (profile.go,
//     scenarios/profiles/, make calibrate): it fills the cost fields a
//     node leaves unset, and the link when the scenario sets none.
//   - The report (report.go) is deterministic JSON: throughput, outcomes by
//     code, latency percentiles and CDF, loss (acknowledged, undeleted, and
//     without a readable copy on a live node), per-node shares, imbalance,
//     rebuild, unavailability windows, a per-second timeline, traffic, and a
//     `wall` section, the only machine-dependent figures.
//   - Disk faults and the durability ledger (disk.go): stall_disk freezes
//     a node's disk model (no sync completes until the stall ends; the
//     writers wait on channels, durably blocked); power_loss cuts the
//     node's store off (store.PowerOff) before the crash, so no group whose
//     modeled sync had not returned reaches the file, nor anything later
//     (Close's drain included): the file keeps exactly the synced state;
//     backup snapshots a node's bbolt file in a read transaction; a
//     restart with disk: backup or disk: empty replaces the data directory
//     first. Because bbolt runs with NoSync here and commits a group only
//     after its Disk wait, "synced" is decided at the store level: a real
//     NoSync file could keep pages of an unsynced commit, the model drops
//     the whole group (what a node with fsync on keeps). The ledger
//     records, per copy and node, when it became durable (the store's
//     Durable hook, after the Disk wait) and when it was lost (deleted,
//     a restore without it, an empty disk), and each accepted Record
//     carries Acked, when the listener sent its 250 (the send time of the
//     reply's segment). Report.Ledger, DroppedCopies and Records are how
//     the chaos checker sees them; none is in the JSON.
//   - MemberlistTransport (memberlist.go) runs real serf over the simulated
//     network, for the calibration below.
//
// # Calibration of the modeled membership
//
// Real serf (memberlist's LAN profile, as `mailarray serve` runs it) over
// SimNet, three nodes (TestSerfOverSimNet, TestSerfPartitionOverSimNet, 40
// and 30 seeds): a crashed node was declared failed after 5.0-7.9 s (median
// 5.7 s; node/member's real-socket tests measure 5.1-5.7 s with the local
// profile); a tag change reached the others in 14-192 ms; after a
// partition healed, members that had declared each other failed saw each
// other again after 18-23 s in most runs (serf reconnects every 30 s), a
// few in under 0.5 s or 27-45 s. DefaultMembershipConfig uses 5-8 s,
// 10-200 ms and 15-25 s. Serf itself is not repeatable (global randomness),
// so the simulator models it and the serf tests check bounds.
//
// # Speed
//
// A run sets GOMAXPROCS=1, collects garbage at a memory limit (gc.go:
// 3 GiB, falling back to GOGC=400 when the live heap passes a third of
// it; GOGC or GOMEMLIMIT in the environment win), advises the heap range
// it grows into for transparent huge pages on Linux (gc_linux.go: a fresh
// 4 KiB page costs this VM a 5-16 us fault) and keeps the nodes'
// files in /dev/shm when it exists (SIM_DATA_DIR overrides): file I/O
// takes no virtual time, and bbolt's writes are a large share of the wall
// time. docs/performance.md has the latest profile. Writes a goroutine makes within one step travel as one segment.
// BenchmarkSimThreeNodeR2 reports simulated messages per wall second
// through three nodes, R=2 W=2, 4 KiB, one SMTP connection per message,
// 2,000 messages per virtual second (SIM_BENCH_RATE), and the bytes
// allocated per message (the one figure of the benchmark that does not
// move with the shared host's load: wall time for the same binary varies
// by a tenth from one run to the next, and by half from one hour to
// another). On this 2-core VM, 100,000 messages took 41-54 s (1,860-2,450
// msgs/wall-s) in the runs of 2026-11-29; the code of the day before took
// 67 s in the first run after the machine booted and 43-50 s later that
// morning, and 72-84 s on 2026-11-28. A run touches ~4.5 GB of memory
// (heap, and the stores' files in /dev/shm), and memory the VM never
// touched since boot costs 9.6 us per 4 KiB page to fault in, against 3.9
// us once touched: the first large run after a boot is slower. About
// 141 KiB are allocated per message at 20,000, 148 at 100,000;
// scenarios/roundrobin (24,000 messages, four nodes) takes 12-25 s. A profile at 100,000: the nodes'
// bbolt commits ~28% (about 13.5 single-page writes per message, each a
// syscall that costs ~2-5 us in this VM, more for pages the file did not
// have yet), the go-smtp server ~19% (with the pipeline, ~5%), the load's
// SMTP clients ~11%, the driver ~7%, the peer stream ~7% on both ends,
// garbage collection ~4% (6 cycles where GOGC=400 ran 44; a node holds
// every catalog entry). Network events per message: 17 for the SMTP
// dialogue, about 4 for replication, 7 settle steps (the store's group
// commit and the commit and push loops), 3 CPU and disk completions.
// Driver steps are cheap (~2 us); the real code's work is what costs.
//
// # Parts of the network
//
//   - The network is package sim/simnet: Net (hosts, links, partitions,
//     the digest, the counters, the seeded streams), Host (a node's
//     env.Net, asserted in net.go), TCP-like Conn and Listener, UDP
//     PacketConn, the driver that delivers every network event, and the
//     network's faults (Host.Crash, Host.Restart, Host.SetDown,
//     Net.Partition, Net.Heal, Net.SetLink) and time faults (Host.Pause,
//     Host.Resume, Net.StallLink, Net.SetPath). netRand (net.go) wraps
//     Net.Rand as the env.Rand a node or the load draws from.
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
//  1. One driver goroutine (simnet.Net.Run) owns all delivery. Senders
//     only queue events. The driver loops: synctest.Wait() until every other
//     goroutine is blocked; take the events queued since; sort them by
//     (stream, sequence number); draw their latency, jitter and loss from
//     the net's seeded PCG in that order; push them on a heap keyed by
//     (due time, canonical order); deliver the earliest due event, and
//     only that one, before waiting again. Whatever goroutine sent first,
//     the draws and the delivery order are the same. A sender pokes the
//     driver only when its event could be due before the driver's next
//     wake-up; events queued without a poke are drawn, when the driver
//     wakes, as of the instant they were sent, instants in order (a third
//     fewer driver steps, the same reports).
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
//     callbacks in canonical order. Run starts the nodes a few
//     milliseconds apart and drives arrivals, reader sessions, faults,
//     CPU and disk completions from the driver.
//  5. Goroutines one step wakes together (a goroutine and those it
//     signals: a rebuild loop and the push loop it wakes, a store writer
//     and the writers of its group) race for the node's pooled
//     connections and random stream. Run pins the bubble to one P
//     (GOMAXPROCS=1), where Go's scheduler runs them in the same order
//     every time; a node's timed loops draw from their own streams.
//  6. Faults are applied from one goroutine (the fault schedule) or from
//     Net.AfterFunc callbacks, so their draws happen in a fixed order.
//
// Net.Digest hashes every event's time, stream, sequence, outcome and
// payload, and every note: the same scenario, seed and commit give the
// same digest at any GOMAXPROCS and under -race. When two runs differ, set
// NetConfig.Trace in both and diff the traces. Trace formats each line on
// the driver, which can hide a race (it hid the deletion retries below,
// even writing to memory); copying each event into a slice and formatting
// them after the run did not.
//
// Pitfalls that silently break it: a goroutine waiting on a sync.Mutex is
// not durably blocked, so never do network I/O inside a bbolt Update, Batch
// or long View (the fake clock freezes and the run hangs); always set bbolt
// Options.Timeout; run bbolt with NoSync (file I/O takes no virtual time,
// disk cost is modeled). Nothing but the driver may call synctest.Wait. A
// select with two ready cases picks at random: a caller whose context is
// already done must be turned away before a select that also offers it a
// ready resource (peerstream.go get and roundTrip; seen after a long
// stall_disk, when callers resume with deadlines long past); so must a
// loop whose context ended while a wake is pending (replicate.go
// commitLoop and pushLoop: after a crash they settled once more one time
// in two, TestStoppedLoopsIgnoreAPendingWake). A fixed retry
// pace is a coinciding timer in disguise: callers failed at one instant (a
// broken stream answers all its pending requests at once) that wait the
// same fixed delay wake together and race for the new stream. Settle
// before each retry, under a key of the caller's own that the run
// determines (pushEverywhere settles as "delete <first id>"; seen with
// deletions waiting on a disk stalled past DeleteSyncTimeout,
// TestDeletionRetriesReplay).
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
// The network's model (links, loss, connects, partitions, crashes, held
// packets) is described in package sim/simnet. Events per message matter
// for speed: the prototype's SMTP -> HTTP mirror -> bbolt path costs 25
// events per message and runs at about 3,000 messages per wall second
// here (BenchmarkSMTPMirrorSim).
//
// # Time faults
//
// Faults that make nothing fail but delay, freeze or mislead
// (timefaults.go; each leaves evidence in the report's faults):
//
//   - skew_clock (and the node keys clock_offset, clock_drift_ppm): the
//     node's env.Clock, its wall clock, reads an offset from the true
//     (virtual) time that drifts by drift_ppm. The node stamps catalog
//     versions, Received times and transaction ids with it and judges
//     pending staleness, orphan grace and tombstone age by it. Monotonic
//     time is never skewed: time.Since, timers and deadlines stay true, as
//     on a real machine whose NTP steps the wall clock only. A node without
//     a skew reads time.Now exactly, so other runs are unchanged.
//   - pause and resume (or pause with `for`): SIGSTOP and SIGCONT. The
//     host holds every packet in and out (queued, never dropped: the
//     kernel keeps the stopped process's sockets); the cost model parks
//     every goroutine of the node at its next CPU, disk or settle call, and
//     keeps those already waiting parked when their service ends; the
//     others' membership declares the node failed after its detection
//     delay unless it resumes first, and sees it alive again a gossip
//     delay after the resume (it refutes its death); its own view learns
//     nothing until the resume. Connects to it time out where a real
//     kernel would complete them into the backlog: the client waits either
//     way. The resume's evidence counts the packets the node sent and
//     received while paused (zero) and what was held and parked.
//   - What a pause does not freeze: a goroutine of the node that only
//     wakes on a timer and touches memory (the maintenance loop's pending
//     resolution, lease renewal in its own lock table, load reports) still
//     runs on time, as if SIGCONT had come early for it alone. This is
//     acceptable because nothing it decides leaves the node before the
//     resume: its packets are held, and its writes reach the store only
//     through the parked writer; the others see its work when they would
//     have seen a late timer's. Its decisions read the true wall clock, as
//     a process resumed after the pause would.
//   - slow_link (latency, for), stall_link (for), restore_link: one
//     direction (oneway) or both, between two nodes or from one node to
//     every other host. A stall holds packets; restore_link gives the path
//     the scenario's link back (lifting a lossy_link too) and releases
//     them. Membership is not told: serf's indirect probes go round one bad
//     path.
//
// The lease record (leases.go) comes with them: every node's lock table
// reports its grants and refusals (env.LeaseObserver), and a refusal on
// behalf of a holder whose node is crashed, removed or paused is listed in
// the report's lease_refusals, for the chaos checker's lease rule.
package sim
