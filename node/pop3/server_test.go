package pop3

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
	"mailarray/node/tlstest"
)

func TestGreetingAndCapa(t *testing.T) {
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	c := ts.client(t)
	assert.Equal(t, "pop.test POP3 server ready", c.Greeting())
	caps, err := c.Capa()
	require.NoError(t, err)
	assert.Equal(t, []string{"TOP", "USER", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING",
		"EXPIRE NEVER", "IMPLEMENTATION mailarray"}, caps, "no STLS without TLS")
	require.NoError(t, c.Login("alice", alicePass))
	caps2, err := c.Capa()
	require.NoError(t, err)
	assert.Equal(t, caps, caps2, "CAPA in TRANSACTION")
	require.NoError(t, c.Quit())
}

func TestTransactionCommands(t *testing.T) {
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	c := ts.login(t, "alice", alicePass)
	total := int64(len(msgDots) + len(msgPlain) + len(msgNoEOL))

	n, size, err := c.Stat()
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	assert.Equal(t, total, size)

	list, err := c.List()
	require.NoError(t, err)
	assert.Equal(t, []Listing{{1, int64(len(msgDots))}, {2, int64(len(msgPlain))}, {3, int64(len(msgNoEOL))}}, list)
	one, err := c.ListOne(2)
	require.NoError(t, err)
	assert.Equal(t, Listing{2, int64(len(msgPlain))}, one)

	uids, err := c.Uidl()
	require.NoError(t, err)
	assert.Equal(t, []UID{{1, "alice-1"}, {2, "alice-2"}, {3, "alice-3"}}, uids)
	u, err := c.UidlOne(3)
	require.NoError(t, err)
	assert.Equal(t, UID{3, "alice-3"}, u)

	for _, tc := range []struct {
		n    int
		want string
	}{
		{1, msgDots},
		{2, msgPlain},
		{3, msgNoEOL + "\r\n"}, // the server ends the last line so "." stands alone
	} {
		got, err := c.Retr(tc.n)
		require.NoError(t, err)
		assert.Equal(t, tc.want, string(got), "RETR %d", tc.n)
		var sb strings.Builder
		k, err := c.RetrTo(tc.n, &sb)
		require.NoError(t, err)
		assert.Equal(t, tc.want, sb.String(), "RetrTo %d", tc.n)
		assert.Equal(t, int64(len(tc.want)), k)
	}

	for _, tc := range []struct {
		n, lines int
		want     string
	}{
		{1, 0, "From: a@example.com\r\nSubject: dots\r\n\r\n"},
		{1, 2, "From: a@example.com\r\nSubject: dots\r\n\r\nfirst\r\n.\r\n"},
		{1, 4, "From: a@example.com\r\nSubject: dots\r\n\r\nfirst\r\n.\r\n..\r\n.foo\r\n"},
		{1, 100, msgDots},
		{2, 1, "Subject: two\r\n\r\nline1\r\n"},
		{3, 5, msgNoEOL + "\r\n"},
	} {
		got, err := c.Top(tc.n, tc.lines)
		require.NoError(t, err)
		assert.Equal(t, tc.want, string(got), "TOP %d %d", tc.n, tc.lines)
	}

	require.NoError(t, c.Noop())
	require.NoError(t, c.Quit())
	assert.Equal(t, []string{"alice-1", "alice-2", "alice-3"}, ts.backend.ids("alice"), "nothing deleted")
	require.Eventually(t, func() bool { return ts.backend.closeCount("alice") == 1 }, ioTimeout, time.Millisecond)
}

func TestDotStuffingOnTheWire(t *testing.T) {
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	r := ts.raw(t)
	r.cmd("USER alice")
	require.Equal(t, "+OK maildrop has 3 messages (135 octets)", r.cmd("PASS "+alicePass))
	require.Equal(t, fmt.Sprintf("+OK %d octets", len(msgDots)), r.cmd("RETR 1"))
	assert.Equal(t, []string{"From: a@example.com", "Subject: dots", "", "first", "..", "...", "..foo", "last"}, r.multi())
	require.Equal(t, "+OK top of message follows", r.cmd("TOP 1 3"))
	assert.Equal(t, []string{"From: a@example.com", "Subject: dots", "", "first", "..", "..."}, r.multi())
	require.Equal(t, fmt.Sprintf("+OK %d octets", len(msgNoEOL)), r.cmd("RETR 3"))
	assert.Equal(t, []string{"Subject: three", "", "no final newline"}, r.multi())
	require.Equal(t, "+OK signing off (3 messages left)", r.cmd("QUIT"))
	r.closed()
}

func TestDeleteRsetAndCommit(t *testing.T) {
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	c := ts.login(t, "alice", alicePass)
	require.NoError(t, c.Dele(1))
	require.NoError(t, c.Dele(3))
	assert.Equal(t, "IN-USE", ErrorCode(ts.client(t).Login("alice", alicePass)), "lock held")

	// Deleted messages are invisible; numbers do not shift (RFC 1939 §5).
	n, size, err := c.Stat()
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, int64(len(msgPlain)), size)
	list, err := c.List()
	require.NoError(t, err)
	assert.Equal(t, []Listing{{2, int64(len(msgPlain))}}, list)
	uids, err := c.Uidl()
	require.NoError(t, err)
	assert.Equal(t, []UID{{2, "alice-2"}}, uids)
	for _, op := range []struct {
		name string
		err  error
	}{
		{"RETR", func() error { _, err := c.Retr(1); return err }()},
		{"TOP", func() error { _, err := c.Top(3, 0); return err }()},
		{"LIST n", func() error { _, err := c.ListOne(1); return err }()},
		{"UIDL n", func() error { _, err := c.UidlOne(3); return err }()},
	} {
		var e *Error
		require.ErrorAs(t, op.err, &e, op.name)
		assert.Equal(t, "no such message", e.Text, op.name)
	}
	err = c.Dele(1)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "message 1 already deleted", e.Text)

	// RSET brings them back.
	require.NoError(t, c.Rset())
	n, _, err = c.Stat()
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	got, err := c.Retr(1)
	require.NoError(t, err)
	assert.Equal(t, msgDots, string(got))

	// Delete again and commit with QUIT.
	require.NoError(t, c.Dele(1))
	require.NoError(t, c.Dele(3))
	require.NoError(t, c.Quit())
	assert.Equal(t, []string{"alice-2"}, ts.backend.ids("alice"))

	c2 := ts.login(t, "alice", alicePass)
	uids, err = c2.Uidl()
	require.NoError(t, err)
	assert.Equal(t, []UID{{1, "alice-2"}}, uids, "renumbered in a new session")
	require.NoError(t, c2.Quit())
}

func TestQuitCommitFailure(t *testing.T) {
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	ts.backend.setFault(func(b *memBackend) { b.commitErr = errors.New("catalog unreachable") })
	c := ts.login(t, "alice", alicePass)
	require.NoError(t, c.Dele(2))
	err := c.Quit()
	assert.Equal(t, "SYS/TEMP", ErrorCode(err))
	assert.Equal(t, []string{"alice-1", "alice-2", "alice-3"}, ts.backend.ids("alice"))
	require.Eventually(t, func() bool { return ts.backend.closeCount("alice") == 1 }, ioTimeout, time.Millisecond)
	assert.False(t, ts.backend.isLocked("alice"))
}

func TestDisconnectWithoutQuitDeletesNothing(t *testing.T) {
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	c := ts.login(t, "alice", alicePass)
	require.NoError(t, c.Dele(1))
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return ts.backend.closeCount("alice") == 1 }, ioTimeout, time.Millisecond)
	assert.Equal(t, []string{"alice-1", "alice-2", "alice-3"}, ts.backend.ids("alice"))
	assert.False(t, ts.backend.isLocked("alice"))
}

func TestLoginErrors(t *testing.T) {
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	for _, tc := range []struct {
		name       string
		user, pass string
		fault      func(b *memBackend)
		wantCode   string
	}{
		{name: "wrong password", user: "alice", pass: wrongPass, wantCode: "AUTH"},
		{name: "unknown user", user: "mallory", pass: wrongPass, wantCode: "AUTH"},
		{name: "backend down", user: "alice", pass: alicePass, wantCode: "SYS/TEMP",
			fault: func(b *memBackend) { b.loginErr = errors.New("directory unreachable") }},
		{name: "list fails", user: "alice", pass: alicePass, wantCode: "SYS/TEMP",
			fault: func(b *memBackend) { b.listErr = errors.New("catalog unreachable") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				ts.backend.setFault(tc.fault)
				t.Cleanup(func() {
					ts.backend.setFault(func(b *memBackend) { b.loginErr, b.listErr = nil, nil })
				})
			}
			c := ts.client(t)
			err := c.Login(tc.user, tc.pass)
			assert.Equal(t, tc.wantCode, ErrorCode(err), "got %v", err)
			assert.False(t, ts.backend.isLocked("alice"), "lock released")
			require.NoError(t, c.Quit())
		})
	}
	// After all that, logging in works.
	require.NoError(t, ts.login(t, "alice", alicePass).Quit())
	logs := ts.logs.String()
	assert.Contains(t, logs, "msg=login protocol=pop3 result=failure")
	assert.Contains(t, logs, "mailbox=mallory")
	assert.NotContains(t, logs, wrongPass, "passwords are never logged")
	assert.NotContains(t, logs, alicePass, "passwords are never logged")
}

func TestInUse(t *testing.T) {
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	first := ts.login(t, "alice", alicePass)
	c := ts.client(t)
	err := c.Login("alice", alicePass)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "IN-USE", e.Code)
	require.NoError(t, first.Quit())
	assert.False(t, ts.backend.isLocked("alice"), "lock released before QUIT's answer")
	require.NoError(t, c.Login("alice", alicePass), "same session may retry")
	require.NoError(t, c.Quit())
}

func TestFailedLoginLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxFailedLogins = 2
	ts := startServer(t, cfg, newTestBackend(), nil)
	r := ts.raw(t)
	r.cmd("USER alice")
	assert.Equal(t, "-ERR [AUTH] invalid user name or password", r.cmd("PASS "+wrongPass))
	r.cmd("USER alice")
	r.send("PASS " + wrongPass + "\r\n")
	assert.Equal(t, []string{"-ERR [AUTH] invalid user name or password; too many failures, closing connection"}, r.closed())
}

func TestFailedLoginDelayHonoured(t *testing.T) {
	cfg := testConfig()
	cfg.FailedLoginDelay = 50 * time.Millisecond
	ts := startServer(t, cfg, newTestBackend(), nil)
	c := ts.client(t)
	start := time.Now()
	assert.Equal(t, "AUTH", ErrorCode(c.Login("alice", wrongPass)))
	assert.GreaterOrEqual(t, time.Since(start), cfg.FailedLoginDelay)
}

func TestPerAddressThrottle(t *testing.T) {
	cfg := testConfig()
	cfg.ThrottleMaxFailures = 2
	cfg.MaxFailedLogins = 10
	ts := startServer(t, cfg, newTestBackend(), nil)
	c := ts.client(t)
	for range 2 {
		assert.Equal(t, "AUTH", ErrorCode(c.Login("alice", wrongPass)))
	}
	logins := ts.backend.loginCount()
	// Now even the right password is refused without asking the backend,
	// in this session and in a new one from the same address.
	for _, c := range []*Client{c, ts.client(t)} {
		err := c.Login("alice", alicePass)
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, "SYS/TEMP", e.Code)
		assert.Contains(t, e.Text, "too many failed logins")
	}
	assert.Equal(t, logins, ts.backend.loginCount(), "password not checked while throttled")
	assert.Contains(t, ts.logs.String(), "result=throttled")
}

// TestThrottleCountsParallelGuesses: attempts count from their start, so
// guesses sent at once on many connections cannot all reach the password
// check before the first failure is counted.
func TestThrottleCountsParallelGuesses(t *testing.T) {
	cfg := testConfig()
	cfg.ThrottleMaxFailures = 2
	ts := startServer(t, cfg, newTestBackend(), nil)
	entered, release := make(chan struct{}, 10), make(chan struct{})
	ts.backend.setFault(func(b *memBackend) {
		b.onLogin = func(string) { entered <- struct{}{}; <-release }
	})
	const guesses = 6
	clients := make([]*Client, guesses)
	for i := range clients {
		clients[i] = ts.client(t)
	}
	codes := make(chan string, guesses)
	for _, c := range clients {
		go func() { codes <- ErrorCode(c.Login("alice", wrongPass)) }()
	}
	for range cfg.ThrottleMaxFailures {
		<-entered
	}
	timeout := time.After(10 * time.Second)
	for range guesses - cfg.ThrottleMaxFailures {
		select {
		case code := <-codes:
			assert.Equal(t, "SYS/TEMP", code, "refused before the password check")
		case <-timeout:
			t.Fatal("parallel guesses reached the password check instead of being refused")
		}
	}
	close(release)
	for range cfg.ThrottleMaxFailures {
		assert.Equal(t, "AUTH", <-codes)
	}
	assert.Equal(t, cfg.ThrottleMaxFailures, ts.backend.loginCount(), "the backend checked only the allowed attempts")
}

func TestStateAndSyntaxErrors(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBadCommands = 100
	ts := startServer(t, cfg, newTestBackend(), nil)
	r := ts.raw(t)
	for _, tc := range []struct{ cmd, want string }{
		{"STAT", "-ERR command not valid in this state"},
		{"LIST", "-ERR command not valid in this state"},
		{"UIDL", "-ERR command not valid in this state"},
		{"RETR 1", "-ERR command not valid in this state"},
		{"TOP 1 1", "-ERR command not valid in this state"},
		{"DELE 1", "-ERR command not valid in this state"},
		{"RSET", "-ERR command not valid in this state"},
		{"NOOP", "-ERR command not valid in this state"},
		{"PASS " + alicePass, "-ERR USER first"},
		{"APOP alice 0123456789abcdef", "-ERR unknown command"},
		{"STLS", "-ERR unknown command"},
		{"USER", "-ERR syntax: USER name"},
		{"USER a b", "-ERR syntax: USER name"},
		{"PASS", "-ERR syntax error"},
		{"CAPA x", "-ERR syntax: CAPA"},
		{"user alice", "+OK send PASS"},
		{"pAsS " + alicePass, "+OK maildrop has 3 messages (135 octets)"},
	} {
		assert.Equal(t, tc.want, r.cmd(tc.cmd), "AUTHORIZATION: %q", tc.cmd)
	}
	for _, tc := range []struct{ cmd, want string }{
		{"USER bob", "-ERR command not valid in this state"},
		{"PASS " + bobPass, "-ERR command not valid in this state"},
		{"STLS", "-ERR command not valid in this state"},
		{"stat", "+OK 3 135"},
		{"StAt", "+OK 3 135"},
		{"STAT  ", "+OK 3 135"},
		{"STAT x", "-ERR syntax: STAT"},
		{"NOOP x", "-ERR syntax: NOOP"},
		{"RSET x", "-ERR syntax: RSET"},
		{"QUIT x", "-ERR syntax: QUIT"},
		{"RETR", "-ERR syntax: RETR msg"},
		{"RETR 1 2", "-ERR syntax: RETR msg"},
		{"RETR 0", "-ERR no such message"},
		{"RETR 4", "-ERR no such message"},
		{"RETR -1", "-ERR invalid message number"},
		{"RETR +1", "-ERR invalid message number"},
		{"RETR 1x", "-ERR invalid message number"},
		{"RETR 0x1", "-ERR invalid message number"},
		{"LIST 9999999999", "-ERR invalid message number"},
		{"LIST 01", fmt.Sprintf("+OK 1 %d", len(msgDots))},
		{"LIST 1 2", "-ERR syntax: LIST [msg]"},
		{"UIDL 1 2", "-ERR syntax: UIDL [msg]"},
		{"UIDL 0", "-ERR no such message"},
		{"TOP 1", "-ERR syntax: TOP msg n"},
		{"TOP 1 -1", "-ERR invalid line count"},
		{"TOP 1 x", "-ERR invalid line count"},
		{"TOP 9 1", "-ERR no such message"},
		{"DELE", "-ERR syntax: DELE msg"},
		{"DELE abc", "-ERR invalid message number"},
		{"DELE 7", "-ERR no such message"},
		{"XYZZY", "-ERR unknown command"},
		{"LAST", "-ERR unknown command"},
		{"HI", "-ERR unknown command"},
		{"", "-ERR syntax error"},
		{"   ", "-ERR syntax error"},
		{"NOOP\x00", "-ERR syntax error"},
		{"NO\tOP", "-ERR syntax error"},
		{"RETR 1 2 3 4 5 6", "-ERR syntax error"},
		{"NOOP", "+OK"},
	} {
		assert.Equal(t, tc.want, r.cmd(tc.cmd), "TRANSACTION: %q", tc.cmd)
	}
	r.send("QUIT\r\n")
	assert.Equal(t, []string{"+OK signing off (3 messages left)"}, r.closed())
}

func TestLineTooLong(t *testing.T) {
	cfg := testConfig()
	ts := startServer(t, cfg, newTestBackend(), nil)
	r := ts.raw(t)
	// Exactly MaxLineBytes with CRLF is accepted.
	okLine := "USER " + strings.Repeat("a", cfg.MaxLineBytes-len("USER ")-2)
	assert.Equal(t, "+OK send PASS", r.cmd(okLine))
	for _, n := range []int{cfg.MaxLineBytes - 1, 5000, 100_000} {
		assert.Equal(t, "-ERR line too long", r.cmd("USER "+strings.Repeat("b", n)), "length %d", n)
	}
	// The session goes on.
	assert.Equal(t, "+OK send PASS", r.cmd("USER alice"))
	assert.Equal(t, "+OK maildrop has 3 messages (135 octets)", r.cmd("PASS "+alicePass))
	assert.Equal(t, "+OK 3 135", r.cmd("STAT"))
}

func TestTooManyBadCommands(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBadCommands = 3
	ts := startServer(t, cfg, newTestBackend(), nil)
	r := ts.raw(t)
	assert.Equal(t, "-ERR unknown command", r.cmd("FOO"))
	assert.Equal(t, "-ERR line too long", r.cmd(strings.Repeat("x", 1000)))
	r.send("BAR\r\n")
	assert.Equal(t, []string{"-ERR unknown command; too many errors, closing connection"}, r.closed())
}

func TestPipelining(t *testing.T) {
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	r := ts.raw(t)
	r.send("CAPA\r\nUSER alice\r\nPASS " + alicePass + "\r\nSTAT\r\nLIST\r\nRETR 2\r\nDELE 2\r\nUIDL\r\nTOP 1 0\r\nNOOP\r\nQUIT\r\n")
	require.Equal(t, "+OK capability list follows", r.line())
	assert.Contains(t, r.multi(), "PIPELINING")
	assert.Equal(t, "+OK send PASS", r.line())
	assert.Equal(t, "+OK maildrop has 3 messages (135 octets)", r.line())
	assert.Equal(t, "+OK 3 135", r.line())
	assert.Equal(t, "+OK 3 messages (135 octets)", r.line())
	assert.Equal(t, []string{"1 64", "2 37", "3 34"}, r.multi())
	assert.Equal(t, "+OK 37 octets", r.line())
	assert.Equal(t, []string{"Subject: two", "", "line1", "line2", "line3"}, r.multi())
	assert.Equal(t, "+OK message 2 deleted", r.line())
	assert.Equal(t, "+OK unique-id listing follows", r.line())
	assert.Equal(t, []string{"1 alice-1", "3 alice-3"}, r.multi())
	assert.Equal(t, "+OK top of message follows", r.line())
	assert.Equal(t, []string{"From: a@example.com", "Subject: dots", ""}, r.multi())
	assert.Equal(t, "+OK", r.line())
	assert.Equal(t, []string{"+OK signing off (2 messages left)"}, r.closed())
	assert.Equal(t, []string{"alice-1", "alice-3"}, ts.backend.ids("alice"))
}

func TestIdleTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 100 * time.Millisecond
	ts := startServer(t, cfg, newTestBackend(), nil)
	r := ts.raw(t)
	r.cmd("USER alice")
	r.cmd("PASS " + alicePass)
	assert.Equal(t, "+OK message 1 deleted", r.cmd("DELE 1"))
	// Say nothing: the autologout timer closes the session without UPDATE.
	assert.Equal(t, []string{"-ERR autologout; idle for too long"}, r.closed())
	require.Eventually(t, func() bool { return ts.backend.closeCount("alice") == 1 }, ioTimeout, time.Millisecond)
	assert.Equal(t, []string{"alice-1", "alice-2", "alice-3"}, ts.backend.ids("alice"), "RFC 1939 §3: no UPDATE")
	assert.Contains(t, ts.logs.String(), "reason=\"idle timeout\"")
}

func TestBackendReadFailures(t *testing.T) {
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	t.Run("open fails: -ERR, session goes on", func(t *testing.T) {
		ts.backend.setFault(func(b *memBackend) { b.openErr = errors.New("all copies down") })
		c := ts.login(t, "alice", alicePass)
		_, err := c.Retr(1)
		assert.Equal(t, "SYS/TEMP", ErrorCode(err))
		_, err = c.Top(1, 1)
		assert.Equal(t, "SYS/TEMP", ErrorCode(err))
		ts.backend.setFault(func(b *memBackend) { b.openErr = nil })
		got, err := c.Retr(1)
		require.NoError(t, err)
		assert.Equal(t, msgDots, string(got))
		require.NoError(t, c.Quit())
	})
	t.Run("read fails after +OK: connection dropped, no terminator", func(t *testing.T) {
		ts.backend.setFault(func(b *memBackend) { b.readErr = errors.New("copy corrupt") })
		t.Cleanup(func() { ts.backend.setFault(func(b *memBackend) { b.readErr = nil }) })
		c := ts.login(t, "alice", alicePass)
		require.NoError(t, c.Dele(2))
		_, err := c.Retr(1)
		require.Error(t, err)
		assert.Empty(t, ErrorCode(err), "not an -ERR: the transfer was cut")
		require.Eventually(t, func() bool { return !ts.backend.isLocked("alice") }, ioTimeout, time.Millisecond)
		assert.Equal(t, []string{"alice-1", "alice-2", "alice-3"}, ts.backend.ids("alice"))
	})
}

func TestBadMaildropListing(t *testing.T) {
	for _, tc := range []struct {
		name string
		ids  []string
	}{
		{"empty id", []string{""}},
		{"id with space", []string{"a b"}},
		{"id too long", []string{strings.Repeat("x", 71)}},
		{"duplicate id", []string{"x", "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newMemBackend()
			b.addUser("u", "p")
			for _, id := range tc.ids {
				b.users["u"].msgs = append(b.users["u"].msgs, memMsg{id: id, data: []byte("x\r\n")})
			}
			ts := startServer(t, testConfig(), b, nil)
			c := ts.client(t)
			assert.Equal(t, "SYS/TEMP", ErrorCode(c.Login("u", "p")))
			assert.False(t, b.isLocked("u"))
		})
	}
}

func TestMaxMessages(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessages = 2
	ts := startServer(t, cfg, newTestBackend(), nil)
	c := ts.login(t, "alice", alicePass)
	uids, err := c.Uidl()
	require.NoError(t, err)
	assert.Equal(t, []UID{{1, "alice-1"}, {2, "alice-2"}}, uids, "the oldest MaxMessages")
	require.NoError(t, c.Quit())
}

func TestMaxSessions(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSessions = 1
	ts := startServer(t, cfg, newTestBackend(), nil)
	first := ts.client(t)
	_, err := NewClient(ts.dial(t))
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, Error{Code: "SYS/TEMP", Text: "too many sessions, try again later"}, *e)
	require.NoError(t, first.Quit())
	require.Eventually(t, func() bool { return ts.sessions() == 0 }, ioTimeout, time.Millisecond)
	require.NoError(t, ts.login(t, "alice", alicePass).Quit())
}

func TestCloseEndsSessions(t *testing.T) {
	ts := startServer(t, testConfig(), newTestBackend(), nil)
	alice := ts.login(t, "alice", alicePass)
	bob := ts.login(t, "bob", bobPass)
	idle := ts.client(t)
	require.NoError(t, alice.Dele(1))

	require.NoError(t, ts.srv.Close())
	// Close waited for the sessions: locks are already released.
	assert.Equal(t, 1, ts.backend.closeCount("alice"))
	assert.Equal(t, 1, ts.backend.closeCount("bob"))
	assert.False(t, ts.backend.isLocked("alice"))
	assert.Equal(t, []string{"alice-1", "alice-2", "alice-3"}, ts.backend.ids("alice"), "no UPDATE on Close")
	for _, c := range []*Client{alice, bob, idle} {
		assert.Error(t, c.Noop())
	}
	assert.Equal(t, 0, ts.sessions())

	// A closed server refuses more work.
	l, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorIs(t, ts.srv.Serve(l), ErrServerClosed)
	_, err = l.Accept()
	assert.ErrorIs(t, err, net.ErrClosed, "Serve closes its listener")
	assert.ErrorIs(t, ts.srv.ServeConn(&pipeConn{}), ErrServerClosed)
}

func TestCloseInterruptsFailedLoginDelay(t *testing.T) {
	cfg := testConfig()
	cfg.FailedLoginDelay = time.Hour
	b := newTestBackend()
	loginCalled := make(chan struct{}, 1)
	b.onLogin = func(string) { loginCalled <- struct{}{} }
	ts := startServer(t, cfg, b, nil)
	r := ts.raw(t)
	r.cmd("USER alice")
	r.send("PASS " + wrongPass + "\r\n")
	<-loginCalled
	closed := make(chan struct{})
	go func() {
		ts.srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(ioTimeout):
		t.Fatal("Close did not interrupt the failed-login delay")
	}
	assert.Empty(t, r.closed())
}

func TestSTLS(t *testing.T) {
	cert, pool := tlstest.SelfSigned(t, "pop.test")
	var getterCalls atomic.Int32
	cfg := testConfig()
	cfg.TLS = func() *tls.Config {
		getterCalls.Add(1)
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ts := startServer(t, cfg, newTestBackend(), nil)
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}

	t.Run("upgrade", func(t *testing.T) {
		c := ts.client(t)
		caps, err := c.Capa()
		require.NoError(t, err)
		assert.Contains(t, caps, "STLS")
		require.NoError(t, c.StartTLS(clientTLS))
		caps, err = c.Capa()
		require.NoError(t, err)
		assert.NotContains(t, caps, "STLS", "RFC 2595 §4: not offered once active")
		err = c.StartTLS(clientTLS)
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, "command not permitted when TLS active", e.Text)
		require.NoError(t, c.Login("alice", alicePass))
		got, err := c.Retr(1)
		require.NoError(t, err)
		assert.Equal(t, msgDots, string(got))
		require.NoError(t, c.Quit())
	})
	t.Run("untrusted certificate fails the handshake", func(t *testing.T) {
		c := ts.client(t)
		err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
		require.Error(t, err)
	})
	t.Run("plaintext pipelined after STLS is discarded", func(t *testing.T) {
		r := ts.raw(t)
		r.send("STLS\r\nUSER alice\r\n")
		require.Equal(t, "+OK begin TLS negotiation", r.line())
		tc := tls.Client(r.conn, clientTLS)
		require.NoError(t, tc.Handshake())
		c := &rawClient{t: t, conn: tc, br: bufio.NewReader(tc)}
		assert.Equal(t, "-ERR USER first", c.cmd("PASS "+alicePass), "injected USER must not count")
		assert.Equal(t, "+OK send PASS", c.cmd("USER alice"))
		assert.Equal(t, "+OK maildrop has 3 messages (135 octets)", c.cmd("PASS "+alicePass))
		assert.Contains(t, ts.logs.String(), "discarding plaintext pipelined after STLS")
		c.send("QUIT\r\n")
		c.closed()
	})
	assert.GreaterOrEqual(t, getterCalls.Load(), int32(3), "the getter is asked at each STLS")
}

func TestSTLSGetterReturnsNil(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = func() *tls.Config { return nil }
	ts := startServer(t, cfg, newTestBackend(), nil)
	c := ts.client(t)
	assert.Equal(t, "SYS/TEMP", ErrorCode(c.StartTLS(&tls.Config{})))
	require.NoError(t, c.Login("alice", alicePass), "session goes on in plaintext")
	require.NoError(t, c.Quit())
}

func TestRequireTLS(t *testing.T) {
	cert, pool := tlstest.SelfSigned(t, "pop.test")
	cfg := testConfig()
	cfg.RequireTLS = true
	cfg.TLS = func() *tls.Config { return &tls.Config{Certificates: []tls.Certificate{cert}} }
	ts := startServer(t, cfg, newTestBackend(), nil)
	c := ts.client(t)
	caps, err := c.Capa()
	require.NoError(t, err)
	assert.NotContains(t, caps, "USER")
	assert.Contains(t, caps, "STLS")
	var e *Error
	require.ErrorAs(t, c.Login("alice", alicePass), &e)
	assert.Equal(t, "AUTH", e.Code, "RFC 3206 [AUTH]: authenticate another way")
	assert.Contains(t, e.Text, "use STLS")
	require.NoError(t, c.StartTLS(&tls.Config{RootCAs: pool, ServerName: "pop.test"}))
	caps, err = c.Capa()
	require.NoError(t, err)
	assert.Contains(t, caps, "USER")
	require.NoError(t, c.Login("alice", alicePass))
	require.NoError(t, c.Quit())
}

func TestImplicitTLS(t *testing.T) {
	cert, pool := tlstest.SelfSigned(t, "pop.test")
	cfg := testConfig()
	cfg.TLS = func() *tls.Config { return &tls.Config{Certificates: []tls.Certificate{cert}} }
	ts := startServer(t, cfg, newTestBackend(), func(l net.Listener) net.Listener {
		return tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})
	})
	conn := tls.Client(ts.dial(t), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	c, err := NewClient(conn)
	require.NoError(t, err)
	c.SetTimeout(ioTimeout)
	caps, err := c.Capa()
	require.NoError(t, err)
	assert.NotContains(t, caps, "STLS", "already secure")
	require.NoError(t, c.Login("alice", alicePass))
	got, err := c.Retr(2)
	require.NoError(t, err)
	assert.Equal(t, msgPlain, string(got))
	require.NoError(t, c.Quit())

	// A client that never handshakes is dropped, not kept forever.
	r := ts.dial(t)
	_, err = r.Write([]byte("USER alice\r\n"))
	require.NoError(t, err)
	require.NoError(t, r.SetReadDeadline(time.Now().Add(ioTimeout)))
	_, err = r.Read(make([]byte, 100))
	require.Error(t, err)
	require.False(t, isTimeout(err), "server should close, got %v", err)
}

func TestServeConnOverPipe(t *testing.T) {
	b := newTestBackend()
	srv := New(testConfig(), b, nil)
	defer srv.Close()
	serverSide, clientSide := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(serverSide) }()
	c, err := NewClient(clientSide)
	require.NoError(t, err)
	require.NoError(t, c.Login("bob", bobPass))
	got, err := c.Retr(1)
	require.NoError(t, err)
	assert.Equal(t, msgPlain, string(got))
	require.NoError(t, c.Dele(1))
	require.NoError(t, c.Quit())
	require.NoError(t, <-done)
	assert.Empty(t, b.ids("bob"))
}

func TestInvalidConfig(t *testing.T) {
	cfg := testConfig()
	cfg.MaxLineBytes = 10
	srv := New(cfg, newTestBackend(), nil)
	l, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorContains(t, srv.Serve(l), "MaxLineBytes")
	assert.ErrorContains(t, New(testConfig(), nil, nil).ServeConn(&pipeConn{}), "nil Backend")
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"empty hostname", func(c *Config) { c.Hostname = "" }, "Hostname is empty"},
		{"hostname with space", func(c *Config) { c.Hostname = "a b" }, "outside 0x21-0x7E"},
		{"line below RFC 2449", func(c *Config) { c.MaxLineBytes = 254 }, "MaxLineBytes"},
		{"line too big", func(c *Config) { c.MaxLineBytes = 1 << 20 }, "MaxLineBytes"},
		{"no idle timeout", func(c *Config) { c.IdleTimeout = 0 }, "IdleTimeout"},
		{"no write timeout", func(c *Config) { c.WriteTimeout = 0 }, "WriteTimeout"},
		{"no backend timeout", func(c *Config) { c.BackendTimeout = -1 }, "BackendTimeout"},
		{"no failed logins", func(c *Config) { c.MaxFailedLogins = 0 }, "MaxFailedLogins"},
		{"negative delay", func(c *Config) { c.FailedLoginDelay = -1 }, "FailedLoginDelay"},
		{"negative throttle", func(c *Config) { c.ThrottleMaxFailures = -1 }, "ThrottleMaxFailures"},
		{"throttle without window", func(c *Config) { c.ThrottleWindow = 0 }, "ThrottleWindow"},
		{"throttle without table", func(c *Config) { c.ThrottleMaxAddrs = 0 }, "ThrottleMaxAddrs"},
		{"no sessions", func(c *Config) { c.MaxSessions = 0 }, "MaxSessions"},
		{"no bad commands", func(c *Config) { c.MaxBadCommands = 0 }, "MaxBadCommands"},
		{"no messages", func(c *Config) { c.MaxMessages = 0 }, "MaxMessages"},
		{"RequireTLS without TLS", func(c *Config) { c.RequireTLS = true }, "RequireTLS"},
	} {
		cfg := DefaultConfig()
		tc.modify(&cfg)
		assert.ErrorContains(t, cfg.Validate(), tc.want, tc.name)
	}
	cfg := DefaultConfig()
	cfg.ThrottleMaxFailures, cfg.ThrottleWindow, cfg.ThrottleMaxAddrs = 0, 0, 0
	assert.NoError(t, cfg.Validate(), "a disabled throttle needs no window")
}
