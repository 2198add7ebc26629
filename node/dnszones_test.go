package node

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/ddns"
	"mailarray/node/env"
)

// The zone-file setting publishes static records beside the array's own,
// reloads them on change, and a bad zone stops the start naming its line.
func TestDNSZoneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "example.com.zone")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o644)) }
	write("$TTL 600\n@ TXT \"v=spf1 mx -all\"\n_dmarc TXT \"v=DMARC1; p=none\"\n")
	n := startNode(t, func(c *Config) {
		c.ZoneFiles = []string{"example.com=" + path}
		c.UsersReload = 10 * time.Millisecond
	})
	ask := func(name string, qtype uint16) *dns.Msg {
		m := new(dns.Msg).SetQuestion(name, qtype)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := ddns.Exchange(ctx, &env.RealNet{}, n.Addr("dns"), m, false)
		require.NoError(t, err)
		return r
	}
	txt := func(name string) string {
		r := ask(name, dns.TypeTXT)
		if len(r.Answer) != 1 {
			return ""
		}
		return r.Answer[0].(*dns.TXT).Txt[0]
	}
	assert.Equal(t, "v=spf1 mx -all", txt("example.com."))
	assert.Equal(t, "v=DMARC1; p=none", txt("_dmarc.example.com."))
	mx := ask("example.com.", dns.TypeMX)
	require.Len(t, mx.Answer, 1, "the MX stays the array's")
	assert.Equal(t, "n1.example.com.", mx.Answer[0].(*dns.MX).Mx)

	write("$TTL 600\n@ TXT \"v=spf1 mx -all\"\n_dmarc TXT \"v=DMARC1; p=reject\"\n")
	require.Eventually(t, func() bool { return txt("_dmarc.example.com.") == "v=DMARC1; p=reject" }, 10*time.Second, 10*time.Millisecond)

	// A node whose zone file is bad does not start.
	c := &testCluster{t: t, nodes: map[string]*Node{}, dirs: map[string]string{}, r: 1, w: 1, users: testUsers}
	cfg := c.config("n2")
	bad := filepath.Join(t.TempDir(), "bad.zone")
	require.NoError(t, os.WriteFile(bad, []byte("@ TXT \"ok\"\nn2 A 192.0.2.1\n"), 0o644))
	cfg.ZoneFiles = []string{"example.com=" + bad}
	e := &Env{Net: &env.RealNet{}, Rand: env.NewRand(3), Membership: staticSelf("n2"), DataDir: cfg.DataDir, Log: testLogger(t)}
	n2, err := New(cfg, e)
	require.NoError(t, err)
	err = n2.Start()
	require.Error(t, err)
	assert.Contains(t, err.Error(), bad+" line 2: record is the array's: A at n2.example.com. (this node's own name)")
}

func TestConfigZoneFile(t *testing.T) {
	for _, tt := range []struct {
		entries []string
		dns     string
		want    string // "" valid
	}{
		{[]string{"example.com=/etc/z"}, "127.0.0.1:53", ""},
		{[]string{"/etc/zones"}, "127.0.0.1:53", ""},
		{[]string{"example.net=/etc/z"}, "127.0.0.1:53", "config: zone-file: ddns: zone-file: \"example.net=/etc/z\": example.net is not a hosted domain"},
		{[]string{"example.com=/etc/z"}, "", "config: zone-file: needs the dns listener"},
	} {
		c := DefaultConfig()
		c.Name, c.DataDir, c.Domains, c.Mailboxes = "n1", t.TempDir(), []string{"example.com"}, testUsers
		c.DNSAddr = tt.dns
		c.ZoneFiles = tt.entries
		err := c.Validate()
		if tt.want == "" {
			assert.NoError(t, err, tt.entries)
		} else {
			assert.ErrorContains(t, err, tt.want, tt.entries)
		}
	}
}
