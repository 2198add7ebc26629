package throttle

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func tcp(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
}

// TestConnsPerAddress: the cap is per IPv4 address and per IPv6 /64, and
// another address still gets in while one is capped.
func TestConnsPerAddress(t *testing.T) {
	c := NewConns(2)
	for _, tc := range []struct {
		remote string
		want   bool
	}{
		{"192.0.2.1:1000", true},
		{"192.0.2.1:1001", true},
		{"192.0.2.1:1002", false},         // third from one IPv4 address
		{"192.0.2.2:1000", true},          // another address
		{"[2001:db8:1:2::1]:1000", true},  //
		{"[2001:db8:1:2::ff]:1000", true}, // same /64: the second
		{"[2001:db8:1:2:abcd::7]:1", false},
		{"[2001:db8:1:3::1]:1000", true}, // the next /64
		{"[::ffff:192.0.2.1]:5", false},  // a v4-mapped address is the v4 one
	} {
		_, got := c.Acquire(tcp(tc.remote))
		assert.Equal(t, tc.want, got, "Acquire(%s)", tc.remote)
	}
	key, _ := c.Acquire(tcp("192.0.2.9:1"))
	require.Equal(t, "192.0.2.9", key)
	c.Release("192.0.2.1")
	_, ok := c.Acquire(tcp("192.0.2.1:2000"))
	assert.True(t, ok, "a released connection makes room")
	assert.Equal(t, 2, c.Open("2001:db8:1:2::/64"))
	assert.Panics(t, func() { c.Release("198.51.100.1") }, "release without acquire")
	var off *Conns
	_, ok = off.Acquire(tcp("192.0.2.1:1"))
	assert.True(t, ok, "nil allows all")
}
