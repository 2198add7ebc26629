package ddns

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"mailarray/node/env"
)

// fakeSource is a Source over a fixed list of members: a real, tiny
// implementation, roles read from the env.TagRoles tag as the node does.
type fakeSource struct {
	mu      sync.Mutex
	domains []string
	members []env.Member
	serial  uint32
}

var _ Source = (*fakeSource)(nil)

func (f *fakeSource) Domains() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.domains)
}

func (f *fakeSource) Nodes(role string) []env.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []env.Member
	for _, m := range f.members {
		if m.Status != env.StatusAlive {
			continue
		}
		if role != RoleAny && !slices.Contains(strings.Split(m.Tags[env.TagRoles], ","), role) {
			continue
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b env.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (f *fakeSource) Serial() uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.serial
}

func member(name, addr, roles string) env.Member {
	return env.Member{Name: name, Addr: net.ParseIP(addr), Tags: map[string]string{env.TagRoles: roles}, Status: env.StatusAlive}
}

// testCluster hosts example.com, other.org and sub.example.com:
//
//	n1 10.0.0.1  smtp,pop3,dns
//	n2 10.0.0.2  smtp,imap
//	n3 10.0.0.3  smtp,pop3,dns
//	n4 10.0.0.4  store (no DNS-visible role)
//	n5 10.0.0.5  smtp, failed
//	v6 2001:db8::6 imap
func testCluster() *fakeSource {
	n5 := member("n5", "10.0.0.5", "smtp")
	n5.Status = env.StatusFailed
	return &fakeSource{
		domains: []string{"example.com", "other.org", "sub.example.com"},
		members: []env.Member{
			member("n3", "10.0.0.3", "smtp,pop3,dns"), // out of order on purpose: Source sorts
			member("n1", "10.0.0.1", "smtp,pop3,dns"),
			member("n2", "10.0.0.2", "smtp,imap"),
			member("n4", "10.0.0.4", "store"),
			n5,
			member("v6", "2001:db8::6", "imap"),
		},
		serial: 42,
	}
}

// bigCluster has n smtp nodes named n01, n02, ...
func bigCluster(n int) *fakeSource {
	src := &fakeSource{domains: []string{"example.com"}, serial: 1}
	for i := 1; i <= n; i++ {
		src.members = append(src.members, member(fmt.Sprintf("n%02d", i), fmt.Sprintf("10.0.1.%d", i), "smtp,dns"))
	}
	return src
}
