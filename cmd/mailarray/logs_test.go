package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jsonRecords parses a JSON log, failing on any line that is not JSON.
func jsonRecords(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for i, line := range strings.Split(strings.TrimRight(log, "\n"), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "line %d of a --log-format json log is not JSON: %q", i+1, line)
		out = append(out, rec)
	}
	return out
}

// TestServeJSONLog (issue 18, item 10): with --log-format json the first
// line says which binary runs, and "remote" is an "ip:port" string on
// every line that has it, POP3's included (it logged an object).
func TestServeJSONLog(t *testing.T) {
	dir := t.TempDir()
	users := writeUsers(t, dir, clusterUsers...)
	p := startNode(t, nodeOpts{name: "jlog", dir: dir, users: users, extra: []string{"--log-format", "json"}})
	require.Eventually(t, p.ready, startTimeout, 20*time.Millisecond)

	_, err := popLogin(p.addrs["pop3"], "alice@"+testDomain, "wrong")
	require.Error(t, err, "a failed POP3 login (logged with the session's remote)")
	_, err = send(t.Context(), p.addrs["smtp"], []string{"nobody@" + testDomain}, testMessage("jlog", 200))
	require.Error(t, err, "a refused recipient (logged with the session's remote)")

	var recs []map[string]any
	require.Eventually(t, func() bool {
		recs = jsonRecords(t, p.log())
		pop, smtp := false, false
		for _, r := range recs {
			if _, ok := r["remote"]; ok {
				msg, _ := r["msg"].(string)
				pop = pop || strings.HasPrefix(msg, "pop3:")
				smtp = smtp || strings.HasPrefix(msg, "smtp:")
			}
		}
		return pop && smtp
	}, ioTimeout, 20*time.Millisecond, "POP3 and SMTP lines with a remote in the log:\n%s", p.log())

	first := recs[0]
	assert.Equal(t, "mailarray: starting", first["msg"], "the first line names the binary: %v", first)
	for _, k := range []string{"version", "commit", "go_version"} {
		assert.NotEmpty(t, first[k], "first line has %s: %v", k, first)
	}
	hostPort := regexp.MustCompile(`^127\.0\.0\.1:\d+$`)
	for _, r := range recs {
		v, ok := r["remote"]
		if !ok {
			continue
		}
		s, isString := v.(string)
		assert.True(t, isString && hostPort.MatchString(s), "remote is an ip:port string, got %#v in %v", v, r)
	}
}

// TestServeFatalErrorJSON (issue 18, item 10): the error a node exits
// with honours --log-format json, whether it came before the logger (a
// bad flag) or after (a bad value); the text format keeps the plain line.
func TestServeFatalErrorJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad flag", []string{"serve", "--log-format", "json", "--no-such-flag"}, "flag provided but not defined"},
		{"bad value", []string{"serve", "--log-format=json", "--data", t.TempDir(), "--dns-strategy", "nosuch"}, "nosuch"},
		// The order of deploy/systemd/mailarray.service: a flag with a
		// value before --log-format.
		{"after a value", []string{"serve", "--data", t.TempDir(), "--log-format", "json", "--dns-strategy", "nosuch"}, "nosuch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runCommand(t, "", tc.args...)
			assert.Equal(t, 1, code)
			recs := jsonRecords(t, errOut)
			require.NotEmpty(t, recs, "stderr: %s", errOut)
			last := recs[len(recs)-1]
			assert.Equal(t, "ERROR", last["level"], "%v", last)
			assert.Contains(t, last["err"], tc.want, "%v", last)
		})
	}
	_, errOut, code := runCommand(t, "", "serve", "--dns-strategy", "nosuch", "--data", t.TempDir())
	assert.Equal(t, 1, code)
	assert.True(t, strings.HasPrefix(errOut, "mailarray: "), "text format: the plain line: %s", errOut)
	assert.Contains(t, errOut, `unknown strategy "nosuch"`)
}
