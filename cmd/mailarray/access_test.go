package main

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// greetFrom connects to addr from the local address from (127.0.0.1 or
// another loopback address) and returns the connection and the server's
// first line.
func greetFrom(t *testing.T, from, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: ioTimeout}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(ioTimeout)))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	require.NoError(t, err, "greeting from %s", addr)
	return c, r, strings.TrimRight(line, "\r\n")
}

// TestPerAddressSessionCapRealProcess (issue 18 item 2): one client
// address holding its share of idle POP3 and IMAP sessions (50 each by
// default) is refused more, while another address still gets in: one host
// can no longer shut everyone out of a server whose only cap was global.
func TestPerAddressSessionCapRealProcess(t *testing.T) {
	dir := t.TempDir()
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: writeUsers(t, dir, "alice@"+testDomain+":{PLAIN}secret"),
		extra: []string{"--imap", "127.0.0.1:0"}})
	const perAddr = 50 // the default pop3-max-sessions-per-ip and imap-max-sessions-per-ip
	for _, tc := range []struct {
		proto, ok, refused string
	}{
		{"pop3", "+OK", "-ERR [SYS/TEMP] too many sessions from your address"},
		{"imap", "* OK", "* BYE [UNAVAILABLE] too many sessions from your address"},
	} {
		addr := p.addrs[tc.proto]
		require.NotEmpty(t, addr, tc.proto)
		for i := range perAddr {
			_, _, got := greetFrom(t, "127.0.0.1", addr)
			require.True(t, strings.HasPrefix(got, tc.ok), "%s session %d from 127.0.0.1: %q", tc.proto, i+1, got)
		}
		_, _, got := greetFrom(t, "127.0.0.1", addr)
		assert.True(t, strings.HasPrefix(got, tc.refused), "%s: one more from 127.0.0.1 refused, got %q", tc.proto, got)
		_, _, got = greetFrom(t, "127.0.0.2", addr)
		assert.True(t, strings.HasPrefix(got, tc.ok), "%s: another address still gets in, got %q", tc.proto, got)
	}
}

// TestLoginTimeoutAndRcptTarpitRealProcess (issue 18 item 2): a POP3 or
// IMAP client that does not log in is closed after the login timeout even
// while it keeps talking, and an SMTP client naming unknown recipients is
// slowed and then dropped with 421 4.7.0.
func TestLoginTimeoutAndRcptTarpitRealProcess(t *testing.T) {
	dir := t.TempDir()
	const delay = 100 * time.Millisecond
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: writeUsers(t, dir, "alice@"+testDomain+":{PLAIN}secret"),
		extra: []string{"--imap", "127.0.0.1:0", "--pop3-login-timeout", "1s", "--imap-login-timeout", "1s",
			"--smtp-rcpt-tarpit-after", "2", "--smtp-rcpt-tarpit-delay", delay.String(), "--smtp-max-unknown-rcpts", "4"}})

	for _, tc := range []struct {
		proto, cmd, bye string
	}{
		{"pop3", "CAPA", "-ERR autologout; no login in time"},
		{"imap", "a NOOP", "* BYE autologout: no login in time"},
	} {
		c, r, _ := greetFrom(t, "127.0.0.1", p.addrs[tc.proto])
		var last string
		// Keep talking, as a slow client or an attacker holding the
		// session would: only a login may extend the session.
		for start := time.Now(); time.Since(start) < ioTimeout && last != tc.bye; time.Sleep(50 * time.Millisecond) {
			_, err := c.Write([]byte(tc.cmd + "\r\n"))
			if err != nil {
				break
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					break
				}
				last = strings.TrimRight(l, "\r\n")
				if last == tc.bye || last == "." || strings.HasPrefix(last, "a ") {
					break
				}
			}
		}
		assert.Equal(t, tc.bye, last, "%s: closed for not logging in", tc.proto)
	}

	c, r, greeting := greetFrom(t, "127.0.0.1", p.addrs["smtp"])
	require.True(t, strings.HasPrefix(greeting, "220"), greeting)
	reply := func(cmd string) (string, time.Duration) {
		t0 := time.Now()
		_, err := c.Write([]byte(cmd + "\r\n"))
		require.NoError(t, err)
		for {
			l, err := r.ReadString('\n')
			require.NoError(t, err, "reply to %s", cmd)
			if len(l) < 4 || l[3] != '-' {
				return strings.TrimRight(l, "\r\n"), time.Since(t0)
			}
		}
	}
	got, _ := reply("EHLO probe.test")
	require.True(t, strings.HasPrefix(got, "250"), got)
	got, _ = reply("MAIL FROM:<probe@remote.test>")
	require.True(t, strings.HasPrefix(got, "250"), got)
	for i, want := range []string{"550 5.1.1", "550 5.1.1", "550 5.1.1", "421 4.7.0"} {
		got, took := reply("RCPT TO:<nobody" + itoa(i) + "@" + testDomain + ">")
		assert.True(t, strings.HasPrefix(got, want), "unknown recipient %d: want %q, got %q", i+1, want, got)
		if i >= 2 {
			assert.GreaterOrEqual(t, took, delay, "unknown recipient %d answered late", i+1)
		}
	}
	_, err := r.ReadString('\n')
	assert.Error(t, err, "the connection is closed after 421")
}
