package pop3

import (
	"context"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCurl checks interoperability with an independent client, libcurl's
// POP3 support (CAPA, USER/PASS, RETR with dot-unstuffing, LIST, QUIT).
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed; skipping interoperability test")
	}
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	run := func(t *testing.T, path string) string {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-s", "-S", "--max-time", "10",
			"pop3://"+ts.addr+path, "-u", "alice:"+alicePass).Output()
		require.NoError(t, err, "curl %s", path)
		return string(out)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{"/1", msgDots},
		{"/2", msgPlain},
		{"/3", msgNoEOL + "\r\n"},
		{"/", "1 64\r\n2 37\r\n3 34\r\n"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			assert.Equal(t, tc.want, run(t, tc.path))
		})
	}
	assert.False(t, ts.backend.isLocked("alice"), "curl's QUIT released the lock")
	assert.Equal(t, []string{"alice-1", "alice-2", "alice-3"}, ts.backend.ids("alice"))
}
