package chaos

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"mailarray/node/pop3"
)

// repoRoot is the module root (this file's parent directory).
func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// requireDocker skips the test with a message when Docker Engine or
// docker-compose is absent; CI machines have both.
func requireDocker(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("container tests skipped with -short")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("Docker is not installed: container tests skipped")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("Docker Engine is not reachable: container tests skipped (%s)", strings.TrimSpace(string(out)))
	}
	compose, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose is not installed: container tests skipped")
	}
	// docker-compose.yml takes the peer key from the environment (make
	// compose-up writes a random one to .env): a test cluster gets its own.
	if os.Getenv("MAILARRAY_PEER_KEY") == "" {
		var b [24]byte
		_, _ = cryptorand.Read(b[:])
		t.Setenv("MAILARRAY_PEER_KEY", hex.EncodeToString(b[:]))
	}
	return compose
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

// Errors of sendVia that say what became of the message.
var (
	// errQuitAfterAck: DATA got its 250 (the message is acknowledged) but
	// QUIT failed. The sender must not send it again.
	errQuitAfterAck = errors.New("chaos: QUIT failed after the 250")
	// errNoReply: the message's data was sent but no reply came (timeout,
	// reset): the server may or may not have it. A sender retries, so the
	// message may legitimately arrive twice (RFC 5321 section 6.1 accepts
	// duplicates over loss).
	errNoReply = errors.New("chaos: no reply to the message's data")
)

func sendVia(addr, rcpt, subject string) error {
	// Bounded like an MTA's: a frozen node accepts the TCP connection (the
	// kernel does) but never greets.
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	c := gosmtp.NewClient(conn)
	// go-smtp sets its own deadline per command (5 min by default).
	c.CommandTimeout, c.SubmissionTimeout = 10*time.Second, 15*time.Second
	defer c.Close()
	if err := c.Hello("chaos.test"); err != nil {
		return err
	}
	if err := c.Mail("sender@remote.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: sender@remote.test\r\nTo: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n", rcpt, subject, subject)
	if err := w.Close(); err != nil {
		var se *gosmtp.SMTPError
		if errors.As(err, &se) {
			return err // refused: nothing stored
		}
		return fmt.Errorf("%w: %w", errNoReply, err)
	}
	if err := c.Quit(); err != nil {
		return fmt.Errorf("%w: %w", errQuitAfterAck, err)
	}
	return nil
}

// subjects lists the Subject lines of a mailbox read by POP3 through addr.
func subjects(addr, user, pass string) ([]string, error) {
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	cl, err := pop3.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer cl.Close()
	if err := cl.Login(user, pass); err != nil {
		return nil, err
	}
	n, _, err := cl.Stat()
	if err != nil {
		return nil, err
	}
	var out []string
	for i := 1; i <= n; i++ {
		b, err := cl.Retr(i)
		if err != nil {
			return nil, err
		}
		for _, line := range bytes.Split(b, []byte("\r\n")) {
			if s, ok := bytes.CutPrefix(line, []byte("Subject: ")); ok {
				out = append(out, string(s))
			}
		}
	}
	return out, cl.Quit()
}

// TestComposeCluster brings up the Compose file's three-node cluster, sends
// through one node, reads through another, kills a third and reads again.
func TestComposeCluster(t *testing.T) {
	compose := requireDocker(t)
	root := repoRoot(t)
	run(t, root, "go", "build", "-trimpath", "-o", "bin/mailarray", "./cmd/mailarray")
	run(t, root, "docker", "build", "-q", "-t", "mailarray:dev", ".")
	project := fmt.Sprintf("mailarraytest%d", os.Getpid())
	up := func(args ...string) string { return run(t, root, compose, append([]string{"-p", project}, args...)...) }
	t.Cleanup(func() {
		out, _ := exec.Command(compose, "-p", project, "logs", "--no-color", "--tail=20").CombinedOutput()
		if t.Failed() {
			t.Logf("container logs:\n%s", out)
		}
		c := exec.Command(compose, "-p", project, "down", "-v", "-t", "2")
		c.Dir = root
		c.Run()
	})
	up("up", "-d", "--no-build")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Ready: all three members alive, seen from n1.
	require.Eventually(t, func() bool {
		err := sendVia("127.0.0.1:12526", "alice@example.com", "compose one")
		return err == nil
	}, 60*time.Second, 250*time.Millisecond, "n2 accepts mail once the array has formed")
	require.Eventually(t, func() bool {
		s, err := subjects("127.0.0.1:11112", "alice@example.com", "secret")
		return err == nil && len(s) == 1 && s[0] == "compose one"
	}, 20*time.Second, 250*time.Millisecond, "n3 serves the message n2 took")

	run(t, root, "docker", "kill", project+"_n1_1")
	require.NoError(t, sendVia("127.0.0.1:12527", "alice@example.com", "compose two"), "n3 takes mail with n1 dead")
	require.Eventually(t, func() bool {
		s, err := subjects("127.0.0.1:11111", "alice@example.com", "secret")
		return err == nil && len(s) == 2
	}, 30*time.Second, 250*time.Millisecond, "n2 serves both messages with n1 dead")
	_ = ctx
}
