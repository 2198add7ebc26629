// Package node assembles one mailarray node from a Config and an Env: the
// store and catalog replica, the mailbox directory, the SMTP, POP3, IMAP,
// DNS, peer and HTTP listeners, and the delivery and retrieval paths that tie
// them together. The same Node runs under `mailarray serve` (real sockets,
// serf) and inside the simulator (SimNet, modeled membership); it reaches
// the outside only through its Env.
//
// Env is an alias of env.Env so that the node's parts, which live in
// subpackages, can take it without importing this package. The parts never
// import this package and hold no *Node: each states the interface it
// needs, and a file here adapts the node to it (the *_backend.go files,
// deliver.go, dnssource.go, retrieve.go, webmail.go).
//
// # The write path
//
// DNS (node/ddns over dnsSource, ordered by balancer.orderer) sends a
// sender to a ready listener. The SMTP listener asks smtpBackend: RCPT is
// knownRecipient plus "at least W storage nodes live"; DATA is Deliver,
// which runs the inbound pipeline (inbound.go), builds one catalog entry
// per recipient, and calls storeMessage. storeMessage places R copies
// (balancer.placement), writes them pending in parallel, here with
// writeLocal and on peers over the peer stream, moves a failed copy to the
// next ring member (fallbacks), and once W are durable takes the
// transaction's lock (txn.go) so that no holder's abort can cross the 250.
// The commit that makes the entries visible goes to the replicator
// (repl.Commit), which applies and pushes it asynchronously.
//
// # The read path
//
// POP3 (retrieve.go: pop3Backend, maildrop), IMAP (imap_backend.go) and
// webmail (webmail.go) list a mailbox from the local catalog and read each
// message with readMessage (retrieve.go: this node's copy first, then any
// live holder, repairing a bad copy) or readMessages (readbatch.go: one
// peer batch per holder, and the local copies in one store read
// transaction into a buffer the session reuses). POP3 holds a cluster-wide mailbox lease
// (locks.go); IMAP assigns UIDs under a lease of its own (imap_uid.go).
// Deletions go through deleteMessages (retrieve.go): tombstones durable
// here, then pushed to every live node (deletesync.go) before the answer.
//
// # Background loops
//
// Start starts, each until Shutdown: the membership view's follower
// (members.go: refresh on events and every second; onMembership releases
// the leases of gone nodes and wakes rebuild and readiness); the
// replicator's loops (node/replica: anti-entropy, the asynchronous
// committer, maintenance — rebuild, rebalance, pending resolution, orphan
// and tombstone collection — and the store verifier); the load tracker's
// poll, when a strategy weighs load (load.go); the readiness probe
// (ready.go); the watchers of the users file, the TLS certificate, the
// antivirus signatures and the spam database; and the pipeline's notifier.
// A configuration reload rebuilds the pipeline and replaces the watchers
// of its files and of the zone files (loops.go: loopGroup).
//
// # Files
//
//	access_config.go   AccessLimits: session caps, login timeout, tarpit, cleartext logins
//	admin.go           the --http mux: /healthz, /readyz, operator endpoints, admin token, RebalanceAll
//	auth.go            the sender authentication filter's config and construction
//	balance.go         balancer: strategies applied to DNS order and to copy placement
//	buildinfo.go       BuildInfo: the running binary's version, for status and metrics
//	chaos_off.go       chaosBuild false in ordinary builds
//	chaos_on.go        chaosBuild true under -tags chaos (failpoints compiled in)
//	config.go          Config, Tuning, defaults and Validate
//	deletesync.go      pushEverywhere: a deletion answered only once every live node has it
//	deliver.go         smtpBackend and storeMessage: the write path
//	dnssource.go       dnsSource: what the DNS server sees (domains, live members, serial)
//	dnszones.go        static zone files loaded into the DNS server, and swapped by a reload
//	doc.go             this map
//	ids.go             transaction and copy ids
//	imap_backend.go    imapBackend and imapMailbox: the node as the IMAP server sees it
//	imap_uid.go        IMAP UIDs assigned over the replicated catalog
//	inbound.go         the pipeline (one build per configuration, swapped by a reload) and notifier; quarantine listing, release, trace
//	load.go            loadTracker: peers' load reports and this node's delivery latency
//	load_other.go      freeDiskBytes where statfs is not available
//	load_statfs.go     freeDiskBytes from statfs
//	locks.go           lockTable and the mailbox leases on rendezvous-hashed managers
//	loops.go           loopGroup: background loops stopped apart from the node's
//	members.go         memberView (membership and mirroring table cache), onMembership
//	metrics.go         the Prometheus registry and the node's collector
//	node.go            Node, New, Start, the listeners, Shutdown and Close
//	peer_backend.go    peerHandler: the node as the peer protocol sees it
//	peerauth.go        how the peer API is protected, and the warning when it is not
//	quarantine_show.go QuarantinedMessage for `mailarray quarantine show`
//	readbatch.go       readMessages: many messages in one peer batch per holder
//	ready.go           readiness: write quorum reached and catalog in sync
//	recipient.go       knownRecipient: 550, or 450 while the users file just changed
//	rejoin.go          checkRejoin: refuse, or resync, a catalog older than the tombstone TTL
//	replica_backend.go the replicator's dependencies, filled from the node
//	retrieve.go        pop3Backend and maildrop, readMessage, deleteMessages: the read path
//	status.go          Status, Load and the counters the simulator samples
//	tlsreload.go       certReloader: certificates re-read when their files change
//	txn.go             a listener's transactions in flight and its abort answers
//	webmail.go         webmail and the fax/voicemail gateway mounted on the --http mux
//
// # Sub-packages
//
//	bufpool    recycled byte buffers of the per-message hot paths
//	catalog    the tracking catalog: one entry per message copy set, merged as a join
//	ddns       the authoritative dynamic DNS for the hosted domains
//	directory  the mailbox directory: users, password hashes, options
//	env        the node's world: network, randomness, membership, clock, faults
//	imap       the IMAP4rev2/rev1 server over a small Backend
//	ingest     the fax and voicemail gateway
//	intern     one shared copy of strings repeated across catalog entries
//	loginlog   one log line per login attempt on every access path
//	mailaddr   the one normal form of addresses and domains
//	member     env.Membership over serf, and a static membership
//	mirror     the mirroring table: the ring of live storage nodes
//	peer       the node-to-node protocol: HTTP plus one pipelined stream per peer
//	pipeline   the inbound pipeline: sender authentication, antivirus, spam, notices
//	pop3       the POP3 server and client
//	replica    replication: push, commit, anti-entropy, rebuild, rebalance, verify
//	smtp       the SMTP listener
//	store      the bbolt file: copies, catalog records, metadata, group commit
//	strategy   the distribution strategies: pure orderings of candidate nodes
//	throttle   login-attempt and per-address session limits
//	web        the webmail server over a small Backend
package node
