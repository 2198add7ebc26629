package simnet

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A paused host holds the stream in both directions, loses nothing, and
// delivers in order after the resume; so does a stalled link, one way.
func TestPauseAndStallHoldPackets(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		cli, srv := pair(t, n, "80")
		read := func(c io.Reader, k int) chan string {
			got := make(chan string, 1)
			go func() {
				b := make([]byte, k)
				if _, err := io.ReadFull(c, b); err != nil {
					got <- err.Error()
					return
				}
				got <- string(b)
			}()
			return got
		}
		sent0, recv0 := n.HostPackets(srvIP)
		n.Host(srvIP).Pause()
		got := read(srv, 2)
		_, err := cli.Write([]byte("ab"))
		require.NoError(t, err)
		time.Sleep(10 * time.Second)
		select {
		case s := <-got:
			t.Fatalf("a paused host received %q", s)
		default:
		}
		sent, recv := n.HostPackets(srvIP)
		assert.Equal(t, [2]int64{sent0, recv0}, [2]int64{sent, recv}, "nothing delivered to or from a paused host")
		assert.Equal(t, 1, n.Held(srvIP))
		t0 := time.Now()
		n.Host(srvIP).Resume()
		assert.Equal(t, "ab", <-got)
		assert.Equal(t, lat, time.Since(t0), "held segments are sent again at the resume")

		// A one-way stall: server to client is held, client to server is not.
		n.StallLink(srvIP, cliIP, true, true)
		back := read(cli, 2)
		got = read(srv, 2)
		_, err = srv.Write([]byte("cd"))
		require.NoError(t, err)
		_, err = cli.Write([]byte("ef"))
		require.NoError(t, err)
		assert.Equal(t, "ef", <-got, "the other direction flows")
		time.Sleep(5 * time.Second)
		select {
		case s := <-back:
			t.Fatalf("a stalled direction delivered %q", s)
		default:
		}
		n.StallLink(srvIP, cliIP, true, false)
		assert.Equal(t, "cd", <-back)
		cli.Close()
		srv.Close()
	})
}
