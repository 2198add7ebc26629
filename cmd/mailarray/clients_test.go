package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clientTimeout bounds one run of a real client.
const clientTimeout = 20 * time.Second

// needTool skips t when tool is not installed.
func needTool(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		pkg := tool
		if tool == "dig" {
			pkg = "dnsutils"
		}
		t.Skipf("%s is not installed (make deps, or apt-get install %s): skipping the test that drives it", tool, pkg)
	}
	return p
}

// runTool runs a real client and returns its combined output; a non-zero
// exit fails the test.
func runTool(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

// TestRealClients drives one node with the clients people use: swaks and
// curl to send, curl to read by POP3, dig to ask the DNS. Each subtest is
// skipped with a message when its tool is missing; the reading subtest
// expects what the sending subtests that ran delivered.
func TestRealClients(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := writeUsers(t, dir, clusterUsers...)
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: users})
	require.Eventually(t, p.ready, startTimeout, 20*time.Millisecond)
	smtpHost, smtpPort, err := net.SplitHostPort(p.addrs["smtp"])
	require.NoError(t, err)
	_, dnsPort, err := net.SplitHostPort(p.addrs["dns"])
	require.NoError(t, err)
	alice := "alice@" + testDomain

	// sent is what the subtests delivered, by queue id, for the reading
	// subtest to find.
	sent := map[string]string{}

	t.Run("swaks", func(t *testing.T) {
		swaks := needTool(t, "swaks")
		out := runTool(t, "", swaks, "--server", smtpHost, "--port", smtpPort,
			"--from", "bob@"+testDomain, "--to", alice,
			"--header", "Subject: via swaks", "--body", "Hello from swaks.")
		// swaks prints the server's lines prefixed with "<-".
		m := regexp.MustCompile(`(?m)^<-  250 2\.0\.0 Ok: queued as ([0-9a-f]+)\s*$`).FindStringSubmatch(out)
		require.NotNil(t, m, "a 250 with the queue id after DATA; swaks said:\n%s", out)
		sent[m[1]] = "Hello from swaks."
		assert.Contains(t, out, "<-  221", "QUIT is answered")
	})

	t.Run("curl smtp", func(t *testing.T) {
		curl := needTool(t, "curl")
		msgPath := filepath.Join(dir, "msg.eml")
		body := "Hello from curl.\r\n.A line starting with a dot.\r\n"
		require.NoError(t, os.WriteFile(msgPath, []byte("From: bob@"+testDomain+"\r\nTo: "+alice+"\r\nSubject: via curl\r\n\r\n"+body), 0o600))
		out := runTool(t, "", curl, "-sS", "-v", "--max-time", "10",
			"smtp://"+p.addrs["smtp"], "--mail-from", "bob@"+testDomain, "--mail-rcpt", alice, "-T", msgPath)
		m := regexp.MustCompile(`(?m)^< 250 2\.0\.0 Ok: queued as ([0-9a-f]+)\s*$`).FindStringSubmatch(out)
		require.NotNil(t, m, "a 250 with the queue id after DATA; curl said:\n%s", out)
		sent[m[1]] = body
	})

	t.Run("curl smtp unknown mailbox", func(t *testing.T) {
		curl := needTool(t, "curl")
		ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, curl, "-sS", "-v", "--max-time", "10",
			"smtp://"+p.addrs["smtp"], "--mail-from", "bob@"+testDomain, "--mail-rcpt", "nobody@"+testDomain, "-T", "-")
		cmd.Stdin = strings.NewReader("Subject: x\r\n\r\nx\r\n")
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "curl fails on a refused recipient")
		// RFC 3463 §3.2: X.1.1 bad destination mailbox address.
		assert.Contains(t, string(out), "< 550 5.1.1")
	})

	t.Run("curl pop3", func(t *testing.T) {
		curl := needTool(t, "curl")
		if len(sent) == 0 {
			t.Skip("no message was sent (swaks and curl subtests skipped)")
		}
		base := "pop3://" + p.addrs["pop3"] + "/"
		auth := alice + ":secret"
		// curl pop3://host/ lists: "n size" per message (RFC 1939 §5 LIST).
		list := runTool(t, "", curl, "-sS", "--max-time", "10", "-u", auth, base)
		lines := strings.Fields(strings.TrimSpace(strings.ReplaceAll(list, "\r", "")))
		require.Len(t, lines, 2*len(sent), "LIST shows every message sent:\n%s", list)
		var nums []int
		for i := 0; i < len(lines); i += 2 {
			n, err := strconv.Atoi(lines[i])
			require.NoError(t, err)
			size, err := strconv.Atoi(lines[i+1])
			require.NoError(t, err)
			assert.Positive(t, size)
			nums = append(nums, n)
		}
		sort.Ints(nums)
		got := map[string]string{}
		for _, n := range nums {
			msg := runTool(t, "", curl, "-sS", "--max-time", "10", "-u", auth, base+strconv.Itoa(n))
			require.True(t, strings.HasPrefix(msg, "Received: from "), "RETR %d starts with our Received header:\n%s", n, msg)
			m := regexp.MustCompile(`with ESMTP id ([0-9a-f]+)`).FindStringSubmatch(msg)
			require.NotNil(t, m, "the Received header names the queue id:\n%s", msg)
			got[m[1]] = msg
		}
		for id, body := range sent {
			require.Contains(t, got, id, "the message queued as %s is in the mailbox", id)
			// curl writes the message as the server sent it, dot-unstuffed.
			assert.Contains(t, strings.ReplaceAll(got[id], "\r\n", "\n"), strings.ReplaceAll(body, "\r\n", "\n"), "message %s is intact", id)
		}
		// A wrong password is refused (RFC 1939 §7 PASS: -ERR).
		ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-sS", "--max-time", "10", "-u", alice+":wrong", base).CombinedOutput()
		assert.Error(t, err, "a wrong password is refused: %s", out)
	})

	t.Run("dig", func(t *testing.T) {
		dig := needTool(t, "dig")
		q := func(args ...string) string {
			return runTool(t, "", dig, append([]string{"@127.0.0.1", "-p", dnsPort, "+time=2", "+tries=2"}, args...)...)
		}
		for _, transport := range []string{"+notcp", "+tcp"} {
			// MX of a hosted domain names the node's listener host.
			mx := q(transport, "+short", "MX", testDomain)
			assert.Equal(t, "10 n1."+testDomain+".", strings.TrimSpace(mx), "MX over %s", transport)
			// The access name and the node's own name resolve to the node.
			assert.Equal(t, "127.0.0.1", strings.TrimSpace(q(transport, "+short", "A", "pop."+testDomain)), "A pop. over %s", transport)
			assert.Equal(t, "127.0.0.1", strings.TrimSpace(q(transport, "+short", "A", "n1."+testDomain)), "A n1. over %s", transport)
		}
		// Answers are authoritative (RFC 1035 §4.1.1 AA).
		full := q("MX", testDomain)
		assert.Regexp(t, `flags: qr aa`, full)
		assert.Contains(t, full, "status: NOERROR")
		// A zone the node does not host is refused (RFC 1035 §4.1.1 RCODE 5).
		other := q("MX", "example.org")
		assert.Contains(t, other, "status: REFUSED", "another zone:\n%s", other)
	})
}
