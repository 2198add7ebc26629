package node

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the node's Prometheus metrics, on its own registry (many
// nodes share a process in tests and the simulator).
type metrics struct {
	reg          *prometheus.Registry
	smtpResults  *prometheus.CounterVec
	smtpLatency  prometheus.Histogram
	storeLatency prometheus.Histogram
	pop3Latency  *prometheus.HistogramVec
	imapLatency  *prometheus.HistogramVec
	logins       *prometheus.CounterVec
	reloads      *prometheus.CounterVec
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		smtpResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailarray_smtp_messages_total",
			Help: "SMTP outcomes: accepted, or rejected/failed with the reply's reason.",
		}, []string{"result", "reason"}),
		smtpLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailarray_smtp_transaction_seconds",
			Help:    "Time from MAIL FROM to the final reply of accepted transactions.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		storeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailarray_store_write_seconds",
			Help:    "Time to make one message durable on W nodes.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}),
		pop3Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailarray_pop3_seconds",
			Help:    "POP3 backend latency by operation (login, retr, commit).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"op"}),
		imapLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailarray_imap_seconds",
			Help:    "IMAP backend latency by operation (login, select, fetch, store, expunge, assign: UID assignment).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"op"}),
	}
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailarray_logins_total",
		Help: "Login attempts by protocol (pop3, imap, web) and result (success, failure: wrong user or password, throttled, refused: cleartext without TLS, error).",
	}, []string{"protocol", "result"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailarray_config_reloads_total",
		Help: "Configuration reloads (SIGHUP) by result: ok (live keys applied), error (the file was refused; the running configuration stays).",
	}, []string{"result"})
	b := ReadBuildInfo(n.conf().Version, n.conf().Commit)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mailarray_build_info",
		Help: "Always 1; the labels say which binary the node runs (a rolling upgrade is done when every node reports the new version).",
	}, []string{"version", "commit", "go_version"})
	build.WithLabelValues(b.Version, b.Commit, b.GoVersion).Set(1)
	// The process and Go runtime collectors go on the node's own registry
	// like everything else: nodes sharing a process (tests, the simulator)
	// each report the same process, and nothing touches the global one.
	m.reg.MustRegister(m.smtpResults, m.smtpLatency, m.storeLatency, m.pop3Latency, m.imapLatency, m.logins, m.reloads, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), (*nodeCollector)(n))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) observeSMTP(result, reason string, d time.Duration) {
	m.smtpResults.WithLabelValues(result, reason).Inc()
	if result == "accepted" {
		m.smtpLatency.Observe(d.Seconds())
	}
}

// nodeCollector reads the node's state at scrape time.
type nodeCollector Node

var (
	descEntries    = prometheus.NewDesc("mailarray_catalog_entries", "Catalog entries on this node by state.", []string{"state"}, nil)
	descCopies     = prometheus.NewDesc("mailarray_store_copies", "Message copies held by this node.", nil, nil)
	descBytes      = prometheus.NewDesc("mailarray_store_bytes", "Bytes of message copies held by this node.", nil, nil)
	descCommits    = prometheus.NewDesc("mailarray_store_commits_total", "Store transactions committed (one fsync each) since start: group commit's groups.", nil, nil)
	descWrites     = prometheus.NewDesc("mailarray_store_writes_total", "Store writes (copies, catalog entries, deletions) those transactions carried: writes per commit is the group size.", nil, nil)
	descUnder      = prometheus.NewDesc("mailarray_under_replicated_messages", "Committed messages with fewer than R live copies.", nil, nil)
	descRebuilt    = prometheus.NewDesc("mailarray_rebuild_copies_total", "Copies made by rebuild (lost copies) and by rebalance (moved).", []string{"kind"}, nil)
	descRebuiltB   = prometheus.NewDesc("mailarray_rebuild_bytes_total", "Bytes copied by rebuild.", nil, nil)
	descTrimmed    = prometheus.NewDesc("mailarray_trimmed_copies_total", "Copies this node deleted after a rebuild or rebalance stopped listing it, once R listed holders confirmed theirs from their stores.", nil, nil)
	descAutoRebal  = prometheus.NewDesc("mailarray_rebalance_after_return_total", "Rebalances this node asked of the array because a storage node returned and membership then settled (tuning.rebalance-after-return).", nil, nil)
	descLag        = prometheus.NewDesc("mailarray_replication_queue_entries", "Catalog entries waiting to be pushed to peers (replication lag).", nil, nil)
	descDropped    = prometheus.NewDesc("mailarray_replication_push_dropped_total", "Entries whose push failed; anti-entropy delivers them.", nil, nil)
	descAE         = prometheus.NewDesc("mailarray_antientropy_rounds_total", "Anti-entropy rounds run.", nil, nil)
	descAERepaired = prometheus.NewDesc("mailarray_antientropy_repaired_total", "Entries repaired by anti-entropy.", nil, nil)
	descMembers    = prometheus.NewDesc("mailarray_members", "Members by status as this node sees them.", []string{"status"}, nil)
	descSessions   = prometheus.NewDesc("mailarray_smtp_sessions", "SMTP sessions open now.", nil, nil)
	descMailboxes  = prometheus.NewDesc("mailarray_directory_mailboxes", "Mailboxes in the directory.", nil, nil)
	descVerified   = prometheus.NewDesc("mailarray_verify_checked_total", "Copies checksummed by the store verifier's continuous pass.", nil, nil)
	descVMissing   = prometheus.NewDesc("mailarray_verify_missing_total", "Catalog entries that listed this node for a copy it lacked or held damaged, republished without it for rebuild.", nil, nil)
	descVLost      = prometheus.NewDesc("mailarray_verify_lost_messages", "Messages listed only on this node whose copy is missing here and on every live node: lost unless restored.", nil, nil)
	descFuture     = prometheus.NewDesc("mailarray_catalog_future_refused_total", "Catalog entries from peers refused because their version was more than catalog.MaxAhead ahead of this node's clock (a peer's clock is wrong, or a hostile peer).", nil, nil)
	descHorizonRef = prometheus.NewDesc("mailarray_catalog_horizon_refused_total", "Tombstone horizons proposed by peers and refused because they were further ahead of this node's clock than a version may be, less the tombstone TTL (a peer's clock is wrong, or a hostile peer).", nil, nil)
	descStreams    = prometheus.NewDesc("mailarray_peer_streams", "Replication streams open to peers (outgoing) and from them (incoming), and peers spoken to over HTTP because they refused the stream (http).", []string{"kind"}, nil)
)

var (
	// Two metrics, not one with a kind label: every reply has an rcode and
	// some also a strategy, so sum() over one metric counted them twice.
	descDNSRcode    = prometheus.NewDesc("mailarray_dns_answers_total", "DNS replies by rcode (sum: every reply).", []string{"rcode"}, nil)
	descDNSStrategy = prometheus.NewDesc("mailarray_dns_strategy_answers_total", "DNS answers whose nodes the strategy ordered (MX and service names), by strategy.", []string{"strategy"}, nil)
	descReady       = prometheus.NewDesc("mailarray_ready", "1 when the node is ready (reaches a write quorum, catalog in sync), else 0; reason says why not (ok, starting, no_write_quorum, catalog_not_synced).", []string{"reason"}, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEntries, descCopies, descBytes, descUnder, descRebuilt, descRebuiltB, descTrimmed, descAutoRebal, descLag, descDropped, descAE, descAERepaired, descMembers, descSessions, descDNSRcode, descDNSStrategy, descMailboxes, descStreams, descVerified, descVMissing, descVLost, descReady} {
		ch <- d
	}
	ch <- descFuture
	ch <- descHorizonRef
	ch <- descCommits
	ch <- descWrites
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := (*Node)(c)
	for s, k := range n.cat.Counts() {
		ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(k), s.String())
	}
	if st, err := n.store.Stats(); err == nil {
		ch <- prometheus.MustNewConstMetric(descCopies, prometheus.GaugeValue, float64(st.Copies))
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(st.CopyBytes))
	}
	g := n.store.GroupStats()
	ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(g.Commits))
	ch <- prometheus.MustNewConstMetric(descWrites, prometheus.CounterValue, float64(g.Writes))
	r := n.repl.Stats()
	ch <- prometheus.MustNewConstMetric(descUnder, prometheus.GaugeValue, float64(r.UnderReplicated))
	ch <- prometheus.MustNewConstMetric(descRebuilt, prometheus.CounterValue, float64(r.RebuiltCopies), "rebuild")
	ch <- prometheus.MustNewConstMetric(descRebuilt, prometheus.CounterValue, float64(r.MovedCopies), "rebalance")
	ch <- prometheus.MustNewConstMetric(descRebuiltB, prometheus.CounterValue, float64(r.RebuiltBytes))
	ch <- prometheus.MustNewConstMetric(descTrimmed, prometheus.CounterValue, float64(r.TrimmedCopies))
	ch <- prometheus.MustNewConstMetric(descAutoRebal, prometheus.CounterValue, float64(r.AutoRebalances))
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(n.Load().PushQueue))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(r.PushDropped))
	ch <- prometheus.MustNewConstMetric(descAE, prometheus.CounterValue, float64(r.AntiEntropyRounds))
	ch <- prometheus.MustNewConstMetric(descAERepaired, prometheus.CounterValue, float64(r.AntiEntropyFixed))
	ch <- prometheus.MustNewConstMetric(descFuture, prometheus.CounterValue, float64(n.cat.FutureRefused()))
	ch <- prometheus.MustNewConstMetric(descHorizonRef, prometheus.CounterValue, float64(n.repl.HorizonRefused()))
	vs := n.Verify()
	ch <- prometheus.MustNewConstMetric(descVerified, prometheus.CounterValue, float64(vs.Checked))
	ch <- prometheus.MustNewConstMetric(descVMissing, prometheus.CounterValue, float64(vs.Missing))
	ch <- prometheus.MustNewConstMetric(descVLost, prometheus.GaugeValue, float64(vs.Lost))
	byStatus := map[string]int{"alive": 0, "failed": 0, "left": 0}
	for _, m := range n.members.Members() {
		byStatus[m.Status.String()]++
	}
	for s, k := range byStatus {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(k), s)
	}
	if n.smtp != nil {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(n.smtp.Sessions()))
	}
	if n.dns != nil {
		for k, v := range n.dns.Stats() {
			switch kind, value, _ := strings.Cut(k, "."); kind {
			case "rcode":
				ch <- prometheus.MustNewConstMetric(descDNSRcode, prometheus.CounterValue, float64(v), value)
			case "strategy":
				ch <- prometheus.MustNewConstMetric(descDNSStrategy, prometheus.CounterValue, float64(v), value)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descMailboxes, prometheus.GaugeValue, float64(n.dir.Len()))
	rs := n.ready.State()
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, map[bool]float64{true: 1}[rs.Ready], rs.Reason)
	out, in, http := n.streamCounts()
	ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(out), "outgoing")
	ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(in), "incoming")
	ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(http), "http")
}
