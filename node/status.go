package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/ddns"
	"mailarray/node/env"
	"mailarray/node/mirror"
	"mailarray/node/replica"
)

// dnsSource is the node seen by its DNS server.
type dnsSource Node

var _ ddns.Source = (*dnsSource)(nil)

func (s *dnsSource) Domains() []string { return (*Node)(s).conf().Domains }

func (s *dnsSource) Nodes(role string) []env.Member {
	n := (*Node)(s)
	if role == ddns.RoleSMTP && len(n.members.Table().Ring) < n.conf().WriteQuorum {
		// This node sees too few storage nodes to make mail durable (it is
		// on the minority side of a partition, or alone): rather than send
		// senders to listeners that would answer 451, the answer fails
		// (SERVFAIL) so resolvers ask another of the domain's name servers.
		return nil
	}
	var out []env.Member
	for _, m := range (*Node)(s).members.Live() {
		if role == ddns.RoleAny || mirror.HasRole(m, role) {
			out = append(out, m)
		}
	}
	return readyOnly(role, out)
}

func (s *dnsSource) Serial() uint32 { return (*Node)(s).members.Serial() + 1 }

// onMembership reacts to membership changes: reads already avoid dead
// nodes (the view is current); rebuild starts at once; a joining node gets
// an immediate anti-entropy round.
func (n *Node) onMembership(ev *env.Event) {
	if ev != nil {
		n.log.Info("node: membership", "event", ev.Kind.String(), "member", ev.Member.Name, "status", ev.Member.Status.String())
	}
	t := n.members.Table()
	n.log.Info("node: mirroring table", "version", fmt.Sprintf("%016x", t.Version), "ring", t.Ring)
	if k := n.locks.dropGone(); k > 0 {
		n.log.Info("node: released the mailbox leases of failed or departed nodes", "leases", k)
	}
	n.repl.TriggerMaintenance()
	n.ready.changed()
}

// Load is what a node reports of its load over the peer API.
type Load struct {
	Node            string  `json:"node"`
	SMTPSessions    int     `json:"smtp_sessions"`
	Copies          int64   `json:"copies"`
	CatalogEntries  int     `json:"catalog_entries"`
	PushQueue       int     `json:"push_queue"`
	UnderReplicated int64   `json:"under_replicated"`
	AcceptedTotal   uint64  `json:"accepted_total"`
	At              int64   `json:"at_unix_ms"`
	FreeDiskBytes   int64   `json:"free_disk_bytes"`
	LatencyMs       float64 `json:"latency_ms"`
}

// Load reports the node's current load.
func (n *Node) Load() Load {
	l := Load{Node: n.conf().Name, CatalogEntries: n.cat.Len(), UnderReplicated: n.repl.UnderReplicated(), At: time.Now().UnixMilli(),
		FreeDiskBytes: n.freeDisk(), LatencyMs: n.loads.latencyMs()}
	if n.smtp != nil {
		l.SMTPSessions = n.smtp.Sessions()
		l.AcceptedTotal = n.smtp.Stats.Accepted.Load()
	}
	l.PushQueue = n.repl.PushQueued()
	return l
}

// Status is a node's report for operators (`mailarray status`).
type Status struct {
	Node            string              `json:"node"`
	Build           BuildInfo           `json:"build"`
	Roles           []string            `json:"roles"`
	Addrs           map[string]string   `json:"addrs"`
	Members         []MemberStatus      `json:"members"`
	Mirror          mirror.Table        `json:"mirror"`
	MirrorPairs     map[string][]string `json:"mirror_pairs"`
	Replicas        int                 `json:"replicas"`
	WriteQuorum     int                 `json:"write_quorum"`
	CatalogDigest   string              `json:"catalog_digest"`
	Entries         map[string]int      `json:"entries"`
	Copies          int                 `json:"copies"`
	CopyBytes       int64               `json:"copy_bytes"`
	UnderReplicated int64               `json:"under_replicated"`
	Rebuild         RebuildStatus       `json:"rebuild"`
	Verify          VerifyStatus        `json:"verify"`
	Mailboxes       int                 `json:"mailboxes"`
	Load            Load                `json:"load"`
	// PeerAPI says how the peer API is protected (Config.PeerAPIMode):
	// operators see an unauthenticated one here (peerauth.go).
	PeerAPI string `json:"peer_api"`
	// Ready is the node's readiness: whether it reaches a write quorum
	// and its catalog is in sync (ready.go).
	Ready ReadyState `json:"ready"`
	// Reload is the last configuration reload (reload.go).
	Reload ReloadStatus `json:"reload"`
	// Drain is the node's drain (drain.go), when it is draining or left.
	Drain *DrainStatus `json:"drain,omitempty"`
}

// MemberStatus is one member as this node sees it.
type MemberStatus struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Status string `json:"status"`
	Roles  string `json:"roles"`
	Peer   string `json:"peer"`
	// Draining: the member advertises that it is being drained.
	Draining bool `json:"draining,omitempty"`
}

// RebuildStatus is the replicator's progress.
type RebuildStatus struct {
	RebuiltCopies     int64 `json:"rebuilt_copies"`
	RebuiltBytes      int64 `json:"rebuilt_bytes"`
	MovedCopies       int64 `json:"moved_copies"`
	TrimmedCopies     int64 `json:"trimmed_copies"`
	AutoRebalances    int64 `json:"auto_rebalances"`
	AntiEntropyRounds int64 `json:"anti_entropy_rounds"`
	AntiEntropyFixed  int64 `json:"anti_entropy_repaired"`
	PushDropped       int64 `json:"push_dropped"`
}

// Rebuild returns the replicator's progress counters. Unlike Status it
// scans nothing: the simulator samples it while the node runs.
func (n *Node) Rebuild() RebuildStatus {
	r := n.repl.Stats()
	return RebuildStatus{
		RebuiltCopies: r.RebuiltCopies, RebuiltBytes: r.RebuiltBytes,
		MovedCopies: r.MovedCopies, TrimmedCopies: r.TrimmedCopies, AutoRebalances: r.AutoRebalances,
		AntiEntropyRounds: r.AntiEntropyRounds,
		AntiEntropyFixed:  r.AntiEntropyFixed, PushDropped: r.PushDropped,
	}
}

// UnderReplicated is the number of committed entries short of R live
// copies found by the last maintenance scan (cheap, unlike Under, which
// scans now).
func (n *Node) UnderReplicated() int64 { return n.repl.UnderReplicated() }

// Status gathers the node's report.
func (n *Node) Status() Status {
	st := Status{
		Node: n.conf().Name, Build: ReadBuildInfo(n.conf().Version, n.conf().Commit), Roles: n.conf().Roles, Addrs: n.addrsSnapshot(),
		Mirror: n.members.Table(), Replicas: n.conf().Replicas, WriteQuorum: n.conf().WriteQuorum,
		CatalogDigest: n.cat.Digest(), Entries: map[string]int{},
		UnderReplicated: n.UnderReplicated(), Mailboxes: n.dir.Len(), Load: n.Load(),
		Rebuild: n.Rebuild(), Verify: n.Verify(), PeerAPI: n.conf().PeerAPIMode(), Ready: n.ready.State(),
		Reload: n.LastReload(),
	}
	st.MirrorPairs = st.Mirror.Pairs()
	if d := n.drain.status(); d.State != "" {
		d.Node = n.conf().Name
		st.Drain = &d
	}
	for s, c := range n.cat.Counts() {
		st.Entries[s.String()] = c
	}
	if ss, err := n.store.Stats(); err == nil {
		st.Copies, st.CopyBytes = ss.Copies, ss.CopyBytes
	}
	for _, m := range n.members.Members() {
		addr := ""
		if m.Addr != nil {
			addr = m.Addr.String()
		}
		st.Members = append(st.Members, MemberStatus{Name: m.Name, Addr: addr, Status: m.Status.String(), Roles: m.Tags[env.TagRoles], Peer: m.Tags[env.TagPeer],
			Draining: m.Tags[env.TagDraining] == "1"})
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	return st
}

// httpHandler serves /healthz, /readyz and the status on --http.
func (n *Node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if live := len(n.members.Table().Ring); live < n.conf().WriteQuorum {
			http.Error(w, fmt.Sprintf("not ready: %d live storage nodes, write quorum %d\n", live, n.conf().WriteQuorum), http.StatusServiceUnavailable)
			return
		}
		if st := n.ready.State(); !st.Ready {
			http.Error(w, fmt.Sprintf("not ready: %s: %s\n", st.Reason, st.Detail), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	// Operator endpoints: bind --http to an address only operators reach,
	// or set admin-token (docs/access.md).
	admin := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, n.adminOnly(h)) }
	admin("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.Status()) })
	admin("GET /metrics", n.metrics.handler().ServeHTTP)
	admin("POST /v1/rebalance", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, n.RebalanceAll(r.Context()))
	})
	// Draining a node (drain.go): this one or another, over the peer API.
	admin("POST /v1/drain/{node}", func(w http.ResponseWriter, r *http.Request) { n.serveDrain(w, r, true) })
	admin("GET /v1/drain/{node}", func(w http.ResponseWriter, r *http.Request) { n.serveDrain(w, r, false) })
	admin("GET /v1/quarantine", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.Quarantined()) })
	admin("GET /v1/quarantine/{id}", func(w http.ResponseWriter, r *http.Request) {
		data, err := n.QuarantinedMessage(r.Context(), r.PathValue("id"))
		if err != nil {
			httpError(w, err)
			return
		}
		// RFC 2046 §5.2.1: a whole message. nosniff keeps a browser from
		// rendering held mail as a page.
		w.Header().Set("Content-Type", "message/rfc822")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(data)
	})
	admin("POST /v1/quarantine/{id}/release", func(w http.ResponseWriter, r *http.Request) {
		if err := n.Release(r.Context(), r.PathValue("id")); err != nil {
			httpError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	admin("DELETE /v1/quarantine/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := n.DeleteQuarantined(r.Context(), r.PathValue("id")); err != nil {
			httpError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	admin("GET /v1/trace/{id}", func(w http.ResponseWriter, r *http.Request) {
		es := n.Trace(r.PathValue("id"))
		if len(es) == 0 {
			http.Error(w, "no such message", http.StatusNotFound)
			return
		}
		writeJSON(w, es)
	})
	n.mountWeb(mux) // webmail and the fax/voicemail gateway (webmail.go)
	return mux
}

// adminOnly lets a request through to h only with the admin token, when
// one is configured; a refusal is logged with the client's address.
func (n *Node) adminOnly(h http.Handler) http.Handler {
	want := n.conf().AdminToken
	if want == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			n.log.Warn("http: operator request without the admin token", "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="mailarray"`)
			http.Error(w, "admin token required (Authorization: Bearer; mailarray commands send $MAILARRAY_ADMIN_TOKEN)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// CatalogDigests asks every live member for its catalog digest.
func (n *Node) CatalogDigests(ctx context.Context) map[string]string {
	out := map[string]string{n.conf().Name: n.cat.Digest()}
	for _, m := range n.members.Live() {
		if m.Name == n.conf().Name {
			continue
		}
		var st Status
		if err := n.peer.Status(ctx, m.Name, &st); err == nil {
			out[m.Name] = st.CatalogDigest
		}
	}
	return out
}

// Under reports entries short of R live copies (for tests and status).
func (n *Node) Under() int {
	t := n.members.Table()
	want := min(n.conf().Replicas, len(t.Ring))
	under := 0
	n.cat.ForEach(func(e *catalog.Entry) bool {
		if e.State == catalog.Committed && len(replica.LiveHolders(t, e)) < want {
			under++
		}
		return true
	})
	return under
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func httpError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, errNotQuarantined) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
}

// RebalanceAll asks this node and every live peer to move copies to their
// balanced placement, and returns each node's answer ("ok" or an error).
func (n *Node) RebalanceAll(ctx context.Context) map[string]string {
	out := map[string]string{n.conf().Name: "ok"}
	n.repl.TriggerRebalance()
	for _, m := range n.members.Live() {
		if m.Name == n.conf().Name {
			continue
		}
		if err := n.peer.Rebalance(ctx, m.Name); err != nil {
			out[m.Name] = err.Error()
		} else {
			out[m.Name] = "ok"
		}
	}
	return out
}

// simFreeDiskBytes is the free disk a simulated node reports: the real
// file system's free space would make runs differ between machines.
const simFreeDiskBytes = 1 << 40

func (n *Node) freeDisk() int64 {
	if n.env.Cost != nil {
		return simFreeDiskBytes
	}
	return freeDiskBytes(filepath.Dir(n.store.Path()))
}
