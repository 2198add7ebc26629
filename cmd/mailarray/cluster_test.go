package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node"
	"mailarray/node/pop3"
)

// Limits of the cluster test.
const (
	// clusterMessages are delivered before the first failure.
	clusterMessages = 200
	// clusterSenders deliver concurrently, round-robin over the nodes.
	clusterSenders = 6
	// joinTimeout bounds how long three nodes take to see each other.
	joinTimeout = 15 * time.Second
	// detectTimeout bounds failure detection plus rebuild of every
	// message. Serf's local profile declares a dead node failed in ~5 s;
	// the replicator scans every 2 s (tuning.maintain-every).
	detectTimeout = 30 * time.Second
	// lastSurvivorTimeout bounds how long the last node takes to declare
	// its only peer failed: with no third member to confirm the
	// suspicion, memberlist's own health score slows its probes and it
	// takes ~20 s, not ~5 s.
	lastSurvivorTimeout = 45 * time.Second
)

var clusterUsers = []string{
	"alice@" + testDomain + ":{PLAIN}secret",
	"bob@" + testDomain + ":{PLAIN}secret",
}

// startCluster starts n gossiping nodes with R=2 W=2 (and the extra flags),
// the second and later joining the first, and waits until every node sees
// all of them alive and is ready.
func startCluster(t *testing.T, n int, extra ...string) []*proc {
	t.Helper()
	dir := t.TempDir()
	users := writeUsers(t, dir, clusterUsers...)
	nodes := make([]*proc, 0, n)
	for i := 1; i <= n; i++ {
		o := nodeOpts{name: fmt.Sprintf("n%d", i), dir: dir, users: users, gossip: true,
			extra: append([]string{"--replicas", "2", "--write-quorum", "2"}, extra...)}
		if i > 1 {
			o.join = []string{nodes[0].gossip}
		}
		nodes = append(nodes, startNode(t, o))
	}
	require.Eventually(t, func() bool {
		for _, p := range nodes {
			st, err := p.status()
			if err != nil || !p.ready() || aliveMembers(st.Members) != n || len(st.Mirror.Ring) != n {
				return false
			}
		}
		return true
	}, joinTimeout, 50*time.Millisecond, "every node sees %d alive members, all in its mirroring ring, and is ready", n)
	return nodes
}

func aliveMembers(ms []node.MemberStatus) int {
	k := 0
	for _, m := range ms {
		if m.Status == "alive" {
			k++
		}
	}
	return k
}

// deliver sends k messages to alice, round-robin over nodes with a few
// concurrent senders, and returns the messages by content.
func deliver(t *testing.T, nodes []*proc, k int) map[string]bool {
	t.Helper()
	ctx := context.Background()
	sent := make(map[string]bool, k)
	var mu sync.Mutex
	var errs []error
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range clusterSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				p := nodes[i%len(nodes)]
				msg := testMessage(fmt.Sprintf("msg-%04d", i), 700+i*23)
				_, err := send(ctx, p.addrs["smtp"], []string{"alice@" + testDomain}, msg)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("message %d via %s: %w", i, p.name, err))
				} else {
					sent[string(msg)] = true
				}
				mu.Unlock()
			}
		}()
	}
	for i := range k {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	require.Empty(t, errs, "every message is acknowledged")
	require.Len(t, sent, k)
	return sent
}

// checkMailbox reads alice's mailbox through p and checks it holds exactly
// the messages sent, once each, intact. A login refused with [SYS/TEMP]
// is retried until timeout: the mailbox's lock manager (one node, chosen
// by hashing the mailbox over the live members) may be a node that died
// and is not yet declared failed. It returns how long the mailbox could
// not be opened.
func checkMailbox(t *testing.T, p *proc, sent map[string]bool, timeout time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	var got map[string][]byte
	var err error
	var unavailable time.Duration // until the last refusal
	for {
		got, err = readMailbox(p.addrs["pop3"], "alice@"+testDomain, "secret")
		if pop3.ErrorCode(err) != "SYS/TEMP" || time.Since(t0) > timeout {
			break
		}
		unavailable = time.Since(t0)
		select {
		case <-p.done:
			t.Fatalf("%s exited while its mailbox was refused: %v", p.name, err)
		case <-time.After(100 * time.Millisecond): // retry pace
		}
	}
	require.NoError(t, err, "read the mailbox through %s", p.name)
	require.Len(t, got, len(sent), "every acknowledged message, via %s", p.name)
	seen := map[string]string{}
	for uid, b := range got {
		msg, err := stripReceived(b)
		require.NoError(t, err, "message %s via %s", uid, p.name)
		require.True(t, sent[string(msg)], "message %s via %s is one that was sent, intact", uid, p.name)
		require.Empty(t, seen[string(msg)], "message %s via %s is not shown twice (also as %s)", uid, p.name, seen[string(msg)])
		seen[string(msg)] = uid
	}
	return unavailable
}

// waitRebuilt waits until the live nodes see dead as not alive, hold R=2
// copies of every one of k messages between them, agree on the catalog
// and report nothing under-replicated.
func waitRebuilt(t *testing.T, live []*proc, dead string, k int, timeout time.Duration) {
	t.Helper()
	var last string
	ok := assert.Eventually(t, func() bool {
		digest, copies := "", 0
		var notes []string
		good := true
		for _, p := range live {
			st, err := p.status()
			if err != nil {
				last = err.Error()
				return false
			}
			for _, m := range st.Members {
				if m.Name == dead && m.Status == "alive" {
					good = false
				}
			}
			if st.UnderReplicated != 0 || st.Entries["committed"] != k || (digest != "" && st.CatalogDigest != digest) {
				good = false
			}
			digest = st.CatalogDigest
			copies += st.Copies
			notes = append(notes, fmt.Sprintf("%s: members %v, under %d, committed %d, copies %d, digest %s",
				st.Node, st.Members, st.UnderReplicated, st.Entries["committed"], st.Copies, st.CatalogDigest))
		}
		last = strings.Join(notes, "; ")
		return good && copies == 2*k
	}, timeout, 100*time.Millisecond, "rebuild completes on %d survivors", len(live))
	require.True(t, ok, "last seen: %s", last)
}

// TestClusterProcesses runs three `mailarray serve` processes on loopback,
// delivers through all of them, and kills two of them one after the other:
// every acknowledged message stays readable, intact, from the survivors.
func TestClusterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three mailarray processes and waits for two failure detections (~30 s); skipped under -short")
	}
	t0 := time.Now()
	nodes := startCluster(t, 3)
	t.Logf("three nodes joined and ready in %v", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	sent := deliver(t, nodes, clusterMessages)
	t.Logf("delivered %d messages through 3 nodes (R=2 W=2) in %v", clusterMessages, time.Since(t0).Round(time.Millisecond))
	waitRebuilt(t, nodes, "", clusterMessages, 10*time.Second)
	// R=2 over three nodes: every node holds some copies.
	for _, p := range nodes {
		st, err := p.status()
		require.NoError(t, err)
		assert.Positive(t, st.Copies, "%s holds copies", p.name)
	}

	// Kill n1 outright: reads go to the mirrors at once, before membership
	// even notices.
	nodes[0].kill()
	killed := time.Now()
	unavailable := checkMailbox(t, nodes[1], sent, detectTimeout)
	t.Logf("read all %d intact through n2 %v after n1 was killed (login refused [SYS/TEMP] for %v)",
		clusterMessages, time.Since(killed).Round(time.Millisecond), unavailable.Round(time.Millisecond))

	// Failure detection, then rebuild onto the two survivors.
	live := nodes[1:]
	require.Eventually(t, func() bool {
		for _, p := range live {
			st, err := p.status()
			if err != nil || aliveMembers(st.Members) != 2 {
				return false
			}
		}
		return true
	}, detectTimeout, 50*time.Millisecond, "the survivors declare n1 failed")
	detected := time.Now()
	t.Logf("n1 declared failed by both survivors %v after SIGKILL", detected.Sub(killed).Round(time.Millisecond))
	waitRebuilt(t, live, "n1", clusterMessages, detectTimeout)
	st, err := nodes[1].status()
	require.NoError(t, err)
	st3, err := nodes[2].status()
	require.NoError(t, err)
	t.Logf("rebuild of %d copies (%d bytes) done %v after detection, %v after SIGKILL",
		st.Rebuild.RebuiltCopies+st3.Rebuild.RebuiltCopies, st.Rebuild.RebuiltBytes+st3.Rebuild.RebuiltBytes,
		time.Since(detected).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))

	// Kill n2: n3 alone holds a copy of everything. n2 manages alice's
	// mailbox lock (the rendezvous hash of the mailbox over n2 and n3
	// picks n2), so n3 refuses logins with [SYS/TEMP] until it declares n2
	// failed; n1, killed first, managed no lock that was needed.
	nodes[1].kill()
	killed = time.Now()
	unavailable = checkMailbox(t, nodes[2], sent, lastSurvivorTimeout)
	t.Logf("read all %d intact through n3 %v after n2 was killed (login refused [SYS/TEMP] for %v)",
		clusterMessages, time.Since(killed).Round(time.Millisecond), unavailable.Round(time.Millisecond))
	st3, err = nodes[2].status()
	require.NoError(t, err)
	assert.Equal(t, clusterMessages, st3.Copies, "the last node holds every message")
}

// TestServeSIGTERM: SIGTERM lets a transaction in flight finish, tells the
// other members the node left, and exits 0 within the shutdown grace.
func TestServeSIGTERM(t *testing.T) {
	// The grace is the bound asserted, so it is generous: a member's
	// shutdown waits for its leave to spread (about 1.5 s on an idle
	// machine, serf allowing up to 5 s), and 5 s, as it was, left a loaded
	// machine too little room.
	const grace = 30 * time.Second
	for _, tc := range []struct {
		name   string
		gossip bool
	}{
		{"lone node", false},
		{"member of two", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			users := writeUsers(t, dir, clusterUsers...)
			extra := []string{"--shutdown-grace", grace.String()}
			var peer *proc
			if tc.gossip {
				// One copy, as this test was written for: the array
				// default (R=2 W=2) is TestCopiesDefault's.
				peer = startNode(t, nodeOpts{name: "peer", dir: dir, users: users, gossip: true, extra: []string{"--replicas", "1"}})
				extra = append(extra, "--replicas", "1")
			}
			o := nodeOpts{name: "n1", dir: dir, users: users, gossip: tc.gossip, extra: extra}
			if peer != nil {
				o.join = []string{peer.gossip}
			}
			p := startNode(t, o)
			if peer != nil {
				require.Eventually(t, func() bool {
					st, err := peer.status()
					return err == nil && aliveMembers(st.Members) == 2
				}, joinTimeout, 50*time.Millisecond, "the two nodes see each other")
			}

			// A transaction in flight (after MAIL) and an idle session.
			busy, err := dialSMTP(p.addrs["smtp"])
			require.NoError(t, err)
			defer busy.Close()
			require.NoError(t, busy.Mail("sender@remote.test", nil))
			require.NoError(t, busy.Rcpt("alice@"+testDomain, nil))
			idle, err := dialSMTP(p.addrs["smtp"])
			require.NoError(t, err)
			defer idle.Close()

			p.signal(syscall.SIGTERM)
			signalled := time.Now()
			require.Eventually(t, func() bool {
				return strings.Contains(p.log(), "node: shutting down")
			}, 5*time.Second, 20*time.Millisecond, "the node starts shutting down")
			wc, err := busy.Data()
			require.NoError(t, err, "the transaction in flight continues")
			_, err = wc.Write(testMessage("in-flight", 600))
			require.NoError(t, err)
			resp, err := wc.CloseWithResponse()
			require.NoError(t, err, "the transaction in flight is acknowledged")
			assert.Contains(t, resp.StatusText, "queued as")
			// RFC 5321 §3.8: a server shutting down answers 421.
			err = idle.Mail("sender@remote.test", nil)
			require.Error(t, err, "an idle session is closed")

			code, err := p.wait(grace + exitTimeout)
			require.NoError(t, err)
			elapsed := time.Since(signalled)
			t.Logf("exited %d after %v", code, elapsed.Round(time.Millisecond))
			assert.Equal(t, 0, code, "SIGTERM exits 0")
			assert.Less(t, elapsed, grace, "exits within the shutdown grace")
			assert.Contains(t, p.log(), "mailarray: stopped")
			if peer != nil {
				st, err := peer.status()
				require.NoError(t, err)
				for _, m := range st.Members {
					if m.Name == "n1" {
						assert.Equal(t, "left", m.Status, "a node stopped by SIGTERM leaves (it is not failed)")
					}
				}
			}
		})
	}
}

func dialSMTP(addr string) (*gosmtp.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(2 * exitTimeout))
	cl := gosmtp.NewClient(conn)
	if err := cl.Hello("client.test"); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// TestServeBadConfig: a node refuses to start on a bad setting, exits
// non-zero, and the error names the key at fault.
func TestServeBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := writeUsers(t, dir, clusterUsers...)
	yamlFile := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	base := []string{"serve", "--name", "n1", "--data", filepath.Join(dir, "data"), "--domain", testDomain, "--users", users,
		"--smtp", "127.0.0.1:0", "--pop3", "127.0.0.1:0", "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"replicas 17", []string{"--replicas", "17"}, "config: replicas: 17 must be 1..16"},
		{"quorum above replicas", []string{"--replicas", "2", "--write-quorum", "3"}, "config: write-quorum: 3 must be 1..replicas (2)"},
		{"bad domain", []string{"--domain", "not a domain"}, "config: domain"},
		{"bad listen address", []string{"--smtp", "nowhere"}, "config: smtp"},
		{"bad name", []string{"--name", "No_Such"}, "config: name"},
		{"bad dns ttl", []string{"--dns-ttl", "1ms"}, "config: dns-ttl"},
		{"unknown role", []string{"--roles", "smtp,fax"}, "config: roles"},
		{"bad log level", []string{"--log-level", "loud"}, "log-level"},
		{"unknown flag", []string{"--replica", "2"}, "flag provided but not defined: -replica"},
		{"yaml value", []string{"--config", yamlFile("bad-value.yaml", "replicas: 17\n")}, "config: replicas"},
		{"yaml unknown key", []string{"--config", yamlFile("bad-key.yaml", "replica: 2\n")}, "field replica not found"},
		{"yaml tuning", []string{"--config", yamlFile("bad-tuning.yaml", "tuning:\n  rebuild-per-scan: -1\n")}, "config: tuning.rebuild-per-scan"},
		{"gossip profile", []string{"--gossip", "127.0.0.1:0", "--gossip-profile", "fast"}, "profile"},
		{"zone file with a bad record", []string{"--zone-file", testDomain + "=" + yamlFile("bad.zone", "@ TXT \"v=spf1 mx -all\"\nwww A 300.1.1.1\n")}, "bad.zone: dns: bad A A: \"300.1.1.1\" at line: 2"},
		{"zone file with the array's MX", []string{"--zone-file", testDomain + "=" + yamlFile("mx.zone", "@ TXT \"v=spf1 mx -all\"\n@ MX 10 mail.example.net.\n")}, "mx.zone line 2: record is the array's: MX at the apex"},
		{"zone file of a foreign domain", []string{"--zone-file", "example.net=/dev/null"}, "config: zone-file: ddns: zone-file: \"example.net=/dev/null\": example.net is not a hosted domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, base...), tc.args...)
			if strings.HasPrefix(tc.name, "yaml") {
				// Only the YAML file sets what it sets; flags would win.
				args = append([]string{"serve"}, tc.args...)
				args = append(args, "--name", "n1", "--data", filepath.Join(dir, "data"), "--domain", testDomain, "--users", users)
			}
			ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
			defer cancel()
			cmd := commandContext(ctx, t, args...)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			require.Error(t, err, "the node must not start; output:\n%s", out.String())
			require.NoError(t, ctx.Err(), "the node exits at once")
			assert.Contains(t, out.String(), tc.want)
			assert.NotContains(t, out.String(), "node: started")
		})
	}
}

// TestServeUsersFileBadLine: a bad line in the users file is logged with
// its line number and skipped; the node starts and serves the others.
func TestServeUsersFileBadLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := writeUsers(t, dir,
		"# mailboxes",
		"alice@"+testDomain+":{PLAIN}secret",
		"this line is not a mailbox",
		"bob@"+testDomain+":{PLAIN}secret",
	)
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: users})
	require.Eventually(t, p.ready, startTimeout, 20*time.Millisecond, "the node is ready")
	log := p.log()
	var bad string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "bad line skipped") {
			bad = l
		}
	}
	require.NotEmpty(t, bad, "the bad line is logged; log:\n%s", log)
	assert.Contains(t, bad, "line=3", "the log names the line")
	assert.Contains(t, bad, "file="+users)
	assert.Contains(t, log, "mailboxes=2")
	st, err := p.status()
	require.NoError(t, err)
	assert.Equal(t, 2, st.Mailboxes)
	cl, err := popLogin(p.addrs["pop3"], "bob@"+testDomain, "secret")
	require.NoError(t, err, "the mailbox after the bad line works")
	require.NoError(t, cl.Quit())
}

// TestDrainProcesses: `mailarray drain n4`, asked through n1 with the
// admin token, while mail keeps arriving, prints progress and returns once
// n4 has left; every message (acknowledged before and during) is then on
// two of n1..n3, and nothing is lost.
func TestDrainProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four mailarray processes (~15 s); skipped under -short")
	}
	const token = "drain-s3cret"
	t.Setenv(adminTokenEnv, token)
	nodes := startCluster(t, 4, "--admin-token", token)
	sent := deliver(t, nodes, 80)
	waitRebuilt(t, nodes, "", len(sent), 20*time.Second)
	st4, err := nodes[3].status()
	require.NoError(t, err)
	require.Positive(t, st4.Copies, "n4 holds copies to drain")

	_, errOut, code := runCommand(t, "", "drain", "--addr", nodes[0].http, "n9")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "not a member", "an unknown node is a clear error")

	// Mail keeps arriving through the other three during the drain.
	stop := make(chan struct{})
	var mu sync.Mutex
	var errs []error
	during := map[string]bool{}
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			msg := testMessage(fmt.Sprintf("during-%04d", i), 800+i*7)
			_, err := send(context.Background(), nodes[i%3].addrs["smtp"], []string{"alice@" + testDomain}, msg)
			mu.Lock()
			if err != nil {
				errs = append(errs, err)
			} else {
				during[string(msg)] = true
			}
			mu.Unlock()
		}
	}()
	t0 := time.Now()
	out, errOut, code := runCommand(t, "", "drain", "--addr", nodes[0].http, "--every", "200ms", "n4")
	close(stop)
	<-loadDone
	t.Logf("drain took %v; output:\n%s", time.Since(t0).Round(time.Millisecond), out)
	require.Equal(t, 0, code, "stderr: %s", errOut)
	assert.Contains(t, out, "n4: draining:")
	assert.Contains(t, out, "n4 has left the array")
	require.Empty(t, errs, "the other nodes kept acknowledging mail")
	require.NotEmpty(t, during)

	// n4 is still running, out of the array (its own Leave returns once
	// the goodbye has spread, after the others saw it).
	require.Eventually(t, func() bool {
		st4, err = nodes[3].status()
		return err == nil && st4.Drain != nil && st4.Drain.State == node.DrainLeft
	}, detectTimeout, 50*time.Millisecond, "n4 reports its drain done")
	assert.Positive(t, st4.Drain.Moved)
	statusOut, errOut, code := runCommand(t, "", "status", "--addr", nodes[3].http)
	require.Equal(t, 0, code, "stderr: %s", errOut)
	assert.Contains(t, statusOut, "DRAINED: left the array")
	for _, m := range st4.Members {
		if m.Name == "n4" {
			assert.True(t, m.Draining, "status shows the node draining")
		}
	}
	// A node that missed the leave intent may first declare n4 failed;
	// the intent (rebroadcast, and in push-pull syncs) then makes it left.
	for _, p := range nodes[:3] {
		seen := ""
		assert.Eventually(t, func() bool {
			st, err := p.status()
			if err != nil {
				return false
			}
			for _, m := range st.Members {
				if m.Name == "n4" {
					seen = m.Status
				}
			}
			return seen == "left"
		}, detectTimeout, 50*time.Millisecond, "%s sees n4 left (not failed)", p.name)
	}
	for k := range during {
		sent[k] = true
	}
	waitRebuilt(t, nodes[:3], "n4", len(sent), detectTimeout)
	checkMailbox(t, nodes[1], sent, detectTimeout)
	_, errOut, code = runCommand(t, "", "drain", "--addr", nodes[0].http, "n4")
	assert.Equal(t, 0, code, "asking again after it left is harmless: %s", errOut)
}
