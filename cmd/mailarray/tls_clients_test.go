package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/tlstest"
)

// TestTLSWithRealClients: curl speaks STARTTLS to SMTP, STLS to POP3 and
// implicit TLS to POP3S, verifying the node's certificate; openssl
// s_client completes the STARTTLS handshake.
func TestTLSWithRealClients(t *testing.T) {
	curl := needTool(t, "curl")
	dir := t.TempDir()
	cert, key, _ := tlstest.WriteSelfSigned(t, dir, "localhost")
	pop3s := freePort(t, false)
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: writeUsers(t, dir, "alice@"+testDomain+":{PLAIN}secret"),
		extra: []string{"--tls-cert", cert, "--tls-key", key, "--pop3s", "127.0.0.1:" + itoa(pop3s)}})
	smtpAddr, pop3Addr := p.addrs["smtp"], p.addrs["pop3"]

	msg := filepath.Join(dir, "msg.eml")
	require.NoError(t, os.WriteFile(msg, []byte("From: c@remote.test\r\nTo: alice@"+testDomain+"\r\nSubject: over tls\r\n\r\nsecret body\r\n"), 0o600))
	runTool(t, "", curl, "-sS", "--ssl-reqd", "--cacert", cert, "smtp://"+smtpAddr,
		"--mail-from", "c@remote.test", "--mail-rcpt", "alice@"+testDomain, "-T", msg)
	out := runTool(t, "", curl, "-sS", "--ssl-reqd", "--cacert", cert, "pop3://"+pop3Addr+"/1", "-u", "alice@"+testDomain+":secret")
	assert.Contains(t, out, "secret body", "STLS then RETR")
	assert.Contains(t, out, "with ESMTPS id", "the message came in over STARTTLS")
	out = runTool(t, "", curl, "-sS", "--cacert", cert, "pop3s://127.0.0.1:"+itoa(pop3s)+"/", "-u", "alice@"+testDomain+":secret")
	assert.True(t, strings.HasPrefix(strings.TrimSpace(out), "1 "), "POP3S list: %q", out)

	// A client that does not trust the certificate is refused by itself.
	_, _, code := runAnyTool(curl, "-sS", "--ssl-reqd", "pop3://"+pop3Addr+"/1", "-u", "alice@"+testDomain+":secret")
	assert.NotEqual(t, 0, code, "an untrusted certificate fails verification")

	if openssl := lookTool("openssl"); openssl != "" {
		out = runTool(t, "QUIT\n", openssl, "s_client", "-starttls", "smtp", "-connect", smtpAddr, "-CAfile", cert, "-verify_return_error", "-brief")
		assert.Contains(t, out, "250", "openssl completes STARTTLS and speaks SMTP")
	} else {
		t.Log("openssl not installed: s_client check skipped")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// lookTool returns the tool's path, or "" when it is not installed.
func lookTool(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	return p
}

// runAnyTool runs a tool expected to possibly fail.
func runAnyTool(name string, args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(name, args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return o.String(), e.String(), code
}
