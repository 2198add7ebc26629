package imap

import (
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoginThrottlePerAddress(t *testing.T) {
	// The per-connection limit alone costs a guesser a reconnect: failures
	// count per address across connections, as for POP3.
	cfg := testConfig()
	cfg.ThrottleMaxFailures = 4
	ts := startServer(t, cfg)
	for i := range 6 {
		cl := ts.client(t, nil)
		require.NoError(t, cl.Login(alice, alicePass).Wait(), "login %d: good logins are not counted", i)
		cl.Close()
	}
	a := ts.client(t, nil)
	for range maxFailedLogins {
		require.ErrorContains(t, a.Login(alice, "wrong").Wait(), "AUTHENTICATIONFAILED")
	}
	b := ts.client(t, nil)
	require.ErrorContains(t, b.Login(alice, "wrong").Wait(), "AUTHENTICATIONFAILED", "the fourth failure, on another connection")
	err := b.Login(alice, alicePass).Wait()
	require.Error(t, err, "the address used its attempts: not even the right password is checked")
	assert.ErrorContains(t, err, "UNAVAILABLE")
	d := ts.client(t, nil)
	assert.ErrorContains(t, d.Login(alice, alicePass).Wait(), "try again later", "nor on a new connection")
	require.ErrorContains(t, d.Authenticate(sasl.NewPlainClient("", alice, alicePass)), "try again later", "nor with AUTHENTICATE")
}
