package ddns

import (
	"sync"

	"mailarray/node/env"
)

// Roles a Source is asked about. They match the values of the env.TagRoles tag.
const (
	RoleSMTP = "smtp"
	RolePOP3 = "pop3"
	RoleIMAP = "imap"
	RoleDNS  = "dns"
	// RoleAny asks for every live member whatever its roles: node names
	// (<node>.<domain>) resolve for all of them.
	RoleAny = ""
)

// Source is the cluster state answers are built from. The node implements it
// from membership and configuration. Its methods are called for every query,
// concurrently: they must be safe for concurrent use and cheap.
type Source interface {
	// Domains lists the hosted domains, lowercase, without trailing dot.
	Domains() []string
	// Nodes lists the live members having role (RoleSMTP, RolePOP3,
	// RoleIMAP, RoleDNS, or RoleAny for all), sorted by name. The caller
	// may keep and reorder the returned slice. Members that are not alive,
	// have no address or a name that is not a DNS label are skipped anyway.
	Nodes(role string) []env.Member
	// Serial is the SOA serial (RFC 1035 section 3.3.13): a version of the
	// membership that increases when it changes, so a change is visible
	// to anyone comparing SOAs.
	Serial() uint32
}

// Query describes the question being answered, for the Orderer.
type Query struct {
	// Domain is the hosted domain (zone), lowercase, without trailing dot.
	Domain string
	// Name is the question's name, lowercase, fully qualified.
	Name string
	// Type is the question's type (dns.TypeMX, dns.TypeA, ...).
	Type uint16
	// Role is the role of the candidate nodes.
	Role string
}

// Orderer orders the candidate nodes for one answer, best first. It may
// return a subset (an empty result makes the answer SERVFAIL) and may reorder
// nodes in place. It is called concurrently. node/strategy implements the
// cluster's strategies; RoundRobin is the built-in default.
type Orderer interface {
	Order(q Query, nodes []env.Member) []env.Member
}

// RoundRobin rotates the starting node at each call, separately for each
// role, so interleaved MX and pop. queries each rotate evenly. The zero value
// is ready to use.
//
// The rotation is local to this server: two dns nodes each start at the first
// node. Consistent cluster-wide rotation (and any choice based on load, size
// or content) is node/strategy's job.
type RoundRobin struct {
	mu   sync.Mutex
	next map[string]uint64 // per role: rotation of the next call
}

var _ Orderer = (*RoundRobin)(nil)

// Name identifies the strategy in Server.Stats.
func (r *RoundRobin) Name() string { return "roundrobin" }

// Order returns nodes rotated left by the number of earlier calls for q.Role.
func (r *RoundRobin) Order(q Query, nodes []env.Member) []env.Member {
	if len(nodes) < 2 {
		return nodes
	}
	r.mu.Lock()
	if r.next == nil {
		r.next = make(map[string]uint64)
	}
	n := r.next[q.Role]
	r.next[q.Role] = n + 1
	r.mu.Unlock()
	start := int(n % uint64(len(nodes)))
	out := make([]env.Member, 0, len(nodes))
	out = append(out, nodes[start:]...)
	return append(out, nodes[:start]...)
}
