package node

// What a node reports of itself: Status for operators (GET /v1/status on
// --http, `mailarray status`, and the peer API), Load for the strategies
// that weigh load (GET /v1/load), and the cheap counters the simulator
// samples while the node runs.

import (
	"path/filepath"
	"sort"
	"time"

	"mailarray/node/env"
	"mailarray/node/mirror"
)

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

// RebuildStatus returns the replicator's progress counters. Unlike Status
// it scans nothing: the simulator samples it while the node runs.
func (n *Node) RebuildStatus() RebuildStatus {
	r := n.repl.Stats()
	return RebuildStatus{
		RebuiltCopies: r.RebuiltCopies, RebuiltBytes: r.RebuiltBytes,
		MovedCopies: r.MovedCopies, TrimmedCopies: r.TrimmedCopies, AutoRebalances: r.AutoRebalances,
		AntiEntropyRounds: r.AntiEntropyRounds,
		AntiEntropyFixed:  r.AntiEntropyFixed, PushDropped: r.PushDropped,
	}
}

// UnderReplicated is the number of committed entries short of R live
// copies found by the last maintenance scan: cheap, so the simulator
// samples it while the node runs (tests that must not lag scan the
// catalog instead, export_test.go).
func (n *Node) UnderReplicated() int64 { return n.repl.UnderReplicated() }

// Status gathers the node's report.
func (n *Node) Status() Status {
	st := Status{
		Node: n.conf().Name, Build: ReadBuildInfo(n.conf().Version, n.conf().Commit), Roles: n.conf().Roles, Addrs: n.addrsSnapshot(),
		Mirror: n.members.Table(), Replicas: n.conf().Replicas, WriteQuorum: n.conf().WriteQuorum,
		CatalogDigest: n.cat.Digest(), Entries: map[string]int{},
		UnderReplicated: n.UnderReplicated(), Mailboxes: n.dir.Len(), Load: n.Load(),
		Rebuild: n.RebuildStatus(), Verify: n.Verify(), PeerAPI: n.conf().PeerAPIMode(), Ready: n.ready.State(),
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

// simFreeDiskBytes is the free disk a simulated node reports: the real
// file system's free space would make runs differ between machines.
const simFreeDiskBytes = 1 << 40

func (n *Node) freeDisk() int64 {
	if n.env.Cost != nil {
		return simFreeDiskBytes
	}
	return freeDiskBytes(filepath.Dir(n.store.Path()))
}
