package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line     string
		wantCmd  string
		wantArgs []string
		wantErr  error
	}{
		{line: "STAT\r\n", wantCmd: "STAT"},
		{line: "stat\r\n", wantCmd: "STAT"},
		{line: "sTaT", wantCmd: "STAT"},
		{line: "STAT\n", wantCmd: "STAT"},
		{line: "TOP 1 10\r\n", wantCmd: "TOP", wantArgs: []string{"1", "10"}},
		{line: "LIST  2  \r\n", wantCmd: "LIST", wantArgs: []string{"2"}},
		{line: "USER alice@example.com\r\n", wantCmd: "USER", wantArgs: []string{"alice@example.com"}},
		{line: "USER jörg\r\n", wantCmd: "USER", wantArgs: []string{"jörg"}},
		{line: "PASS a b  c \r\n", wantCmd: "PASS", wantArgs: []string{"a b  c "}},
		{line: "pass x\r\n", wantCmd: "PASS", wantArgs: []string{"x"}},
		{line: "XYZ\r\n", wantCmd: "XYZ"},
		{line: "PASS\r\n", wantErr: errMissingPassArg},
		{line: "PASS \r\n", wantErr: errMissingPassArg},
		{line: "\r\n", wantErr: errEmptyCommand},
		{line: "", wantErr: errEmptyCommand},
		{line: "   \r\n", wantErr: errEmptyCommand},
		{line: " STAT\r\n", wantErr: errBadKeyword},
		{line: "ST\r\n", wantErr: errBadKeyword},
		{line: "STATS\r\n", wantErr: errBadKeyword},
		{line: "ST4T\r\n", wantErr: errBadKeyword},
		{line: "STAT\x00\r\n", wantErr: errBadCharacter},
		{line: "STAT\r\r\n", wantErr: errBadCharacter},
		{line: "PASS a\tb\r\n", wantErr: errBadCharacter},
		{line: "PASS a\x7fb\r\n", wantErr: errBadCharacter},
		{line: "TOP 1 2 3 4\r\n", wantCmd: "TOP", wantArgs: []string{"1", "2", "3", "4"}},
		{line: "TOP 1 2 3 4 5\r\n", wantErr: errTooManyArgs},
	} {
		cmd, args, err := parseCommand([]byte(tc.line))
		if tc.wantErr != nil {
			assert.ErrorIs(t, err, tc.wantErr, "line %q", tc.line)
			continue
		}
		require.NoError(t, err, "line %q", tc.line)
		assert.Equal(t, tc.wantCmd, cmd, "line %q", tc.line)
		assert.Equal(t, tc.wantArgs, args, "line %q", tc.line)
	}
}

func TestParseCommandKnownKeywordsDoNotAllocate(t *testing.T) {
	line := []byte("retr\r\n")
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := parseCommand(line); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

func TestParseNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"007", 7, true},
		{"999999999", 999999999, true},
		{"1000000000", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1.0", 0, false},
		{"1e3", 0, false},
		{"١", 0, false}, // Arabic-Indic digit one
	} {
		got, ok := parseNumber(tc.in)
		assert.Equal(t, tc.ok, ok, "%q", tc.in)
		assert.Equal(t, tc.want, got, "%q", tc.in)
	}
}

func TestDotWriter(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		top  int // -1: RETR
		want string
	}{
		{"empty", "", -1, ".\r\n"},
		{"one line", "a\r\n", -1, "a\r\n.\r\n"},
		{"no final CRLF", "a", -1, "a\r\n.\r\n"},
		{"dot line", ".\r\n", -1, "..\r\n.\r\n"},
		{"dots", "x\r\n.\r\n..\r\n.foo\r\nend\r\n", -1, "x\r\n..\r\n...\r\n..foo\r\nend\r\n.\r\n"},
		{"dot without CRLF at end", "x\r\n.", -1, "x\r\n..\r\n.\r\n"},
		{"dot mid-line untouched", "a.b\r\n a\r\n", -1, "a.b\r\n a\r\n.\r\n"},
		{"bare LF counts as line end", "a\n.b\n", -1, "a\n..b\n.\r\n"},
		{"dot lines back to back", ".\n.\r\n.", -1, "..\n..\r\n..\r\n.\r\n"},
		{"long runs between dot lines", strings.Repeat("abc\r\n", 50) + ".x\r\n" + strings.Repeat("d\r\n", 20), -1,
			strings.Repeat("abc\r\n", 50) + "..x\r\n" + strings.Repeat("d\r\n", 20) + ".\r\n"},
		{"top 0", "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n", 0, "H: 1\r\nH: 2\r\n\r\n.\r\n"},
		{"top 1", "H: 1\r\n\r\nb1\r\nb2\r\n", 1, "H: 1\r\n\r\nb1\r\n.\r\n"},
		{"top past end", "H: 1\r\n\r\nb1\r\nb2\r\n", 9, "H: 1\r\n\r\nb1\r\nb2\r\n.\r\n"},
		{"top no body", "H: 1\r\nH: 2", 0, "H: 1\r\nH: 2\r\n.\r\n"},
		{"top bare LF", "H: 1\n\nb1\nb2\n", 1, "H: 1\n\nb1\n.\r\n"},
		{"top stuffed body", "H\r\n\r\n.x\r\ny\r\n", 1, "H\r\n\r\n..x\r\n.\r\n"},
		{"top empty headers", "\r\nb1\r\n", 0, "\r\n.\r\n"},
		{"top CR inside header", "H: a\rb\r\n\r\nb1\r\n", 0, "H: a\rb\r\n\r\n.\r\n"},
		{"top last body line without CRLF", "H\r\n\r\nb1", 3, "H\r\n\r\nb1\r\n.\r\n"},
	} {
		for _, chunk := range []int{1, 2, 3, 5, 1 << 20} {
			var out bytes.Buffer
			bw := bufio.NewWriter(&out)
			d := dotWriter{w: bw, bol: true, top: tc.top >= 0, bodyLeft: tc.top}
			in := []byte(tc.in)
			for len(in) > 0 {
				n := min(chunk, len(in))
				k, err := d.Write(in[:n])
				if errors.Is(err, errTopDone) {
					break
				}
				require.NoError(t, err)
				require.Equal(t, n, k)
				in = in[n:]
			}
			d.finish()
			require.NoError(t, bw.Flush())
			assert.Equal(t, tc.want, out.String(), "%s, chunks of %d", tc.name, chunk)
			if tc.top < 0 {
				assert.Equal(t, int64(len(tc.in)), d.n, "%s: octets counted", tc.name)
			}
		}
	}
}

func TestClientParsesResponses(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Error
	}{
		{"[IN-USE] locked", Error{Code: "IN-USE", Text: "locked"}},
		{"[SYS/TEMP] try later", Error{Code: "SYS/TEMP", Text: "try later"}},
		{"[AUTH]", Error{Code: "AUTH"}},
		{"no code", Error{Text: "no code"}},
		{"[unterminated", Error{Text: "[unterminated"}},
	} {
		assert.Equal(t, tc.want, *parseError(tc.in), "%q", tc.in)
	}
	assert.Equal(t, "pop3: -ERR [AUTH] bad", (&Error{Code: "AUTH", Text: "bad"}).Error())
	assert.Equal(t, "pop3: -ERR bad", (&Error{Text: "bad"}).Error())
	assert.Equal(t, "", ErrorCode(errors.New("x")))

	// Multi-line reading: unstuffing, long lines split across the buffer,
	// lenient ".\n" terminator.
	long := strings.Repeat("y", 3*clientBufferBytes)
	server := "+OK hi\r\n" +
		"+OK\r\n..a\r\n" + "." + long + "\r\n" + "b\r\n.\r\n" +
		"+OK\r\nx\n.\n" +
		"garbage\r\n"
	c, err := NewClient(&pipeConn{in: bytes.NewReader([]byte(server))})
	require.NoError(t, err)
	assert.Equal(t, "hi", c.Greeting())
	got, err := c.Retr(1)
	require.NoError(t, err)
	assert.Equal(t, ".a\r\n"+long+"\r\nb\r\n", string(got))
	got, err = c.Top(1, 0)
	require.NoError(t, err)
	assert.Equal(t, "x\n", string(got))
	assert.ErrorIs(t, c.Noop(), ErrProtocol)
	assert.ErrorContains(t, c.Login("a\r\nQUIT", "x"), "CR or LF")

	_, err = NewClient(&pipeConn{in: bytes.NewReader([]byte("+OK trunc"))})
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}
