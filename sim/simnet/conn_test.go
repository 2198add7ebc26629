package simnet

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	cliIP = "10.0.0.1"
	srvIP = "10.0.0.2"
	lat   = time.Millisecond // one-way latency of testNet's links
)

// testNet is a net with exact 1 ms links (no jitter, no bandwidth limit), so
// tests can assert virtual times to the nanosecond.
func testNet(seed uint64, mod func(*NetConfig)) *Net {
	cfg := DefaultNetConfig()
	cfg.Link = LinkConfig{Latency: lat}
	if mod != nil {
		mod(&cfg)
	}
	return NewNet(seed, cfg)
}

// simTest runs f in a bubble with a running driver, stopped after f.
func simTest(t *testing.T, mod func(*NetConfig), f func(t *testing.T, n *Net)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		n := testNet(1, mod)
		stop := n.Start()
		defer stop()
		f(t, n)
	})
}

// pair returns both ends of an established stream from cliIP to srvIP:port.
func pair(t *testing.T, n *Net, port string) (cli, srv net.Conn) {
	t.Helper()
	l, err := n.Host(srvIP).Listen("tcp", ":"+port)
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	cli, err = n.Host(cliIP).DialContext(context.Background(), "tcp", srvIP+":"+port)
	require.NoError(t, err)
	srv = <-accepted
	require.NotNil(t, srv)
	return cli, srv
}

func TestStreamEcho(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		l, err := n.Host(srvIP).Listen("tcp", ":7")
		require.NoError(t, err)
		assert.Equal(t, srvIP+":7", l.Addr().String())
		served := make(chan struct{})
		go func() {
			defer close(served)
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			io.Copy(c, c)
		}()

		t0 := time.Now()
		c, err := n.Host(cliIP).DialContext(context.Background(), "tcp", srvIP+":7")
		require.NoError(t, err)
		assert.Equal(t, 2*lat, time.Since(t0), "connect takes one round trip")
		lport := c.LocalAddr().(*net.TCPAddr).Port
		assert.True(t, lport >= 32768 && lport <= 60999, "an ephemeral port: %d", lport)
		assert.Equal(t, cliIP, c.LocalAddr().(*net.TCPAddr).IP.String())
		assert.Equal(t, srvIP+":7", c.RemoteAddr().String())

		t0 = time.Now()
		_, err = c.Write([]byte("hello"))
		require.NoError(t, err)
		got := make([]byte, 5)
		_, err = io.ReadFull(c, got)
		require.NoError(t, err)
		assert.Equal(t, "hello", string(got))
		assert.Equal(t, 2*lat, time.Since(t0), "echo takes one round trip")

		require.NoError(t, c.Close())
		<-served
		require.NoError(t, l.Close())
	})
}

func TestWriteDoesNotBlockOnPeer(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		cli, srv := pair(t, n, "25")
		// Both ends write at once and neither reads: net.Pipe would deadlock.
		t0 := time.Now()
		big := bytes.Repeat([]byte("x"), 1<<20)
		_, err := srv.Write([]byte("421 too busy\r\n"))
		require.NoError(t, err)
		for range 4 {
			_, err := cli.Write(big)
			require.NoError(t, err)
		}
		assert.Zero(t, time.Since(t0), "writes return at once")
		line := make([]byte, 14)
		_, err = io.ReadFull(cli, line)
		require.NoError(t, err)
		assert.Equal(t, "421 too busy\r\n", string(line))
		cli.Close()
		srv.Close()
	})
}

func TestWriteBlocksWhenBufferFull(t *testing.T) {
	const buf = 128 << 10
	simTest(t, func(c *NetConfig) { c.StreamBufferBytes = buf }, func(t *testing.T, n *Net) {
		cli, srv := pair(t, n, "25")
		chunk := make([]byte, 64<<10)
		for range 2 {
			_, err := cli.Write(chunk)
			require.NoError(t, err)
		}
		// The buffer is full: the write deadline ends the wait.
		t0 := time.Now()
		require.NoError(t, cli.SetWriteDeadline(t0.Add(time.Second)))
		nw, err := cli.Write(chunk)
		assert.Zero(t, nw)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
		assert.Equal(t, time.Second, time.Since(t0))

		// Reading makes room and wakes the writer.
		require.NoError(t, cli.SetWriteDeadline(time.Time{}))
		go func() {
			time.Sleep(time.Second)
			io.ReadFull(srv, make([]byte, 64<<10))
		}()
		t0 = time.Now()
		_, err = cli.Write(chunk)
		require.NoError(t, err)
		assert.Equal(t, time.Second, time.Since(t0))
		cli.Close()
		srv.Close()
	})
}

func TestReadDeadline(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		cli, srv := pair(t, n, "80")
		buf := make([]byte, 16)

		t0 := time.Now()
		require.NoError(t, cli.SetReadDeadline(t0.Add(time.Second)))
		_, err := cli.Read(buf)
		assert.Equal(t, time.Second, time.Since(t0))
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout(), "Timeout()")
		assert.True(t, ne.Temporary(), "Temporary()")
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)

		// A new deadline wakes a Read blocked without one.
		require.NoError(t, cli.SetReadDeadline(time.Time{}))
		t0 = time.Now()
		go func() {
			time.Sleep(100 * time.Millisecond)
			cli.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		}()
		_, err = cli.Read(buf)
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		assert.Equal(t, 150*time.Millisecond, time.Since(t0))

		// A deadline in the past wakes it at once (net/http's abortPendingRead).
		require.NoError(t, cli.SetReadDeadline(time.Time{}))
		t0 = time.Now()
		go func() {
			time.Sleep(100 * time.Millisecond)
			cli.SetReadDeadline(time.Unix(1, 0))
		}()
		_, err = cli.Read(buf)
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		assert.Equal(t, 100*time.Millisecond, time.Since(t0))

		// Data before the deadline is returned.
		require.NoError(t, cli.SetReadDeadline(time.Now().Add(time.Second)))
		_, err = srv.Write([]byte("ok"))
		require.NoError(t, err)
		nr, err := cli.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "ok", string(buf[:nr]))
		cli.Close()
		srv.Close()
	})
}

func TestEOFAfterPeerClose(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		cli, srv := pair(t, n, "110")
		_, err := srv.Write([]byte("bye"))
		require.NoError(t, err)
		require.NoError(t, srv.Close())
		got, err := io.ReadAll(cli)
		require.NoError(t, err, "ReadAll stops at io.EOF")
		assert.Equal(t, "bye", string(got))
		_, err = cli.Read(make([]byte, 1))
		assert.Equal(t, io.EOF, err, "EOF again")
		_, err = cli.Write([]byte("late"))
		assert.NoError(t, err, "writing to a half-closed stream succeeds")

		require.NoError(t, cli.Close())
		_, err = cli.Read(make([]byte, 1))
		assert.ErrorIs(t, err, net.ErrClosed)
		_, err = cli.Write([]byte("x"))
		assert.ErrorIs(t, err, net.ErrClosed)
		assert.ErrorIs(t, cli.Close(), net.ErrClosed, "second Close")
	})
}

func TestCloseWhileReading(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		cli, srv := pair(t, n, "110")
		go func() {
			time.Sleep(time.Second)
			cli.Close()
		}()
		_, err := cli.Read(make([]byte, 1))
		assert.ErrorIs(t, err, net.ErrClosed, "local Close wakes a blocked Read")
		srv.Close()
	})
}

func TestCloseWrite(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		cli, srv := pair(t, n, "25")
		_, err := cli.Write([]byte("request"))
		require.NoError(t, err)
		require.NoError(t, cli.(*Conn).CloseWrite())
		_, err = cli.Write([]byte("x"))
		assert.ErrorIs(t, err, syscall.EPIPE)
		req, err := io.ReadAll(srv)
		require.NoError(t, err)
		assert.Equal(t, "request", string(req))
		_, err = srv.Write([]byte("reply"))
		require.NoError(t, err)
		require.NoError(t, srv.Close())
		reply, err := io.ReadAll(cli)
		require.NoError(t, err)
		assert.Equal(t, "reply", string(reply))
		cli.Close()
	})
}

func TestDialErrors(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		ctx := context.Background()
		cli, srv := n.Host(cliIP), n.Host(srvIP)

		t0 := time.Now()
		_, err := cli.DialContext(ctx, "tcp", srvIP+":25")
		assert.ErrorIs(t, err, syscall.ECONNREFUSED, "nobody listens")
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, "dial", oe.Op)
		assert.Equal(t, 2*lat, time.Since(t0), "the RST comes back after a round trip")

		srv.Crash()
		t0 = time.Now()
		_, err = cli.DialContext(ctx, "tcp", srvIP+":25")
		assert.ErrorIs(t, err, syscall.ECONNREFUSED, "crashed host")
		assert.Equal(t, 2*lat, time.Since(t0))
		_, err = srv.Listen("tcp", ":25")
		assert.ErrorIs(t, err, syscall.ENETDOWN, "a crashed host cannot listen")
		srv.Restart()

		_, err = cli.DialContext(ctx, "tcp", "10.9.9.9:25")
		assert.ErrorIs(t, err, syscall.EHOSTUNREACH, "no such host")
		_, err = cli.DialContext(ctx, "tcp", "mx.example:25")
		var dnsErr *net.DNSError
		assert.ErrorAs(t, err, &dnsErr, "names are not resolved")
		_, err = cli.DialContext(ctx, "sctp", srvIP+":25")
		assert.Error(t, err)

		l, err := srv.Listen("tcp", srvIP+":25")
		require.NoError(t, err)
		_, err = srv.Listen("tcp", "0.0.0.0:25")
		assert.ErrorIs(t, err, syscall.EADDRINUSE)
		_, err = srv.Listen("tcp", "10.0.0.3:26")
		assert.ErrorIs(t, err, syscall.EADDRNOTAVAIL, "not this host's address")

		// Closing the listener wakes Accept and refuses later SYNs.
		accepted := make(chan error, 1)
		go func() {
			_, err := l.Accept()
			accepted <- err
		}()
		time.Sleep(time.Millisecond)
		require.NoError(t, l.Close())
		assert.ErrorIs(t, <-accepted, net.ErrClosed)
		_, err = cli.DialContext(ctx, "tcp", srvIP+":25")
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)
		l2, err := srv.Listen("tcp", ":25")
		require.NoError(t, err, "the port is free again")
		l2.Close()

		// Port 0 picks an ephemeral port.
		l3, err := srv.Listen("tcp", ":0")
		require.NoError(t, err)
		assert.GreaterOrEqual(t, l3.Addr().(*net.TCPAddr).Port, DefaultNetConfig().EphemeralPortMin)
		assert.Equal(t, srvIP, l3.Addr().(*net.TCPAddr).IP.String())
		l3.Close()
	})
}

func TestCrashResetsPeers(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		srvHost := n.Host(srvIP)
		cli, srv := pair(t, n, "80")
		l, err := srvHost.Listen("tcp", ":81")
		require.NoError(t, err)
		acceptErr := make(chan error, 1)
		go func() {
			_, err := l.Accept()
			acceptErr <- err
		}()

		_, err = srv.Write([]byte("x")) // in flight when the host dies
		require.NoError(t, err)
		t0 := time.Now()
		srvHost.Crash()
		assert.ErrorIs(t, <-acceptErr, net.ErrClosed, "listeners close")
		_, err = srv.Read(make([]byte, 1))
		assert.ErrorIs(t, err, net.ErrClosed, "the crashed host's conns close")

		buf := make([]byte, 8)
		nr, err := cli.Read(buf)
		require.NoError(t, err, "data sent before the crash still arrives")
		assert.Equal(t, "x", string(buf[:nr]))
		_, err = cli.Read(buf)
		assert.ErrorIs(t, err, syscall.ECONNRESET)
		assert.Equal(t, lat, time.Since(t0), "the reset takes one link latency")
		_, err = cli.Write([]byte("y"))
		assert.ErrorIs(t, err, syscall.ECONNRESET)
		cli.Close()

		_, err = n.Host(cliIP).DialContext(context.Background(), "tcp", srvIP+":80")
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)

		srvHost.Restart()
		cli2, srv2 := pair(t, n, "80")
		_, err = cli2.Write([]byte("again"))
		require.NoError(t, err)
		got := make([]byte, 5)
		_, err = io.ReadFull(srv2, got)
		require.NoError(t, err)
		assert.Equal(t, "again", string(got))
		cli2.Close()
		srv2.Close()
	})
}

func TestCrashDuringDial(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		n.Host(srvIP)
		n.Partition([]string{cliIP}, []string{srvIP})
		errc := make(chan error, 1)
		go func() {
			_, err := n.Host(cliIP).DialContext(context.Background(), "tcp", srvIP+":25")
			errc <- err
		}()
		time.Sleep(time.Second)
		n.Host(cliIP).Crash()
		assert.ErrorIs(t, <-errc, syscall.ECONNABORTED)
		n.Heal()
	})
}

func TestPartitionDialTimesOut(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		l, err := n.Host(srvIP).Listen("tcp", ":25")
		require.NoError(t, err)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		cli := n.Host(cliIP)
		n.Partition([]string{cliIP}, []string{srvIP, "10.0.0.3"})

		t0 := time.Now()
		_, err = cli.DialContext(context.Background(), "tcp", srvIP+":25")
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 3*time.Second, time.Since(t0), "NetConfig.ConnectTimeout")

		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		t0 = time.Now()
		_, err = cli.DialContext(ctx, "tcp", srvIP+":25")
		cancel()
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		assert.Equal(t, 500*time.Millisecond, time.Since(t0), "the context ends the wait")

		n.Heal()
		c, err := cli.DialContext(context.Background(), "tcp", srvIP+":25")
		require.NoError(t, err, "healed")
		c.Close()

		n.Host(srvIP).SetDown(true)
		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
		_, err = cli.DialContext(ctx, "tcp", srvIP+":25")
		cancel()
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "a down host swallows SYNs")
		n.Host(srvIP).SetDown(false)
		c, err = cli.DialContext(context.Background(), "tcp", srvIP+":25")
		require.NoError(t, err, "back up")
		c.Close()
		l.Close()
	})
}

func TestPartitionStallsStreamsInOrder(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		cli, srv := pair(t, n, "80")
		got := make(chan string, 1)
		go func() {
			b := make([]byte, 2)
			_, err := io.ReadFull(srv, b)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(b)
		}()

		_, err := cli.Write([]byte("a")) // due at +1ms
		require.NoError(t, err)
		time.Sleep(lat / 2)
		n.Partition([]string{srvIP}, []string{cliIP}) // "a" is held at +1ms
		time.Sleep(lat)
		_, err = cli.Write([]byte("b")) // due at +2.5ms, ahead of the held "a"
		require.NoError(t, err)
		time.Sleep(lat * 9 / 10)
		assert.Equal(t, 1, n.Stats().Stalled)
		n.Heal() // at +2.4ms: "a" is resent, due at +3.4ms
		t0 := time.Now()
		assert.Equal(t, "ab", <-got, "the stream stays in order")
		assert.Equal(t, lat, time.Since(t0))

		// A longer partition: the reader waits for the heal.
		n.Partition([]string{srvIP}, []string{cliIP})
		_, err = cli.Write([]byte("cd"))
		require.NoError(t, err)
		go func() {
			time.Sleep(10 * time.Second)
			n.Heal()
		}()
		t0 = time.Now()
		b := make([]byte, 2)
		_, err = io.ReadFull(srv, b)
		require.NoError(t, err)
		assert.Equal(t, "cd", string(b))
		assert.Equal(t, 10*time.Second+lat, time.Since(t0))
		cli.Close()
		srv.Close()
	})
}

func TestBandwidthSerialisation(t *testing.T) {
	const size = 1_000_000
	simTest(t, func(c *NetConfig) {
		c.Link = LinkConfig{Latency: lat, BandwidthBytesPerSec: 1_000_000}
	}, func(t *testing.T, n *Net) {
		cli, srv := pair(t, n, "80")
		done := make(chan time.Duration, 1)
		t0 := time.Now()
		go func() {
			io.ReadFull(srv, make([]byte, size))
			done <- time.Since(t0)
		}()
		_, err := cli.Write(make([]byte, size))
		require.NoError(t, err)
		took := <-done
		// 1 MB at 1 MB/s, plus the segments' headers and the latency.
		assert.GreaterOrEqual(t, took, time.Second)
		assert.Less(t, took, 1010*time.Millisecond)
		t.Logf("1 MB over a 1 MB/s link: %v virtual", took)
		cli.Close()
		srv.Close()
	})
}

func TestLossDelaysStreamsByRTO(t *testing.T) {
	simTest(t, func(c *NetConfig) {
		c.Link = LinkConfig{Latency: lat, LossRate: 0.5}
	}, func(t *testing.T, n *Net) {
		cli, srv := pair(t, n, "80")
		var delays []time.Duration
		buf := make([]byte, 1)
		for i := range 40 {
			t0 := time.Now()
			_, err := cli.Write([]byte{byte(i)})
			require.NoError(t, err)
			_, err = io.ReadFull(srv, buf)
			require.NoError(t, err)
			require.Equal(t, byte(i), buf[0], "no byte is lost")
			delays = append(delays, time.Since(t0))
		}
		var slow int
		for _, d := range delays {
			switch d {
			case lat:
			case lat + 200*time.Millisecond:
				slow++
			default:
				t.Errorf("delay %v is neither the latency nor latency + RTO", d)
			}
		}
		assert.Greater(t, slow, 5)
		assert.Less(t, slow, 35)
		cli.Close()
		srv.Close()
	})
}

func TestLatencyWithinRange(t *testing.T) {
	const base, jitter = 5 * time.Millisecond, 2 * time.Millisecond
	simTest(t, func(c *NetConfig) {
		c.Link = LinkConfig{Latency: base, Jitter: jitter}
	}, func(t *testing.T, n *Net) {
		rx, err := n.Host(srvIP).ListenPacket("udp", ":9")
		require.NoError(t, err)
		tx, err := n.Host(cliIP).DialContext(context.Background(), "udp", srvIP+":9")
		require.NoError(t, err)
		distinct := map[time.Duration]bool{}
		for range 100 {
			t0 := time.Now()
			_, err := tx.Write([]byte("ping"))
			require.NoError(t, err)
			_, _, err = rx.ReadFrom(make([]byte, 8))
			require.NoError(t, err)
			d := time.Since(t0)
			assert.GreaterOrEqual(t, d, base)
			assert.Less(t, d, base+jitter)
			distinct[d] = true
		}
		assert.Greater(t, len(distinct), 50, "jitter varies")
		tx.Close()
		rx.Close()
	})
}

func TestSetLinkOverrides(t *testing.T) {
	simTest(t, func(c *NetConfig) {
		c.Links = []LinkOverride{{A: cliIP, B: srvIP, Link: LinkConfig{Latency: 10 * time.Millisecond}}}
	}, func(t *testing.T, n *Net) {
		n.Host(srvIP)
		t0 := time.Now()
		_, err := n.Host(cliIP).DialContext(context.Background(), "tcp", srvIP+":1")
		require.Error(t, err)
		assert.Equal(t, 20*time.Millisecond, time.Since(t0), "override from the config")
		n.SetLink(srvIP, cliIP, LinkConfig{Latency: 3 * time.Millisecond})
		t0 = time.Now()
		_, err = n.Host(cliIP).DialContext(context.Background(), "tcp", srvIP+":1")
		require.Error(t, err)
		assert.Equal(t, 6*time.Millisecond, time.Since(t0), "override at run time")
		t0 = time.Now()
		_, err = n.Host(cliIP).DialContext(context.Background(), "tcp", "10.0.0.3:1")
		assert.Error(t, err, "unknown host fails at once")
		n.Host("10.0.0.3")
		_, err = n.Host(cliIP).DialContext(context.Background(), "tcp", "10.0.0.3:1")
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)
		assert.Equal(t, 2*lat, time.Since(t0), "other pairs keep the default")
	})
}

func TestStats(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		cli, srv := pair(t, n, "80")
		_, err := cli.Write([]byte("12345"))
		require.NoError(t, err)
		io.ReadFull(srv, make([]byte, 5))
		st := n.Stats()
		require.Len(t, st.Links, 2)
		assert.Equal(t, LinkStats{From: cliIP, To: srvIP, Messages: 2, Bytes: 5}, st.Links[0], "SYN and data")
		assert.Equal(t, LinkStats{From: srvIP, To: cliIP, Messages: 1}, st.Links[1], "SYN-ACK")
		assert.Equal(t, int64(3), st.Events)
		cli.Close()
		srv.Close()
	})
}

func TestRandStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := testNet(7, nil), testNet(7, nil)
		assert.Equal(t, a.Rand("n1").Uint64(), b.Rand("n1").Uint64(), "same seed and name, same stream")
		assert.Same(t, a.Rand("n2"), a.Rand("n2"))
		assert.NotEqual(t, a.Rand("n3").Uint64(), a.Rand("n4").Uint64())
		assert.NotEqual(t, testNet(8, nil).Rand("n1").Uint64(), testNet(7, nil).Rand("n1").Uint64())
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*NetConfig)
	}{
		{"negative latency", func(c *NetConfig) { c.Link.Latency = -1 }},
		{"loss 1", func(c *NetConfig) { c.Link.LossRate = 1 }},
		{"no connect timeout", func(c *NetConfig) { c.ConnectTimeout = 0 }},
		{"ports reversed", func(c *NetConfig) { c.EphemeralPortMin, c.EphemeralPortMax = 2000, 1000 }},
		{"bad override host", func(c *NetConfig) { c.Links = []LinkOverride{{A: "n1", B: srvIP}} }},
		{"huge datagram", func(c *NetConfig) { c.DatagramBytesMax = 1 << 20 }},
	}
	require.NoError(t, DefaultNetConfig().Validate())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultNetConfig()
			tt.mod(&cfg)
			assert.Error(t, cfg.Validate())
		})
	}
}

func TestLoopback(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		h := n.Host(srvIP)
		l, err := h.Listen("tcp", "127.0.0.1:8080")
		require.NoError(t, err)
		assert.Equal(t, srvIP+":8080", l.Addr().String())
		go func() {
			c, err := l.Accept()
			if err == nil {
				c.Write([]byte("self"))
				c.Close()
			}
		}()
		t0 := time.Now()
		c, err := h.DialContext(context.Background(), "tcp", "127.0.0.1:8080")
		require.NoError(t, err)
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		assert.Equal(t, "self", string(got))
		// The server writes as the SYN arrives: its data follows the SYN-ACK.
		assert.Equal(t, 2*DefaultNetConfig().Loopback.Latency, time.Since(t0), "one round trip on the loopback link")
		c.Close()
		l.Close()
	})
}

// A datagram the driver was not poked for (it could not arrive before the
// driver's timer) is drawn as of when it was sent: with the link model of
// that instant, also when SetLink changes the model later, and with the
// new model when SetLink comes at the same instant, which must then wake
// the driver in time.
func TestSetLinkAndQueuedDatagrams(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setAfter time.Duration // SetLink this long after the send
		want     time.Duration // arrival, since the send
	}{
		{"same instant: the new latency", 0, time.Millisecond},
		{"later: the latency it was sent with", time.Millisecond, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			simTest(t, func(c *NetConfig) {
				c.Links = []LinkOverride{{A: cliIP, B: srvIP, Link: LinkConfig{Latency: 100 * time.Millisecond}}}
			}, func(t *testing.T, n *Net) {
				rx, err := n.Host(srvIP).ListenPacket("udp", ":9")
				require.NoError(t, err)
				defer rx.Close()
				tx, err := n.Host(cliIP).DialContext(context.Background(), "udp", srvIP+":9")
				require.NoError(t, err)
				defer tx.Close()
				// The driver sleeps until 50 ms: a send at 1 ms over a
				// 100 ms link does not wake it.
				n.AfterFunc(50*time.Millisecond, "test", func() {})
				time.Sleep(time.Millisecond)
				t0 := time.Now()
				_, err = tx.Write([]byte("x"))
				require.NoError(t, err)
				if tc.setAfter > 0 {
					time.Sleep(tc.setAfter)
				}
				n.SetLink(cliIP, srvIP, LinkConfig{Latency: time.Millisecond})
				_, _, err = rx.ReadFrom(make([]byte, 8))
				require.NoError(t, err)
				assert.Equal(t, tc.want, time.Since(t0))
			})
		})
	}
}
