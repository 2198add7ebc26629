package node

// What the node's DNS server (node/ddns) sees of the node: the hosted
// domains, the live members that may be answered for a role, and the SOA
// serial. Readiness filtering (readyOnly) lives in ready.go.

import (
	"mailarray/node/ddns"
	"mailarray/node/env"
	"mailarray/node/mirror"
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
