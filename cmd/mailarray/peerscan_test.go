package main

// The peer API scan of issue 18: every route of node/peer, asked without
// credentials of `make cluster` (scripts/cluster.sh, run as it is) and of
// a node with the example configuration's peer settings, is refused.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node"
	"mailarray/node/peer"
)

// scanPeer asks every peer route on addr with client (nil: plain HTTP)
// and fails the test for each answer that is not a refusal: 401, 403 or
// a failed TLS handshake.
func scanPeer(t *testing.T, addr string, client *http.Client, scheme string) {
	t.Helper()
	routes := peer.Routes()
	require.NotEmpty(t, routes)
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		path = strings.NewReplacer("{id}", "m1", "{b}", "0", "{mailbox}", "alice@"+testDomain).Replace(path)
		// The parameters a real peer would send, so that only the
		// missing credentials can be the reason to refuse.
		q := "?owner=scan/1&ttl_ms=86400000&since=0"
		req, err := http.NewRequest(method, scheme+"://"+addr+path+q, strings.NewReader(""))
		require.NoError(t, err)
		if path == "/v1/stream" {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "mailarray-peer")
		}
		resp, err := client.Do(req)
		if err != nil {
			// A TLS handshake refused (no client certificate) or the
			// connection cut: a refusal.
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		// A TLS listener asked in clear answers a bare HTTP/1.0 400 "Client
		// sent an HTTP request to an HTTPS server" (no Date header, and
		// no body for HEAD) before any handler runs: a refusal too.
		tlsRefusal := resp.StatusCode == http.StatusBadRequest && resp.ProtoMinor == 0 && resp.Header.Get("Date") == "" &&
			(method == http.MethodHead || strings.Contains(string(body), "HTTPS server"))
		if !tlsRefusal {
			assert.Contains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, resp.StatusCode,
				"%s on %s answered %d without credentials: %q", r, addr, resp.StatusCode, body)
		}
	}
}

// freeBase returns a port p with p .. p+n-1 free on loopback for TCP (and
// UDP with udp) a moment ago, and none of them in taken. The runs are
// drawn below the kernel's ephemeral range (ip_local_port_range), which it
// never hands to a connect or a listen on port 0: a run taken from that
// range was free when checked and then, before cluster.sh's node bound
// it, the source port of another test's connection (make test, one run in
// five on a loaded machine: "imap listener ... address already in use").
func freeBase(t *testing.T, n int, udp bool, taken map[int]bool) int {
	t.Helper()
	lo := ephemeralLow()
	for range 200 {
		p := 10000 + rand.IntN(lo-10000-n)
		ok := true
		for i := range n {
			if taken[p+i] || !portFree(p+i, udp) {
				ok = false
				break
			}
		}
		if ok {
			for i := range n {
				taken[p+i] = true
			}
			return p
		}
	}
	t.Fatal("no run of free loopback ports below the ephemeral range")
	return 0
}

// ephemeralLow is the lowest port of the kernel's ephemeral range (Linux's
// default 32768 where it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo < 11000 {
		return 32768
	}
	return lo
}

func portFree(p int, udp bool) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	defer l.Close()
	if udp {
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		pc.Close()
	}
	return true
}

// TestPeerScanMakeCluster runs scripts/cluster.sh (make cluster) on free
// ports and scans each node's peer API without credentials.
func TestPeerScanMakeCluster(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("cluster.sh needs curl")
	}
	script, err := filepath.Abs("../../scripts/cluster.sh")
	require.NoError(t, err)
	dir := t.TempDir()
	taken := map[int]bool{}
	envs := []string{"MAILARRAY=" + exe(t), "CLUSTER_DIR=" + dir, "CLUSTER_READY_SECS=60", execEnv + "=1"}
	ports := map[string]int{}
	for _, s := range []string{"SMTP", "POP3", "IMAP", "DNS", "HTTP", "PEER", "GOSSIP"} {
		ports[s] = freeBase(t, 3, s == "DNS" || s == "GOSSIP", taken)
		envs = append(envs, fmt.Sprintf("CLUSTER_%s_PORT=%d", s, ports[s]))
	}
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(), envs...)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var errb strings.Builder
	cmd.Stderr = &errb
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	t.Cleanup(func() {
		// One SIGTERM: the script stops its nodes and waits for them.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(exitTimeout):
			cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan bool, 1)
	var lines strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			lines.WriteString(sc.Text() + "\n")
			if !sent && strings.Contains(sc.Text(), "nodes ready") {
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
		cmd.Wait()
		close(done)
	}()
	select {
	case ok := <-ready:
		require.True(t, ok, "cluster.sh ended before its nodes were ready; stderr:\n%s", errb.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("cluster.sh: no nodes ready after 90s; stderr:\n%s", errb.String())
	}
	for i := range 3 {
		scanPeer(t, fmt.Sprintf("127.0.0.1:%d", ports["PEER"]+i), &http.Client{Timeout: ioTimeout}, "http")
	}
	conf, err := os.ReadFile(filepath.Join(dir, "peer.yaml"))
	if assert.NoError(t, err, "cluster.sh writes its peer key") {
		assert.Contains(t, string(conf), "peer-key: ", "cluster.sh generates a peer key")
	}
}

// TestPeerScanExampleConfig starts a node with the example
// configuration's peer settings (peer-key and mutual TLS, certificates
// made by `mailarray tls`) and scans its peer API in clear, over TLS
// without a client certificate, and with a certificate of another CA.
func TestPeerScanExampleConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tlsDir, otherDir := filepath.Join(dir, "tls"), filepath.Join(dir, "other")
	for _, args := range [][]string{
		{"tls", "ca", "--out", tlsDir},
		{"tls", "cert", "--ca", tlsDir, "--name", "n1", "--ip", "127.0.0.1", "--out", tlsDir},
		{"tls", "ca", "--out", otherDir},
		{"tls", "cert", "--ca", otherDir, "--name", "intruder", "--ip", "127.0.0.1", "--out", otherDir},
	} {
		_, errOut, code := runCommand(t, "", args...)
		require.Zero(t, code, "mailarray %s: %s", strings.Join(args, " "), errOut)
	}
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: writeUsers(t, dir, clusterUsers...), extra: []string{
		"--peer-key", "an-example-key-" + fmt.Sprint(time.Now().UnixNano()),
		"--peer-ca", filepath.Join(tlsDir, "ca.pem"),
		"--peer-cert", filepath.Join(tlsDir, "n1.pem"),
		"--peer-cert-key", filepath.Join(tlsDir, "n1-key.pem"),
	}})
	addr := p.addrs["peer"]
	require.NotEmpty(t, addr)
	intruder, err := tls.LoadX509KeyPair(filepath.Join(otherDir, "intruder.pem"), filepath.Join(otherDir, "intruder-key.pem"))
	require.NoError(t, err)
	clients := map[string]*http.Client{
		"clear":      {Timeout: ioTimeout},
		"no cert":    {Timeout: ioTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
		"foreign CA": {Timeout: ioTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{intruder}}}},
	}
	for name, c := range clients {
		scheme := "https"
		if name == "clear" {
			scheme = "http"
		}
		t.Run(name, func(t *testing.T) { scanPeer(t, addr, c, scheme) })
	}
}

// TestServeRefusesOpenPeerAPI: serve refuses a peer API beyond loopback
// without credentials, names the opt-out, and with the opt-out starts,
// warns in its log and shows it in status; on loopback it starts with a
// warning.
func TestServeRefusesOpenPeerAPI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := writeUsers(t, dir, clusterUsers...)
	for _, peerAddr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
		cmd := commandContext(ctx, t, "serve", "--name", "n1", "--data", filepath.Join(dir, "refused"), "--domain", testDomain,
			"--users", users, "--smtp", "127.0.0.1:0", "--pop3", "", "--imap", "", "--dns", "", "--http", "", "--peer", peerAddr)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		require.Error(t, err, "--peer %s without credentials must not start; output:\n%s", peerAddr, out.String())
		assert.Contains(t, out.String(), "insecure-peer-api", "the error names the opt-out")
		assert.NotContains(t, out.String(), "node: started")
	}

	open := startNode(t, nodeOpts{name: "n2", dir: dir, users: users, extra: []string{"--peer", "0.0.0.0:0", "--insecure-peer-api"}})
	st, err := open.status()
	require.NoError(t, err)
	assert.Equal(t, node.PeerAPIOpenInsecure, st.PeerAPI)
	assert.Contains(t, open.log(), "level=WARN msg=\"peer: THE PEER API IS UNAUTHENTICATED")
	stdout, _, code := runCommand(t, "", "status", "--addr", open.http)
	require.Zero(t, code)
	assert.Contains(t, stdout, "WARNING: the peer API needs no credentials")

	lo := startNode(t, nodeOpts{name: "n3", dir: dir, users: users})
	st, err = lo.status()
	require.NoError(t, err)
	assert.Equal(t, node.PeerAPIOpenLoopback, st.PeerAPI)
	assert.Contains(t, lo.log(), "level=WARN msg=\"peer: the peer API has neither peer-key nor peer-ca")

	keyed := startNode(t, nodeOpts{name: "n4", dir: dir, users: users, extra: []string{"--peer", "0.0.0.0:0", "--peer-key", "k-" + fmt.Sprint(time.Now().UnixNano())}})
	st, err = keyed.status()
	require.NoError(t, err)
	assert.Equal(t, node.PeerAPIKey, st.PeerAPI)
	assert.NotContains(t, keyed.log(), "peer API has neither")
}

// TestPeerCertRotationWithoutRestart: a running node given a new peer
// certificate from the same CA (files replaced with `mv`, as docs/deploy.md
// says) presents it on new connections, without a restart.
func TestPeerCertRotationWithoutRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tlsDir, nextDir := filepath.Join(dir, "tls"), filepath.Join(dir, "next")
	for _, args := range [][]string{
		{"tls", "ca", "--out", tlsDir},
		{"tls", "cert", "--ca", tlsDir, "--name", "n1", "--ip", "127.0.0.1", "--out", tlsDir},
		{"tls", "cert", "--ca", tlsDir, "--name", "n1", "--ip", "127.0.0.1", "--out", nextDir},
		{"tls", "cert", "--ca", tlsDir, "--name", "probe", "--out", tlsDir},
	} {
		_, errOut, code := runCommand(t, "", args...)
		require.Zero(t, code, "mailarray %s: %s", strings.Join(args, " "), errOut)
	}
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: writeUsers(t, dir, clusterUsers...), extra: []string{
		"--peer-ca", filepath.Join(tlsDir, "ca.pem"),
		"--peer-cert", filepath.Join(tlsDir, "n1.pem"),
		"--peer-cert-key", filepath.Join(tlsDir, "n1-key.pem"),
	}})
	probe, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "probe.pem"), filepath.Join(tlsDir, "probe-key.pem"))
	require.NoError(t, err)
	served := func() string {
		conn, err := tls.Dial("tcp", p.addrs["peer"], &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{probe}})
		if err != nil {
			return "dial: " + err.Error()
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	serialOf := func(file string) string {
		c, err := tls.LoadX509KeyPair(file, strings.TrimSuffix(file, ".pem")+"-key.pem")
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		require.NoError(t, err)
		return leaf.SerialNumber.String()
	}
	require.Equal(t, serialOf(filepath.Join(tlsDir, "n1.pem")), served())
	want := serialOf(filepath.Join(nextDir, "n1.pem"))
	for _, f := range []string{"n1-key.pem", "n1.pem"} {
		require.NoError(t, os.Rename(filepath.Join(nextDir, f), filepath.Join(tlsDir, f)))
	}
	require.Eventually(t, func() bool { return served() == want }, 30*time.Second, 100*time.Millisecond,
		"new connections get the rotated certificate")
	assert.True(t, p.running(), "no restart")
	assert.Contains(t, p.log(), "peer certificate reloaded")
}
