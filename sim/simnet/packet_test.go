package simnet

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUDPRoundTrip(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		pc, err := n.Host(srvIP).ListenPacket("udp", ":53")
		require.NoError(t, err)
		assert.Equal(t, srvIP+":53", pc.LocalAddr().String())
		echoed := make(chan error, 1)
		go func() {
			buf := make([]byte, 512)
			for {
				nr, from, err := pc.ReadFrom(buf)
				if err != nil {
					echoed <- err
					return
				}
				pc.WriteTo(buf[:nr], from)
			}
		}()

		c, err := n.Host(cliIP).DialContext(context.Background(), "udp", srvIP+":53")
		require.NoError(t, err)
		assert.Equal(t, srvIP+":53", c.RemoteAddr().String())
		_, isPC := c.(net.PacketConn)
		assert.True(t, isPC, "miekg/dns tells UDP by net.PacketConn")
		t0 := time.Now()
		_, err = c.Write([]byte("query"))
		require.NoError(t, err)
		buf := make([]byte, 512)
		nr, err := c.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "query", string(buf[:nr]))
		assert.Equal(t, 2*lat, time.Since(t0))

		// Read deadline: a temporary timeout, as miekg/dns needs.
		t0 = time.Now()
		require.NoError(t, c.SetReadDeadline(t0.Add(2*time.Second)))
		_, err = c.Read(buf)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
		assert.True(t, ne.Temporary())
		assert.Equal(t, 2*time.Second, time.Since(t0))

		_, err = c.(net.PacketConn).WriteTo(make([]byte, 70000), c.RemoteAddr())
		assert.ErrorIs(t, err, syscall.EMSGSIZE)

		_, err = n.Host(srvIP).ListenPacket("udp", ":53")
		assert.ErrorIs(t, err, syscall.EADDRINUSE)
		require.NoError(t, pc.Close())
		assert.ErrorIs(t, <-echoed, net.ErrClosed, "Close wakes ReadFrom")
		c.Close()
	})
}

func TestUDPLossRate(t *testing.T) {
	const sent, loss = 4000, 0.25
	simTest(t, func(c *NetConfig) {
		c.Link = LinkConfig{Latency: lat, LossRate: loss}
		c.PacketQueueLen = sent
	}, func(t *testing.T, n *Net) {
		rx, err := n.Host(srvIP).ListenPacket("udp", ":9")
		require.NoError(t, err)
		tx, err := n.Host(cliIP).ListenPacket("udp", ":0")
		require.NoError(t, err)
		for i := range sent {
			_, err := tx.WriteTo([]byte{byte(i)}, rx.LocalAddr())
			require.NoError(t, err)
		}
		time.Sleep(time.Second)
		received := 0
		rx.SetReadDeadline(time.Now().Add(time.Millisecond)) // queued datagrams are read at once
		for {
			if _, _, err := rx.ReadFrom(make([]byte, 1)); err != nil {
				break
			}
			received++
		}
		// 4 standard deviations of the binomial: sqrt(4000*0.25*0.75) = 27.4.
		want := float64(sent) * (1 - loss)
		assert.InDelta(t, want, float64(received), 110, "received %d of %d", received, sent)
		st := n.Stats()
		assert.Equal(t, int64(sent-received), st.Dropped)
		rx.Close()
		tx.Close()
	})
}

func TestUDPQueueLimit(t *testing.T) {
	simTest(t, func(c *NetConfig) { c.PacketQueueLen = 10 }, func(t *testing.T, n *Net) {
		rx, err := n.Host(srvIP).ListenPacket("udp", ":9")
		require.NoError(t, err)
		tx, err := n.Host(cliIP).ListenPacket("udp", ":0")
		require.NoError(t, err)
		for range 50 {
			tx.WriteTo([]byte("x"), rx.LocalAddr())
		}
		time.Sleep(time.Second)
		rx.SetReadDeadline(time.Now().Add(time.Millisecond))
		received := 0
		for {
			if _, _, err := rx.ReadFrom(make([]byte, 1)); err != nil {
				break
			}
			received++
		}
		assert.Equal(t, 10, received, "a full socket drops datagrams")
		assert.Equal(t, int64(40), n.Stats().Dropped)
		rx.Close()
		tx.Close()
	})
}
