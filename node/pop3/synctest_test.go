package pop3

import (
	"bufio"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInSynctestBubble runs the server the way the simulator does: inside a
// synctest bubble, over in-memory conns, with the default (RFC 1939) ten
// minute autologout elapsing on the fake clock.
func TestInSynctestBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBackend()
		cfg := DefaultConfig() // FailedLoginDelay 1s, IdleTimeout 10m: fake time makes them free
		srv := New(cfg, b, nil)
		serverSide, clientSide := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- srv.ServeConn(serverSide) }()

		c, err := NewClient(clientSide)
		require.NoError(t, err)
		start := time.Now()
		assert.Equal(t, "AUTH", ErrorCode(c.Login("alice", wrongPass)))
		assert.Equal(t, cfg.FailedLoginDelay, time.Since(start), "failed login delayed exactly")
		require.NoError(t, c.Login("alice", alicePass))
		require.NoError(t, c.Dele(1))

		// Say nothing; the next line is the autologout notice, after exactly
		// IdleTimeout of fake time.
		idleFrom := time.Now()
		line, err := bufio.NewReader(clientSide).ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "-ERR autologout; idle for too long\r\n", line)
		assert.Equal(t, cfg.IdleTimeout, time.Since(idleFrom))
		require.NoError(t, <-done)
		assert.False(t, b.isLocked("alice"))
		assert.Equal(t, []string{"alice-1", "alice-2", "alice-3"}, b.ids("alice"))
		require.NoError(t, srv.Close())
	})
}
