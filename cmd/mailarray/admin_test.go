package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"mailarray/node"
)

// TestUserHash: `mailarray user hash` prints a {BCRYPT} hash of the
// password given as an argument or on standard input, and a node accepts
// it in its users file.
func TestUserHash(t *testing.T) {
	t.Parallel()
	const pw = "correct horse battery staple"
	hashes := map[string]string{}
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
	}{
		{"argument", "", []string{"user", "hash", "--cost", "4", pw}},
		{"stdin", pw + "\n", []string{"user", "hash", "--cost", "4"}},
		{"stdin without newline", pw, []string{"user", "hash", "--cost", "4"}},
		{"stdin with CRLF", pw + "\r\n", []string{"user", "hash", "--cost", "4"}},
		{"default cost", "", []string{"user", "hash", pw}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runCommand(t, tc.stdin, tc.args...)
			require.Equal(t, 0, code, "stderr: %s", errOut)
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			require.Len(t, lines, 1, "one line on stdout: %q", out)
			h, ok := strings.CutPrefix(lines[0], "{BCRYPT}")
			require.True(t, ok, "the hash has the {BCRYPT} scheme prefix: %q", lines[0])
			require.NoError(t, bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)), "the hash verifies")
			assert.ErrorIs(t, bcrypt.CompareHashAndPassword([]byte(h), []byte(pw+"x")), bcrypt.ErrMismatchedHashAndPassword)
			cost, err := bcrypt.Cost([]byte(h))
			require.NoError(t, err)
			if tc.name == "default cost" {
				assert.Equal(t, 10, cost)
			} else {
				assert.Equal(t, 4, cost, "--cost is honoured")
			}
			hashes[tc.name] = lines[0]
		})
	}
	assert.NotEqual(t, hashes["argument"], hashes["stdin"], "every hash has its own salt")

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"empty stdin", "", []string{"user", "hash"}, "empty password"},
		{"empty line", "\n", []string{"user", "hash"}, "empty password"},
		{"cost too high", "", []string{"user", "hash", "--cost", "99", pw}, "cost 99"},
		{"no subcommand", "", []string{"user"}, "usage: mailarray user hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runCommand(t, tc.stdin, tc.args...)
			assert.NotEqual(t, 0, code)
			assert.Empty(t, out, "nothing on stdout")
			assert.Contains(t, errOut, tc.want)
		})
	}

	t.Run("a node accepts the hash", func(t *testing.T) {
		h := hashes["stdin"]
		require.NotEmpty(t, h)
		dir := t.TempDir()
		users := writeUsers(t, dir, "carol@"+testDomain+":"+h)
		p := startNode(t, nodeOpts{name: "n1", dir: dir, users: users})
		cl, err := popLogin(p.addrs["pop3"], "carol@"+testDomain, pw)
		require.NoError(t, err, "POP3 login with the password")
		require.NoError(t, cl.Quit())
		_, err = popLogin(p.addrs["pop3"], "carol@"+testDomain, "wrong")
		require.Error(t, err, "and not with another")
	})
}

// TestStatusCommand: `mailarray status` shows the node, its members, the
// mirroring table and replication; --json is the node's Status.
func TestStatusCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := writeUsers(t, dir, clusterUsers...)
	p := startNode(t, nodeOpts{name: "stat1", dir: dir, users: users, gossip: true, extra: []string{"--replicas", "1"}})
	require.Eventually(t, p.ready, startTimeout, 20*time.Millisecond)
	_, err := send(t.Context(), p.addrs["smtp"], []string{"alice@" + testDomain}, testMessage("status-1", 800))
	require.NoError(t, err)

	out, errOut, code := runCommand(t, "", "status", "--addr", p.http)
	require.Equal(t, 0, code, "stderr: %s", errOut)
	for _, want := range []string{
		"node stat1 ",
		"R=1 W=1",
		"MEMBER", "MIRRORS",
		"mirroring table version",
		"ring stat1",
		"catalog entries: committed 1",
		"copies held: 1",
		"under-replicated messages: 0",
		"rebuild:",
		"store verify: ",
	} {
		assert.Contains(t, out, want)
	}
	assert.Regexp(t, `(?m)^stat1\s+alive\s+127\.0\.0\.1\s+dns,pop3,smtp,store\s+127\.0\.0\.1:\d+`, out, "the member row")

	out, errOut, code = runCommand(t, "", "status", "--json", "--addr", p.http)
	require.Equal(t, 0, code, "stderr: %s", errOut)
	var st node.Status
	require.NoError(t, json.Unmarshal([]byte(out), &st), "--json parses:\n%s", out)
	assert.Equal(t, "stat1", st.Node)
	assert.Equal(t, []string{"stat1"}, st.Mirror.Ring)
	assert.Equal(t, 1, st.Entries["committed"])
	assert.Equal(t, p.addrs["smtp"], st.Addrs["smtp"])
	require.Len(t, st.Members, 1)
	assert.Equal(t, "alive", st.Members[0].Status)

	// A node that does not answer is an error naming the command.
	_, errOut, code = runCommand(t, "", "status", "--addr", "127.0.0.1:1")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "mailarray: status:")
}

// TestAdminToken: with --admin-token the operator endpoints want the
// token, the health checks do not, and the commands send it from
// $MAILARRAY_ADMIN_TOKEN.
func TestAdminToken(t *testing.T) {
	const token = "op-s3cret"
	t.Setenv(adminTokenEnv, token) // startNode reads the status with it
	dir := t.TempDir()
	users := writeUsers(t, dir, clusterUsers...)
	p := startNode(t, nodeOpts{name: "adm1", dir: dir, users: users, extra: []string{"--admin-token", token}})

	call := func(method, path, auth string) int {
		req, err := http.NewRequest(method, "http://"+p.http+path, nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, ep := range [][2]string{{"GET", "/v1/status"}, {"GET", "/metrics"}, {"GET", "/v1/quarantine"}, {"POST", "/v1/rebalance"}, {"POST", "/v1/drain/x"}, {"GET", "/v1/drain/x"}, {"GET", "/v1/trace/x"}, {"DELETE", "/v1/quarantine/x"}} {
		assert.Equal(t, http.StatusUnauthorized, call(ep[0], ep[1], ""), "%s %s without a token", ep[0], ep[1])
		assert.Equal(t, http.StatusUnauthorized, call(ep[0], ep[1], "Bearer wrong"), "%s %s with a wrong token", ep[0], ep[1])
	}
	assert.Equal(t, http.StatusOK, call("GET", "/v1/status", "Bearer "+token))
	assert.Equal(t, http.StatusOK, call("GET", "/metrics", "Bearer "+token))
	assert.Equal(t, http.StatusNotFound, call("GET", "/v1/trace/x", "Bearer "+token), "past the token: no such message")
	assert.Equal(t, http.StatusOK, call("GET", "/healthz", ""), "health checks stay open")
	assert.Equal(t, http.StatusOK, call("GET", "/", ""), "webmail is the users' page, not an operator endpoint")

	out, errOut, code := runCommand(t, "", "status", "--addr", p.http)
	require.Equal(t, 0, code, "stderr: %s", errOut)
	assert.Contains(t, out, "node adm1 ")
	_, errOut, code = runCommand(t, "", "quarantine", "list", "--addr", p.http)
	assert.Equal(t, 0, code, "stderr: %s", errOut)

	t.Setenv(adminTokenEnv, "")
	_, errOut, code = runCommand(t, "", "status", "--addr", p.http)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "401")
	assert.Contains(t, errOut, "MAILARRAY_ADMIN_TOKEN", "the refusal says how to send the token")
	assert.Contains(t, p.log(), "operator request without the admin token", "refusals are logged")
}

// TestExampleConfigLoads: deploy/mailarray.example.yaml, which operators
// copy, has only known keys and valid values, and every key reaches the
// node's configuration.
func TestExampleConfigLoads(t *testing.T) {
	var stderr strings.Builder
	cfg, _, err := loadConfig([]string{"--config", "../../deploy/mailarray.example.yaml"}, &stderr)
	require.NoError(t, err, "stderr: %s", stderr.String())
	assert.Equal(t, "change-me-too", cfg.IngestToken)
	assert.Equal(t, "change-me-three", cfg.AdminToken)
	assert.NotEmpty(t, cfg.IMAPAddr)
}
