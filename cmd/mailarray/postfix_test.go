package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Limits of the Postfix test.
const (
	// postfixDeliverTimeout bounds Postfix's relaying of every message and
	// the array making each readable on the node asked.
	postfixDeliverTimeout = 60 * time.Second
	// postfixCommandTimeout bounds one postfix, postconf or sendmail run.
	postfixCommandTimeout = 30 * time.Second
)

// idnDomain is the test's internationalised domain, given to the nodes in
// A-label form while the users file and the senders use U-labels.
const (
	idnDomainU = "bücher.example"
	idnDomainA = "xn--bcher-kva.example"
)

// postfixMessage is one message handed to Postfix's sendmail.
type postfixMessage struct {
	name     string
	from, to string // envelope
	data     string // CRLF line ends, as the array stores it
}

// postfixMessages are issue 19's "Done when" trio: UTF-8 sender and
// header (Postfix marks it SMTPUTF8), an IDN recipient with a UTF-8 local
// part, and a 5,000-character line.
func postfixMessages() []postfixMessage {
	crlf := func(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n" }
	return []postfixMessage{{
		name: "utf8", from: "josé@sender.test", to: "alice@" + testDomain,
		data: crlf(
			"From: José Pérez <josé@sender.test>",
			"To: alice@"+testDomain,
			"Subject: Grüße aus Köln, 日本語の件名",
			"Date: Mon, 07 Dec 2026 10:00:00 +0000",
			"Message-ID: <utf8.1@sender.test>",
			"MIME-Version: 1.0",
			"Content-Type: text/plain; charset=UTF-8",
			"Content-Transfer-Encoding: 8bit",
			"",
			"Ein Brief mit Umlauten: äöüß, und ein Satz auf Japanisch: こんにちは。",
			".A line that starts with a dot.",
		),
	}, {
		name: "idn", from: "sender@sender.test", to: "jörg@" + idnDomainU,
		data: crlf(
			"From: sender@sender.test",
			"To: Jörg <jörg@"+idnDomainU+">",
			"Subject: To an IDN domain",
			"Date: Mon, 07 Dec 2026 10:00:01 +0000",
			"Message-ID: <idn.1@sender.test>",
			"MIME-Version: 1.0",
			"Content-Type: text/plain; charset=UTF-8",
			"Content-Transfer-Encoding: 8bit",
			"",
			"Hallo Jörg.",
		),
	}, {
		name: "longline", from: "sender@sender.test", to: "alice@" + testDomain,
		data: crlf(
			"From: sender@sender.test",
			"To: alice@"+testDomain,
			"Subject: A long line",
			"Date: Mon, 07 Dec 2026 10:00:02 +0000",
			"Message-ID: <longline.1@sender.test>",
			"",
			"Before the long line.",
			strings.Repeat("0123456789", 500),
			"After it.",
		),
	}}
}

// TestPostfixDelivers (issue 19, "Done when"): a private Postfix on
// loopback relays UTF-8 mail, mail for an IDN recipient and a message
// with a 5,000-character line into a three-node array; each is read back
// by POP3 and by IMAP (curl) from other nodes than the one that took it,
// identical to what was submitted but for the header fields added in
// front. On the base commit Postfix bounced the first two (5.6.7
// "SMTPUTF8 is required, but was not offered") and the third (554 after a
// line over go-smtp's 2,000-byte limit).
//
// It installs nothing: it skips when Postfix is not installed (make deps
// installs it) and when not run as root (Postfix's master must start as
// root to drop to its mail_owner).
func TestPostfixDelivers(t *testing.T) {
	t.Parallel()
	postfix := needToolAt(t, "postfix", "/usr/sbin/postfix")
	curl := needTool(t, "curl")
	sendmail := needToolAt(t, "sendmail", "/usr/sbin/sendmail")
	if os.Geteuid() != 0 {
		t.Skip("Postfix's master starts as root only: skipping the Postfix test")
	}
	if _, err := osuser.Lookup("postfix"); err != nil {
		t.Skipf("no postfix user (%v): Postfix is not installed properly", err)
	}

	dir := t.TempDir()
	users := writeUsers(t, dir,
		"alice@"+testDomain+":{PLAIN}secret",
		"jörg@"+idnDomainU+":{PLAIN}geheim", // the U-label form; --domain has the A-label
	)
	var nodes []*proc
	for i := 1; i <= 3; i++ {
		o := nodeOpts{name: fmt.Sprintf("n%d", i), dir: dir, users: users, gossip: true,
			extra: []string{"--replicas", "2", "--write-quorum", "2", "--imap", "127.0.0.1:0", "--domain", idnDomainA}}
		if i > 1 {
			o.join = []string{nodes[0].gossip}
		}
		nodes = append(nodes, startNode(t, o))
	}
	require.Eventually(t, func() bool {
		for _, p := range nodes {
			st, err := p.status()
			if err != nil || !p.ready() || aliveMembers(st.Members) != 3 || len(st.Mirror.Ring) != 3 {
				return false
			}
		}
		return true
	}, joinTimeout, 50*time.Millisecond, "three nodes see each other and are ready")

	// The array's DNS answers for the IDN domain in the form resolvers ask.
	m := new(dns.Msg)
	m.SetQuestion(idnDomainA+".", dns.TypeMX)
	r, err := dns.Exchange(m, nodes[0].addrs["dns"])
	require.NoError(t, err)
	require.Equal(t, dns.RcodeSuccess, r.Rcode, "MX for %s:\n%v", idnDomainA, r)
	assert.NotEmpty(t, r.Answer, "MX for %s", idnDomainA)

	pf := startPostfix(t, postfix, nodes[0].addrs["smtp"])
	msgs := postfixMessages()
	for _, msg := range msgs {
		pf.sendmail(t, sendmail, msg)
	}

	// Wait for the mail to be readable on the nodes that did not take it,
	// failing at once if Postfix bounced something.
	want := map[string]int{"alice@" + testDomain: 2, "jörg@" + idnDomainU: 1}
	pass := map[string]string{"alice@" + testDomain: "secret", "jörg@" + idnDomainU: "geheim"}
	deadline := time.Now().Add(postfixDeliverTimeout)
	for _, p := range nodes[1:] {
		for box, n := range want {
			for {
				if bounced := pf.bounced(); bounced != "" {
					t.Fatalf("Postfix bounced mail:\n%s", bounced)
				}
				if got := popCount(p.addrs["pop3"], box, pass[box]); got == n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s has not %d messages for %s after %v; Postfix's log:\n%s", p.name, n, box, postfixDeliverTimeout, pf.log())
				}
				time.Sleep(50 * time.Millisecond) // polling a condition
			}
		}
	}

	bySubject := func(t *testing.T, got []byte) postfixMessage {
		t.Helper()
		for _, m := range msgs {
			id := m.data[strings.Index(m.data, "Message-ID: "):]
			if bytes.Contains(got, []byte(id[:strings.Index(id, "\r\n")])) {
				return m
			}
		}
		t.Fatalf("a message that was not sent:\n%s", got)
		return postfixMessage{}
	}

	t.Run("pop3", func(t *testing.T) {
		// POP3 on n2, the UTF-8 user name as the users file has it.
		seen := map[string]bool{}
		for box, n := range want {
			for i := 1; i <= n; i++ {
				url := fmt.Sprintf("pop3://%s/%d", nodes[1].addrs["pop3"], i)
				got := curlOut(t, curl, "-u", box+":"+pass[box], url)
				m := bySubject(t, got)
				assert.Equal(t, m.to, box, "%s is in %s's mailbox", m.name, box)
				assertSameButAddedHeader(t, m, got)
				seen[m.name] = true
			}
		}
		assert.Len(t, seen, len(msgs), "every message read by POP3")
	})

	t.Run("imap", func(t *testing.T) {
		// IMAP on n3; jörg logs in by the A-label form of his domain.
		seen := map[string]bool{}
		logins := map[string]string{"alice@" + testDomain: "alice@" + testDomain, "jörg@" + idnDomainU: "jörg@" + idnDomainA}
		for box, n := range want {
			for uid := 1; uid <= n; uid++ {
				url := fmt.Sprintf("imap://%s/INBOX;UID=%d", nodes[2].addrs["imap"], uid)
				got := curlOut(t, curl, "-u", logins[box]+":"+pass[box], url)
				m := bySubject(t, got)
				assertSameButAddedHeader(t, m, got)
				seen[m.name] = true
			}
		}
		assert.Len(t, seen, len(msgs), "every message read by IMAP")
	})
}

// assertSameButAddedHeader checks that got is m.data with only header
// fields (Postfix's and the array's Received, the array's filters')
// prepended.
func assertSameButAddedHeader(t *testing.T, m postfixMessage, got []byte) {
	t.Helper()
	if !assert.True(t, bytes.HasSuffix(got, []byte(m.data)), "%s: the message as submitted ends what was read:\n%s", m.name, got) {
		return
	}
	added := string(got[:len(got)-len(m.data)])
	t.Logf("%s: %d bytes read, identical after the header fields added in front:\n%s", m.name, len(got), added)
	for _, line := range strings.SplitAfter(added, "\r\n") {
		if line == "" {
			continue
		}
		ok := strings.HasSuffix(line, "\r\n") &&
			(line[0] == ' ' || line[0] == '\t' || headerNameRE.MatchString(line))
		assert.True(t, ok, "%s: only header fields were added, not %q", m.name, line)
	}
}

var headerNameRE = regexp.MustCompile(`^[!-9;-~]+:`)

// curlOut runs curl and returns what it wrote to stdout.
func curlOut(t *testing.T, curl string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "10"}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "curl %s: %s", strings.Join(args, " "), stderr.String())
	return out
}

// popCount returns how many messages box has on the POP3 listener at addr,
// or -1 when it cannot tell.
func popCount(addr, box, pass string) int {
	cl, err := popLogin(addr, box, pass)
	if err != nil {
		return -1
	}
	defer cl.Quit()
	n, _, err := cl.Stat()
	if err != nil {
		return -1
	}
	return n
}

// needToolAt is needTool for a tool that may live outside PATH.
func needToolAt(t *testing.T, tool, fallback string) string {
	t.Helper()
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	return needTool(t, tool)
}

// privatePostfix is a Postfix instance of the test's own: its config,
// queue and data directories under one temporary directory, no listener
// (mail goes in by sendmail), every domain of the array relayed to one
// node's SMTP listener and every other discarded (bounces included).
type privatePostfix struct {
	postfix string
	dir     string // config_directory
	logPath string
}

func startPostfix(t *testing.T, postfix, smtpAddr string) *privatePostfix {
	t.Helper()
	// Postfix's daemons run as the postfix user and need to traverse to
	// the queue, which t.TempDir's 0700 directories forbid.
	root, err := os.MkdirTemp("", "mailarray-postfix-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(root) })
	require.NoError(t, os.Chmod(root, 0o755))
	pf := &privatePostfix{postfix: postfix, dir: filepath.Join(root, "etc"), logPath: filepath.Join(root, "maillog")}
	for _, d := range []string{"etc", "spool", "data"} {
		require.NoError(t, os.Mkdir(filepath.Join(root, d), 0o755))
	}
	pw, err := osuser.Lookup("postfix")
	require.NoError(t, err)
	uid, _ := strconv.Atoi(pw.Uid)
	gid, _ := strconv.Atoi(pw.Gid)
	require.NoError(t, os.Chown(filepath.Join(root, "data"), uid, gid))

	nexthop := "smtp:[" + strings.Replace(smtpAddr, ":", "]:", 1)
	mainCF := strings.Join([]string{
		"compatibility_level = 3.6",
		"queue_directory = " + filepath.Join(root, "spool"),
		"data_directory = " + filepath.Join(root, "data"),
		"meta_directory = /etc/postfix",
		"maillog_file = " + pf.logPath,
		"maillog_file_prefixes = " + root,
		"myhostname = postfix.test",
		"mydomain = postfix.test",
		"myorigin = postfix.test",
		"mydestination =",
		"local_recipient_maps =",
		"alias_maps =",
		"alias_database =",
		"inet_interfaces = loopback-only",
		"inet_protocols = ipv4",
		"mynetworks = 127.0.0.0/8",
		"biff = no",
		"smtputf8_enable = yes",
		// Postfix breaks lines longer than 998 characters by default before
		// relaying; an operator who relays them unchanged sets 0.
		"smtp_line_length_limit = 0",
		"disable_mime_output_conversion = yes",
		"smtp_tls_security_level = none",
		"smtpd_tls_security_level = none",
		"transport_maps = inline:{ " + testDomain + "=" + nexthop + ", " + idnDomainA + "=" + nexthop + ", " + idnDomainU + "=" + nexthop + " }",
		"default_transport = discard:",
		"relay_transport = discard:",
		// Retry soon if a delivery was deferred.
		"queue_run_delay = 1s",
		"minimal_backoff_time = 1s",
		"maximal_backoff_time = 2s",
	}, "\n") + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(pf.dir, "main.cf"), []byte(mainCF), 0o644))
	// The services of Debian's master.cf that relaying needs, none of them
	// listening on a port, none chrooted (the queue is not set up as a jail).
	var master strings.Builder
	for _, s := range []string{
		"pickup unix n - n 60 1 pickup", "cleanup unix n - n - 0 cleanup", "qmgr unix n - n 300 1 qmgr",
		"rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce", "defer unix - - n - 0 bounce",
		"trace unix - - n - 0 bounce", "verify unix - - n - 1 verify", "flush unix n - n 1000? 0 flush",
		"proxymap unix - - n - - proxymap", "proxywrite unix - - n - 1 proxymap", "smtp unix - - n - - smtp",
		"relay unix - - n - - smtp", "showq unix n - n - - showq", "error unix - - n - - error",
		"retry unix - - n - - error", "discard unix - - n - - discard", "anvil unix - - n - 1 anvil",
		"scache unix - - n - 1 scache", "postlog unix-dgram n - n - 1 postlogd",
	} {
		master.WriteString(s + "\n")
	}
	require.NoError(t, os.WriteFile(filepath.Join(pf.dir, "master.cf"), []byte(master.String()), 0o644))

	// Stopped at the end whatever happens, before the directories go.
	t.Cleanup(func() {
		if out, err := pf.run("stop"); err != nil {
			t.Logf("postfix stop: %v\n%s", err, out)
			pf.run("abort")
		}
	})
	out, err := pf.run("start")
	require.NoError(t, err, "postfix start:\n%s\nlog:\n%s", out, pf.log())
	return pf
}

// run runs `postfix -c DIR cmd`.
func (pf *privatePostfix) run(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), postfixCommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, pf.postfix, "-c", pf.dir, cmd).CombinedOutput()
	return string(out), err
}

// sendmail submits m to the instance (Postfix's sendmail, -i: a lone dot
// is text; -f: the envelope sender).
func (pf *privatePostfix) sendmail(t *testing.T, sendmail string, m postfixMessage) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), postfixCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sendmail, "-C", pf.dir, "-i", "-f", m.from, "--", m.to)
	cmd.Stdin = strings.NewReader(m.data)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "sendmail for %s:\n%s\nlog:\n%s", m.name, out, pf.log())
}

func (pf *privatePostfix) log() string {
	b, _ := os.ReadFile(pf.logPath)
	return string(b)
}

// bounced returns the log lines of bounced deliveries, "" if none.
func (pf *privatePostfix) bounced() string {
	var b strings.Builder
	for _, l := range strings.Split(pf.log(), "\n") {
		if strings.Contains(l, "status=bounced") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
