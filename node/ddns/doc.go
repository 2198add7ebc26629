// Package ddns is the cluster's authoritative dynamic DNS (patent elements
// 12 and 13): for every hosted mail domain it answers with the nodes that are
// alive right now, ordered per query by a distribution strategy, so mail and
// mail readers spread over the array and never go to a dead node.
//
// # Zone
//
// Nothing is stored: each answer is built from a Source (the node's view of
// membership and configuration) at the moment of the query. For a hosted
// domain D:
//
//	D         SOA   mname <first dns node>.D., rname hostmaster.D., serial Source.Serial()
//	D         NS    <node>.D. for every live dns node, glue A/AAAA in additional
//	D         MX    10 <node>.D., 20 ..., every live smtp node in the Orderer's order,
//	                their A/AAAA in additional
//	<node>.D  A/AAAA that node's address (any role)
//	pop.D     A/AAAA pop3 nodes, in the Orderer's order
//	imap.D    A/AAAA imap nodes, in the Orderer's order
//	smtp.D,
//	mx.D      A/AAAA smtp nodes, in the Orderer's order
//
// Ordered answers hold every candidate or the first Config.MaxAnswers,
// one record per address (nodes sharing an address give one). Names
// match case-insensitively; the answer keeps the question's spelling. An
// existing name asked for a type it lacks gets NODATA, a missing name
// NXDOMAIN (both with the SOA in authority, RFC 2308), a name outside every
// hosted domain REFUSED: the server is no resolver. A name whose role has no
// live node gets SERVFAIL so senders retry rather than bounce. Server.Answer
// documents every case with its RFC.
//
// # Static records
//
// The rest of a delegated domain (TXT for SPF, DMARC, DKIM and MTA-STS, the
// website's A or CNAME, any other type) comes from a zone file per domain
// (zonefile.go): an RFC 1035 master file parsed with miekg/dns's
// ZoneParser into an immutable Zone, refused at load, naming the line,
// when a record contradicts the dynamic names above. The array's names
// answer first (their dynamic types, static records of other types);
// other names come from the static zone (static.go): CNAMEs followed
// inside the hosted domains, wildcards (RFC 4592), NODATA for existing
// names and empty non-terminals, NXDOMAIN otherwise. Server.SetZones swaps
// them atomically; LoadZones and WatchZones (zonewatch.go) read the files
// and reload them when they change.
//
// # Parts
//
//   - Source: what the node provides (domains, live nodes by role, serial).
//   - Orderer: the strategy choosing the order of candidate nodes. The
//     strategies live in node/strategy; RoundRobin here is the default.
//   - Server: Answer is the pure question-to-reply function that tests drive
//     directly. ServeUDP and ServeTCP run miekg/dns servers on sockets the
//     node gets from env.Net (real or simulated), each server with its own
//     handler, never the package-level mux; Close stops them all and waits
//     for their goroutines. On UDP a reply is cut to the client's EDNS size
//     with TC set so it retries over TCP. A TCP connection carries any
//     number of pipelined queries, each answered, and closes only when
//     idle (RFC 7766; the timeout is told with edns-tcp-keepalive, RFC
//     7828). Malformed packets get FORMERR when their header is whole;
//     other opcodes NOTIMP, both with OPT for EDNS queries and never AD;
//     responses are dropped. Stats counts replies by rcode and strategy; rejected queries
//     are logged at debug level with the client's address, rate limited.
//   - Exchange, LookupMX, LookupA: the client side, dialing through env.Net,
//     for the node and the simulator's load generator.
package ddns
