package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewMailboxIsNotBounced (issue 19 item 5): mail for a mailbox added to
// the users file a moment ago is accepted at once, not refused with 550
// 5.1.1 until the watcher's next polls load the file (on the base commit
// it was, for about 3 s); an address still unknown right after the change
// gets 450 4.1.1, which a sender retries, and 550 before any change.
func TestNewMailboxIsNotBounced(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := writeUsers(t, dir, "alice@"+testDomain+":{PLAIN}secret")
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: users})
	require.Eventually(t, p.ready, startTimeout, 20*time.Millisecond, "the node is ready")

	rcptCode := func(rcpt string) int {
		t.Helper()
		_, err := send(context.Background(), p.addrs["smtp"], []string{rcpt}, testMessage("reload", 200))
		if err == nil {
			return 250
		}
		var se *gosmtp.SMTPError
		require.ErrorAs(t, err, &se, "an SMTP reply to RCPT <%s>", rcpt)
		return se.Code
	}
	// No change since the node loaded the file: unknown for good.
	assert.Equal(t, 550, rcptCode("nobody@"+testDomain))

	// The operator adds carol the way editors and tools write files: a new
	// file renamed over the old one.
	tmp := filepath.Join(dir, "users.new")
	require.NoError(t, os.WriteFile(tmp, []byte("alice@"+testDomain+":{PLAIN}secret\ncarol@"+testDomain+":{PLAIN}secret\n"), 0o600))
	require.NoError(t, os.Rename(tmp, users))
	assert.Equal(t, 250, rcptCode("carol@"+testDomain), "a mailbox added a moment ago is accepted")
	assert.Equal(t, 450, rcptCode("nobody@"+testDomain), "unknown while the file just changed: try again later")
}
