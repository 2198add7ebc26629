package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func FuzzParseCommand(f *testing.F) {
	for _, seed := range []string{
		"STAT\r\n", "stat\n", "TOP 1 10\r\n", "LIST  2  \r\n", "PASS a b c\r\n", "PASS\r\n",
		"USER jörg\r\n", "", "\r\n", " STAT\r\n", "STAT\x00\r\n", "RETR 1 2 3 4 5\r\n",
		"\xff\xfe\r\n", "APOP a b\r\n", "\r", ".\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, args, err := parseCommand(line)
		if err != nil {
			if cmd != "" || args != nil {
				t.Fatalf("error %v with results %q %q", err, cmd, args)
			}
			return
		}
		if len(cmd) < 3 || len(cmd) > 4 || strings.ToUpper(cmd) != cmd || strings.ContainsFunc(cmd, func(r rune) bool { return r < 'A' || r > 'Z' }) {
			t.Fatalf("bad keyword %q", cmd)
		}
		if len(args) > maxArgs {
			t.Fatalf("%d args", len(args))
		}
		for _, a := range args {
			if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("bad arg %q", a)
			}
			if cmd != cmdPASS && strings.Contains(a, " ") {
				t.Fatalf("arg %q has a space", a)
			}
		}
		// Parsing the canonical form gives the same command.
		canon := strings.Join(append([]string{cmd}, args...), " ") + "\r\n"
		cmd2, args2, err := parseCommand([]byte(canon))
		if err != nil || cmd2 != cmd || strings.Join(args2, "\x00") != strings.Join(args, "\x00") {
			t.Fatalf("canonical %q reparsed as %q %q %v", canon, cmd2, args2, err)
		}
	})
}

// FuzzSession runs a whole session on random client bytes and checks that
// the server never panics, answers every complete command line with exactly
// one well-formed response (multi-line where RFC 1939 says so), and always
// releases the maildrop lock.
func FuzzSession(f *testing.F) {
	login := "USER alice\r\nPASS " + alicePass + "\r\n"
	for _, seed := range []string{
		"CAPA\r\nQUIT\r\n",
		login + "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nRETR 3\r\nTOP 1 2\r\nDELE 2\r\nLIST 2\r\nRSET\r\nQUIT\r\n",
		login + "DELE 1\r\nDELE 1\r\nRETR 1\r\nNOOP\r\nQUIT\r\n",
		login + "retr 1\nlist 1\nuidl 3\ntop 3 0\n",
		"USER alice\r\nPASS x\r\nUSER alice\r\nPASS y\r\nUSER alice\r\nPASS z\r\nSTAT\r\n",
		"STLS\r\nAPOP a b\r\n" + strings.Repeat("A", 300) + "\r\nNOOP\r\n",
		login + "TOP 1 -1\r\nRETR 99\r\nLIST 0\r\n\r\n \r\nSTAT 1\r\nQUIT",
		"\x00\xff\r\n\r\r\n",
		strings.Repeat("FOO\r\n", 30),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		cfg := testConfig()
		b := newTestBackend()
		srv := New(cfg, b, nil)
		conn := &pipeConn{in: bytes.NewReader(input)}
		if err := srv.ServeConn(conn); err != nil {
			t.Fatal(err)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		for user := range b.users {
			if b.isLocked(user) {
				t.Fatalf("%s's maildrop still locked", user)
			}
		}
		checkTranscript(t, cfg, input, conn.out.Bytes())
	})
}

// checkTranscript pairs each complete input line with its response.
func checkTranscript(t *testing.T, cfg Config, input, output []byte) {
	out := bufio.NewReader(bytes.NewReader(output))
	readLine := func() (string, bool) {
		l, err := out.ReadString('\n')
		if errors.Is(err, io.EOF) && l == "" {
			return "", false
		}
		if err != nil {
			t.Fatalf("partial response line %q", l)
		}
		body, ok := strings.CutSuffix(l, "\r\n")
		if !ok || strings.ContainsAny(body, "\r\n") {
			t.Fatalf("malformed response line %q", l)
		}
		return body, true
	}
	status := func() (string, bool) {
		l, ok := readLine()
		if ok && !strings.HasPrefix(l, "+OK") && !strings.HasPrefix(l, "-ERR") {
			t.Fatalf("status line %q", l)
		}
		if ok && len(l)+2 > 512 {
			t.Fatalf("status line longer than RFC 2449 §4's 512 octets: %q", l)
		}
		return l, ok
	}
	if g, ok := status(); !ok || !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	lines := bytes.SplitAfter(input, []byte{'\n'})
	for _, line := range lines {
		if !bytes.HasSuffix(line, []byte{'\n'}) {
			break // a partial last line gets no answer
		}
		st, ok := status()
		if !ok {
			break // the session ended (QUIT, limits)
		}
		if len(line) > cfg.MaxLineBytes {
			if !strings.HasPrefix(st, "-ERR line too long") {
				t.Fatalf("too long line answered %q", st)
			}
			continue
		}
		if strings.HasPrefix(st, "+OK") && isMultiline(line) {
			for {
				l, ok := readLine()
				if !ok {
					t.Fatalf("multi-line response to %q not terminated", line)
				}
				if l == "." {
					break
				}
			}
		}
	}
	if rest, _ := io.ReadAll(out); len(rest) > 0 {
		t.Fatalf("unsolicited output %q", rest)
	}
}

// isMultiline says whether a successful response to line has a body
// (RFC 1939 §§5-7, RFC 2449 §5).
func isMultiline(line []byte) bool {
	cmd, args, err := parseCommand(line)
	if err != nil {
		return false
	}
	switch cmd {
	case cmdCAPA, cmdRETR, cmdTOP:
		return true
	case cmdLIST, cmdUIDL:
		return len(args) == 0
	}
	return false
}
