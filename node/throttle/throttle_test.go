package throttle

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBeginCountsAttemptsBeforeTheCheck(t *testing.T) {
	th := New(time.Minute, 2, 10)
	now := time.Unix(1_700_000_000, 0)
	ok, _ := th.Begin(now, "a")
	require.True(t, ok)
	ok, _ = th.Begin(now, "a")
	require.True(t, ok, "two attempts in progress at once")
	ok, wait := th.Begin(now.Add(10*time.Second), "a")
	assert.False(t, ok, "a third, in parallel, is refused before any password check")
	assert.Equal(t, 50*time.Second, wait, "until the window ends")
	ok, _ = th.Begin(now, "b")
	assert.True(t, ok, "another key")
	th.Succeeded("a")
	ok, _ = th.Begin(now, "a")
	assert.True(t, ok, "a success gives its attempt back")
	ok, _ = th.Begin(now.Add(59*time.Second), "a")
	assert.False(t, ok)
	ok, _ = th.Begin(now.Add(time.Minute), "a")
	assert.True(t, ok, "a new window")
}

func TestSeveralKeys(t *testing.T) {
	th := New(time.Minute, 2, 3)
	now := time.Unix(1000, 0)
	ok, _ := th.Begin(now, "ip:a", "mailbox:m")
	require.True(t, ok)
	th.Succeeded("ip:a", "mailbox:m")
	for range 2 {
		ok, _ = th.Begin(now, "ip:a", "mailbox:m")
		require.True(t, ok)
	}
	ok, wait := th.Begin(now.Add(10*time.Second), "ip:b", "mailbox:m")
	assert.False(t, ok, "the mailbox used its attempts, whatever the address")
	assert.Equal(t, 50*time.Second, wait)
	// A table full of live keys (many addresses) counts no new key, but
	// forgets none it counts: filling it does not reset the mailbox.
	for _, k := range []string{"ip:c", "ip:d", "ip:e"} {
		ok, _ = th.Begin(now, k)
		assert.True(t, ok, k)
	}
	ok, _ = th.Begin(now, "ip:f", "mailbox:m")
	assert.False(t, ok, "the mailbox is still counted")
	ok, _ = th.Begin(now.Add(time.Minute), "ip:b", "mailbox:m")
	assert.True(t, ok, "a new window")
	// Expired keys make room again.
	ok, _ = th.Begin(now.Add(2*time.Minute), "ip:g")
	assert.True(t, ok)
	assert.LessOrEqual(t, len(th.counts), 3)
}

func TestDisabled(t *testing.T) {
	var th *Throttle
	for range 100 {
		ok, _ := th.Begin(time.Now(), "a")
		require.True(t, ok, "a nil throttle allows everything")
	}
	th.Succeeded("a")
}

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

func TestKey(t *testing.T) {
	for addr, key := range map[string]string{
		"192.0.2.7:80":               "192.0.2.7",
		"[::ffff:192.0.2.7]:80":      "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:80":  "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::9]:443": "2001:db8:1:2::/64",
		"[fe80::1%eth0]:143":         "fe80::/64",
		"[::1]:80":                   "::/64",
		"192.0.2.8":                  "192.0.2.8",
		"pipe":                       "pipe",
	} {
		assert.Equal(t, key, Key(addr), addr)
	}
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 110}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 110, Zone: "eth0"}, "fe80::/64"},
		{pipeAddr("sim-node-3:4711"), "sim-node-3"},
		{nil, ""},
	} {
		assert.Equal(t, tc.want, AddrKey(tc.addr), "addr %v", tc.addr)
	}
}
