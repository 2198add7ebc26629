package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node"
)

// TestServeSIGHUPReload (issue 18 item 11): SIGHUP re-reads the config
// file. Live keys (smtp-max-sessions-per-ip; pipeline.av-policy, which
// rebuilds the inbound pipeline) take effect on the socket at once; a restart-only key (max-message-bytes, go-smtp's SIZE) keeps
// its running value and is logged as needing a restart; a broken file is
// refused, logged with the key at fault, and the node serves on with the
// configuration it had.
func TestServeSIGHUPReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := writeUsers(t, dir, "alice@"+testDomain+":{PLAIN}secret")
	conf := filepath.Join(dir, "node.yaml")
	writeConf := func(body string) {
		t.Helper()
		// As editors and tools write files: a new file renamed over the old.
		require.NoError(t, os.WriteFile(conf+".new", []byte(body), 0o600))
		require.NoError(t, os.Rename(conf+".new", conf))
	}
	writeConf("smtp-max-sessions-per-ip: 1\nmax-message-bytes: 65536\n")
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: users, extra: []string{"--config", conf}})
	require.Eventually(t, p.ready, startTimeout, 20*time.Millisecond, "the node is ready")
	smtpAddr := p.addrs["smtp"]

	// greet opens a connection and returns its first reply line; the
	// connection stays open until the test ends.
	greet := func() string {
		t.Helper()
		c, err := net.DialTimeout("tcp", smtpAddr, 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		return line
	}
	size := func() string {
		t.Helper()
		cl, err := dialSMTP(smtpAddr)
		require.NoError(t, err)
		defer cl.Close()
		_, v := cl.Extension("SIZE")
		return v
	}
	reloads := func(count int) node.ReloadStatus {
		t.Helper()
		var st node.Status
		require.Eventually(t, func() bool {
			var err error
			st, err = p.status()
			return err == nil && st.Reload.Count >= count
		}, 30*time.Second, 20*time.Millisecond, "reload %d shows in status", count)
		return st.Reload
	}
	// size's session ends a moment after its QUIT: welcome waits for its slot.
	welcome := func() bool { return strings.HasPrefix(greet(), "220 ") }
	assert.Equal(t, "65536", size())
	assert.Eventually(t, welcome, 10*time.Second, 50*time.Millisecond, "the first session from this address")
	assert.True(t, strings.HasPrefix(greet(), "421 "), "a second one is over smtp-max-sessions-per-ip 1")

	// Two live keys (one rebuilds the pipeline) and a restart-only key
	// change.
	writeConf("smtp-max-sessions-per-ip: 3\nmax-message-bytes: 131072\npipeline:\n  av-policy: quarantine\n")
	p.signal(syscall.SIGHUP)
	st := reloads(1)
	assert.Equal(t, "ok", st.Result, "reload: %+v", st)
	assert.Equal(t, []string{"smtp-max-sessions-per-ip", "pipeline.av-policy"}, st.Applied)
	assert.Equal(t, []string{"max-message-bytes"}, st.Restart)
	assert.Equal(t, "65536", size(), "max-message-bytes keeps its running value until a restart")
	assert.Eventually(t, welcome, 10*time.Second, 50*time.Millisecond, "the raised cap takes new sessions at once")
	assert.Contains(t, p.log(), "needs a restart")
	assert.Regexp(t, `key=max-message-bytes`, p.log())
	assert.Regexp(t, `config: reloaded.*changed="?\[smtp-max-sessions-per-ip pipeline.av-policy\]`, p.log())
	// The next message takes the new pipeline: held, not defanged.
	msg := "From: x@remote.test\r\nTo: alice@" + testDomain + "\r\nSubject: after the reload\r\n\r\n" + testEICAR + "\r\n"
	// The two welcome sessions stay open and size()'s ends a moment after
	// its QUIT: a 421 until that slot frees is the cap at work, and a
	// client tries again later.
	var sendErr error
	require.Eventually(t, func() bool {
		_, sendErr = send(context.Background(), smtpAddr, []string{"alice@" + testDomain}, []byte(msg))
		return sendErr == nil || !strings.Contains(sendErr.Error(), "421")
	}, 10*time.Second, 50*time.Millisecond, "a session slot frees for the message")
	require.NoError(t, sendErr)
	code, body, err := p.get("/v1/quarantine")
	require.NoError(t, err)
	require.Equal(t, 200, code)
	assert.Contains(t, string(body), "quarantine:alice@"+testDomain, "pipeline.av-policy applies to the next message")

	// A broken file: refused, named, nothing changes.
	writeConf("smtp-max-sessions-per-ip: 0\nmax-message-bytes: 131072\npipeline:\n  av-policy: quarantine\n")
	p.signal(syscall.SIGHUP)
	st = reloads(2)
	assert.Equal(t, "error", st.Result)
	assert.Contains(t, st.Error, "smtp-max-sessions-per-ip")
	assert.Regexp(t, `config reload refused.*smtp-max-sessions-per-ip`, p.log())
	writeConf("smtp-max-sessions-per-ip: [\n")
	p.signal(syscall.SIGHUP)
	st = reloads(3)
	assert.Equal(t, "error", st.Result)
	assert.Contains(t, st.Error, "yaml")

	require.True(t, p.running(), "a refused reload does not stop the node")
	assert.Eventually(t, welcome, 10*time.Second, 50*time.Millisecond, "the running cap (3) stays: a third session")
	assert.True(t, strings.HasPrefix(greet(), "421 "), "and a fourth is over it")
	code, body, err = p.get("/metrics")
	require.NoError(t, err)
	require.Equal(t, 200, code)
	assert.Contains(t, string(body), `mailarray_config_reloads_total{result="ok"} 1`)
	assert.Contains(t, string(body), `mailarray_config_reloads_total{result="error"} 2`)
}
