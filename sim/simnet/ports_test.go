package simnet

import (
	"context"
	"net"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dialPorts dials each destination in order from cliIP and returns the
// local port of every stream and datagram socket, by destination and
// network ("tcp 10.0.0.2:7000").
func dialPorts(t *testing.T, order []string) map[string]int {
	t.Helper()
	ports := map[string]int{}
	synctest.Test(t, func(t *testing.T) {
		n := testNet(1, nil)
		stop := n.Start()
		defer stop()
		for _, ip := range []string{srvIP, "10.0.0.3"} {
			l, err := n.Host(ip).Listen("tcp", ":7000")
			require.NoError(t, err)
			defer l.Close()
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		cli := n.Host(cliIP)
		for _, dst := range order {
			for _, network := range []string{"tcp", "udp"} {
				c, err := cli.DialContext(context.Background(), network, dst+":7000")
				require.NoError(t, err)
				switch a := c.LocalAddr().(type) {
				case *net.TCPAddr:
					ports[network+" "+dst] = a.Port
				case *net.UDPAddr:
					ports[network+" "+dst] = a.Port
				}
				c.Close()
			}
		}
	})
	return ports
}

// A host's ephemeral port for a dial depends on the destination and the
// dial's number there, not on dials to other destinations: goroutines that
// dial different peers at the same virtual instant run in whatever order
// the scheduler (or a preemption on a loaded machine) gives them, and a
// shared port cursor made that order change every stream key of the run
// and so its digest (seen as a flaky simulator digest under load).
func TestEphemeralPortsIndependentOfDialOrder(t *testing.T) {
	ab := dialPorts(t, []string{srvIP, "10.0.0.3"})
	ba := dialPorts(t, []string{"10.0.0.3", srvIP})
	require.Len(t, ab, 4)
	assert.Equal(t, ab, ba)
	cfg := DefaultNetConfig()
	for k, p := range ab {
		assert.GreaterOrEqual(t, p, cfg.EphemeralPortMin, k)
		assert.LessOrEqual(t, p, cfg.EphemeralPortMax, k)
	}
}

// Ports are picked among free ones: a host with the whole range but one
// port in use never picks that port, and a full range fails cleanly.
func TestEphemeralPortsSkipPortsInUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := testNet(1, func(c *NetConfig) { c.EphemeralPortMin, c.EphemeralPortMax = 40000, 40002 })
		stop := n.Start()
		defer stop()
		h := n.Host(cliIP)
		seen := map[string]bool{}
		var ls []net.Listener
		for range 3 {
			l, err := h.Listen("tcp", ":0")
			require.NoError(t, err)
			ls = append(ls, l)
			assert.False(t, seen[l.Addr().String()], "port picked twice: %s", l.Addr())
			seen[l.Addr().String()] = true
		}
		_, err := h.Listen("tcp", ":0")
		require.Error(t, err, "no free port left")
		for _, l := range ls {
			l.Close()
		}
	})
}
