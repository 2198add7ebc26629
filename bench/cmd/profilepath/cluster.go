package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"time"
)

// The cluster is started the way ../shared/bench/mailbar.py starts it:
// three `mailarray serve` processes on loopback, ports chosen free, R=2
// W=2, the first node joined by the others, one users file; plus --imap
// and the loopback profiler (--pprof) on each.

const (
	domain   = "example.test"
	user     = "alice@" + domain
	password = "pw-alice"
)

type procNode struct {
	name  string
	data  string
	ports map[string]int // smtp pop3 imap dns peer http gossip pprof
	cmd   *exec.Cmd
	log   *os.File
}

func (n *procNode) addr(service string) string {
	return fmt.Sprintf("127.0.0.1:%d", n.ports[service])
}

type cluster struct {
	nodes []*procNode
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startCluster(ctx context.Context, bin, dir string, count int) (*cluster, error) {
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte(user+":{PLAIN}"+password+"\n"), 0o600); err != nil {
		return nil, err
	}
	c := &cluster{}
	rw := []string{"--replicas", "2", "--write-quorum", "2"}
	if count == 1 {
		rw = []string{"--replicas", "1", "--write-quorum", "1"}
	}
	for i := 1; i <= count; i++ {
		n := &procNode{name: fmt.Sprintf("n%d", i), ports: map[string]int{}}
		n.data = filepath.Join(dir, n.name)
		if err := os.MkdirAll(n.data, 0o750); err != nil {
			return c, err
		}
		args := []string{"serve", "--name", n.name, "--data", n.data, "--domain", domain, "--users", users}
		for _, s := range []string{"smtp", "pop3", "imap", "dns", "peer", "http", "gossip", "pprof"} {
			p, err := freePort()
			if err != nil {
				return c, err
			}
			n.ports[s] = p
			args = append(args, "--"+s, n.addr(s))
		}
		if i > 1 {
			args = append(args, "--join", c.nodes[0].addr("gossip"))
		}
		args = append(args, rw...)
		lf, err := os.Create(filepath.Join(dir, n.name+".log"))
		if err != nil {
			return c, err
		}
		n.log = lf
		n.cmd = exec.Command(bin, args...)
		n.cmd.Stdout, n.cmd.Stderr = lf, lf
		// Its own process group: a Ctrl-C of the tool reaches the nodes
		// through Close, not all at once.
		n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := n.cmd.Start(); err != nil {
			return c, fmt.Errorf("start %s: %w", n.name, err)
		}
		c.nodes = append(c.nodes, n)
	}
	return c, c.waitReady(ctx, count)
}

var aliveRE = regexp.MustCompile(`"status":\s*"alive"`)

// waitReady waits until every node answers /readyz and sees every member
// alive, or ctx ends.
func (c *cluster) waitReady(ctx context.Context, count int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		for {
			if n.cmd.ProcessState != nil {
				return fmt.Errorf("%s exited; see %s", n.name, n.log.Name())
			}
			ready := get(ctx, "http://"+n.addr("http")+"/readyz") != nil
			if st := get(ctx, "http://"+n.addr("http")+"/v1/status"); ready && len(aliveRE.FindAll(st, -1)) >= count {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not ready: %w; see %s", n.name, ctx.Err(), n.log.Name())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// get returns the body of a 200 answer, or nil.
func get(ctx context.Context, url string) []byte {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	return b
}

// Close stops every node with SIGTERM (a graceful shutdown), then SIGKILL
// for a node still up after ten seconds.
func (c *cluster) Close() {
	for _, n := range c.nodes {
		if n.cmd.Process != nil {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, n := range c.nodes {
		done := make(chan struct{})
		go func() { _ = n.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = n.cmd.Process.Kill()
			<-done
		}
		n.log.Close()
	}
}
