package main

// Helpers for the tests that run `mailarray` as real processes.
//
// The test binary is the mailarray binary: TestMain runs main() instead of
// the tests when execEnv is set, so every test starts the command it tests
// by re-executing os.Executable() with the command's arguments. That builds
// the binary once (as part of `go test`), needs no go toolchain at run time
// and runs exactly the code under test, with -race or -cover when the test
// binary has them.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"mailarray/node"
	"mailarray/node/pop3"
	"mailarray/node/smtp/smtptest"
)

// execEnv, set to "1" in a child's environment, makes the test binary
// behave as `mailarray`.
const execEnv = "MAILARRAY_TEST_EXEC"

// logsEnv, set to anything, shows every node's log at the end of its test
// (they are shown anyway when the test fails).
const logsEnv = "MAILARRAY_TEST_LOGS"

// Test limits.
const (
	// startTimeout bounds how long a node may take to serve HTTP.
	startTimeout = 15 * time.Second
	// exitTimeout bounds how long a signalled process may take to exit.
	exitTimeout = 20 * time.Second
	// bindAttempts is how often a node is restarted on other ports when a
	// port picked by freePort was taken in between.
	bindAttempts = 3
	// ioTimeout bounds one client connection's protocol exchange.
	ioTimeout = 10 * time.Second
	// testDomain is the mail domain every test node hosts.
	testDomain = "example.com"
)

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// exe is the path of the binary that acts as mailarray.
func exe(t testing.TB) string {
	t.Helper()
	p, err := os.Executable()
	require.NoError(t, err)
	return p
}

// command returns `mailarray args...` as an exec.Cmd.
func command(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	return commandContext(context.Background(), t, args...)
}

// commandContext is command killed when ctx is done.
func commandContext(ctx context.Context, t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, exe(t), args...)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	return cmd
}

// runCommand runs `mailarray args...` to its end with stdin and returns
// its stdout, stderr and exit code.
func runCommand(t testing.TB, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := command(t, args...)
	var out, errb bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		require.NoError(t, err, "run mailarray %s", strings.Join(args, " "))
	}
	return out.String(), errb.String(), code
}

// proc is one running `mailarray serve`.
type proc struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	logPath string
	http    string // --http address
	gossip  string // --gossip address, "" for a lone node
	addrs   map[string]string
	done    chan struct{} // closed when the process has exited
	state   *os.ProcessState
}

// nodeOpts describes a node to start.
type nodeOpts struct {
	name   string
	dir    string // holds the data dir and the log
	users  string // users file
	gossip bool   // take part in gossip
	join   []string
	extra  []string // more flags
}

// freePort returns a loopback port that was free for TCP (and UDP, when
// udp is set) a moment ago. Another process may take it before the node
// binds it: startNode retries on other ports then.
func freePort(t testing.TB, udp bool) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		if !udp {
			l.Close()
			return port
		}
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free loopback port for TCP and UDP")
	return 0
}

// writeUsers writes a users file with lines into dir.
func writeUsers(t testing.TB, dir string, lines ...string) string {
	t.Helper()
	p := filepath.Join(dir, "users")
	require.NoError(t, os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	return p
}

// startNode starts `mailarray serve` with every listener on a loopback
// port and waits until it serves HTTP; its bound addresses are then in
// p.addrs (from its status). SMTP, POP3, DNS and peer listen on port 0;
// HTTP and gossip on ports picked by freePort, because they must be known
// before the node runs (to ask it, and to join it). The process is killed
// at the end of the test if it still runs, and its log is shown if the
// test failed.
func startNode(t testing.TB, o nodeOpts) *proc {
	t.Helper()
	var lastLog string
	for attempt := 1; attempt <= bindAttempts; attempt++ {
		p := &proc{t: t, name: o.name, done: make(chan struct{})}
		p.http = fmt.Sprintf("127.0.0.1:%d", freePort(t, false))
		args := []string{"serve",
			"--name", o.name,
			"--data", filepath.Join(o.dir, o.name+"-data"),
			"--domain", testDomain,
			"--users", o.users,
			"--smtp", "127.0.0.1:0", "--pop3", "127.0.0.1:0", "--dns", "127.0.0.1:0", "--peer", "127.0.0.1:0",
			"--http", p.http,
		}
		if o.gossip {
			p.gossip = fmt.Sprintf("127.0.0.1:%d", freePort(t, true))
			args = append(args, "--gossip", p.gossip, "--gossip-profile", "local")
			for _, j := range o.join {
				args = append(args, "--join", j)
			}
		}
		args = append(args, o.extra...)
		p.logPath = filepath.Join(o.dir, fmt.Sprintf("%s.%d.log", o.name, attempt))
		logf, err := os.Create(p.logPath)
		require.NoError(t, err)
		p.cmd = command(t, args...)
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
		require.NoError(t, p.cmd.Start())
		logf.Close()
		go func() {
			p.cmd.Wait()
			p.state = p.cmd.ProcessState
			close(p.done)
		}()
		t.Cleanup(p.cleanup)
		err = p.waitHTTP(startTimeout)
		if err == nil {
			st, err := p.status()
			require.NoError(t, err, "status of %s", o.name)
			p.addrs = st.Addrs
			return p
		}
		lastLog = p.log()
		if !strings.Contains(lastLog, "address already in use") {
			require.NoError(t, err, "node %s did not start; its log:\n%s", o.name, lastLog)
		}
		p.kill()
	}
	t.Fatalf("node %s: ports taken %d times; last log:\n%s", o.name, bindAttempts, lastLog)
	return nil
}

func (p *proc) cleanup() {
	p.kill()
	if p.t.Failed() || os.Getenv(logsEnv) != "" {
		p.t.Logf("log of %s (%s):\n%s", p.name, p.logPath, p.log())
	}
}

// waitHTTP waits until the node answers /healthz, or fails early if the
// process exited.
func (p *proc) waitHTTP(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("node %s exited during startup: %v", p.name, p.state)
		default:
		}
		if code, _, err := p.get("/healthz"); err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: no /healthz after %v", p.name, timeout)
		}
		select {
		case <-p.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

// get fetches path from the node's --http listener.
func (p *proc) get(path string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+p.http+path, nil)
	if err != nil {
		return 0, nil, err
	}
	setAdminToken(req) // $MAILARRAY_ADMIN_TOKEN, as the commands do
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes(), err
}

// status is the node's GET /v1/status.
func (p *proc) status() (node.Status, error) {
	var st node.Status
	code, b, err := p.get("/v1/status")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("status %d: %s", code, b)
	}
	return st, json.Unmarshal(b, &st)
}

// ready reports whether the node answers /readyz with 200.
func (p *proc) ready() bool {
	code, _, err := p.get("/readyz")
	return err == nil && code == http.StatusOK
}

func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(sig), "signal %v to %s", sig, p.name)
}

// kill SIGKILLs the process (if it runs) and waits for it.
func (p *proc) kill() {
	if p.running() {
		p.cmd.Process.Kill()
	}
	<-p.done
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.state.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("node %s still running after %v", p.name, timeout)
	}
}

// testMessage is a message of about size bytes whose body needs
// dot-stuffing (RFC 5321 §4.5.2) and whose lines are CRLF-terminated.
func testMessage(id string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: sender@remote.test\r\nTo: alice@%s\r\nSubject: %s\r\nMessage-ID: <%s@remote.test>\r\n\r\n", testDomain, id, id)
	b.WriteString(".a line that needs dot-stuffing\r\n")
	line := "The quick brown fox jumps over the lazy dog 0123456789.\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	return b.Bytes()
}

// send delivers msg to rcpts through the SMTP listener at addr and returns
// the text of the 250 reply (which names the queue id).
func send(ctx context.Context, addr string, rcpts []string, msg []byte) (string, error) {
	d := net.Dialer{Timeout: ioTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	conn.SetDeadline(time.Now().Add(ioTimeout))
	return smtptest.Send(conn, rcpts, msg)
}

// popLogin opens a POP3 session at addr.
func popLogin(addr, user, pass string) (*pop3.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return nil, err
	}
	cl, err := pop3.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	cl.SetTimeout(ioTimeout)
	if err := cl.Login(user, pass); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// readMailbox RETRs every message of a mailbox through the POP3 listener at
// addr, keyed by UIDL, and QUITs.
func readMailbox(addr, user, pass string) (map[string][]byte, error) {
	cl, err := popLogin(addr, user, pass)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	uids, err := cl.Uidl()
	if err != nil {
		return nil, fmt.Errorf("uidl: %w", err)
	}
	out := make(map[string][]byte, len(uids))
	for _, u := range uids {
		b, err := cl.Retr(u.Num)
		if err != nil {
			return nil, fmt.Errorf("retr %d (%s): %w", u.Num, u.ID, err)
		}
		out[u.ID] = b
	}
	return out, cl.Quit()
}

// stripReceived returns got without the node's Received header, which is
// the first header field (with its folded continuation lines), and an
// error if got does not start with one.
func stripReceived(got []byte) ([]byte, error) {
	if !bytes.HasPrefix(got, []byte("Received: ")) {
		return nil, errors.New("message does not start with a Received header")
	}
	rest := got
	for {
		i := bytes.Index(rest, []byte("\r\n"))
		if i < 0 {
			return nil, errors.New("unterminated Received header")
		}
		rest = rest[i+2:]
		if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
			return rest, nil
		}
	}
}
