package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testEICAR is the antivirus test file, split so no scanner flags this
// source.
var testEICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// `mailarray quarantine show ID` prints a held message so an operator can
// look before releasing it, with its control characters escaped unless
// --raw; an id that is not in quarantine is refused, so show reads no
// mailbox.
func TestQuarantineShow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startNode(t, nodeOpts{name: "q1", dir: dir, users: writeUsers(t, dir, clusterUsers...), extra: []string{"--av-policy", "quarantine"}})
	msg := "From: x@remote.test\r\nTo: alice@" + testDomain + "\r\nSubject: held for a look\r\n\r\nterminal \x1b]0;pwned\x07 trick\r\n" + testEICAR + "\r\n"
	_, err := send(context.Background(), p.addrs["smtp"], []string{"alice@" + testDomain}, []byte(msg))
	require.NoError(t, err)

	out, errOut, code := runCommand(t, "", "quarantine", "list", "--addr", p.http)
	require.Zero(t, code, "stderr: %s", errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, "one message held: %s", out)
	id := strings.Fields(lines[1])[0]

	out, errOut, code = runCommand(t, "", "quarantine", "show", id, "--addr", p.http)
	require.Zero(t, code, "stderr: %s", errOut)
	assert.Contains(t, out, "Subject: held for a look")
	assert.Contains(t, out, "EICAR-STANDARD-ANTIVIRUS-TEST-FILE")
	assert.Contains(t, out, `terminal \x1b]0;pwned\x07 trick`, "escape sequences are shown, not sent to the terminal")
	assert.NotContains(t, out, "\x1b")

	out, _, code = runCommand(t, "", "quarantine", "show", id, "--raw", "--addr", p.http)
	require.Zero(t, code)
	assert.Contains(t, out, "terminal \x1b]0;pwned\x07 trick", "--raw is the message as held")

	_, errOut, code = runCommand(t, "", "quarantine", "show", "no-such-id", "--addr", p.http)
	assert.NotZero(t, code)
	assert.Contains(t, errOut, "404")

	// Still held: show does not release.
	out, _, _ = runCommand(t, "", "quarantine", "list", "--addr", p.http)
	assert.Contains(t, out, id)
}
