package pop3

import (
	"bytes"
	"errors"
)

// Command keywords. RFC 1939 §3: keywords are case-insensitive, three or
// four characters long; parseCommand returns them upper-cased.
const (
	cmdUSER = "USER"
	cmdPASS = "PASS"
	cmdQUIT = "QUIT"
	cmdCAPA = "CAPA" // RFC 2449 §5
	cmdSTLS = "STLS" // RFC 2595 §4
	cmdSTAT = "STAT"
	cmdLIST = "LIST"
	cmdUIDL = "UIDL"
	cmdRETR = "RETR"
	cmdTOP  = "TOP"
	cmdDELE = "DELE"
	cmdRSET = "RSET"
	cmdNOOP = "NOOP"
)

// maxArgs bounds the arguments parseCommand accepts; no POP3 command takes
// more than two (TOP msg n).
const maxArgs = 4

// maxNumberDigits bounds numeric arguments so they fit an int on every
// platform: 999,999,999 messages or lines is far beyond any limit.
const maxNumberDigits = 9

// Parse errors. They are answered with a single "-ERR" line and count as bad
// commands; they never end the session by themselves.
var (
	errEmptyCommand   = errors.New("pop3: empty command")
	errBadCharacter   = errors.New("pop3: control character in command")
	errBadKeyword     = errors.New("pop3: malformed command keyword")
	errTooManyArgs    = errors.New("pop3: too many arguments")
	errMissingPassArg = errors.New("pop3: PASS needs an argument")
)

// parseCommand splits one command line into its upper-cased keyword and its
// arguments. line may end in CRLF or a bare LF; both are removed.
//
// RFC 1939 §3: "Commands consist of a case-insensitive keyword, possibly
// followed by one or more arguments. [...] Keywords and arguments consist
// of printable ASCII characters. Keywords and arguments are each separated
// by a single SPACE character." We accept runs of spaces and trailing
// spaces (common client sloppiness), and octets above 0x7E in arguments
// (UTF-8 user names and passwords), but no control characters.
//
// RFC 1939 §7 (PASS): "Since the PASS command has exactly one argument, a
// POP3 server may treat spaces in the argument as part of the password,
// instead of as argument separators." We do: everything after "PASS " is
// the password, verbatim.
//
// parseCommand is pure and never panics; FuzzParseCommand checks that.
func parseCommand(line []byte) (cmd string, args []string, err error) {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	line = bytes.TrimSuffix(line, []byte{'\r'})
	for _, c := range line {
		if c < 0x20 || c == 0x7f {
			return "", nil, errBadCharacter
		}
	}
	if len(bytes.TrimLeft(line, " ")) == 0 {
		return "", nil, errEmptyCommand
	}
	kw, rest, _ := bytes.Cut(line, []byte{' '})
	cmd, ok := keyword(kw)
	if !ok {
		return "", nil, errBadKeyword
	}
	if cmd == cmdPASS {
		if len(rest) == 0 {
			return "", nil, errMissingPassArg
		}
		return cmd, []string{string(rest)}, nil
	}
	for {
		rest = bytes.TrimLeft(rest, " ")
		if len(rest) == 0 {
			return cmd, args, nil
		}
		if len(args) == maxArgs {
			return "", nil, errTooManyArgs
		}
		var arg []byte
		arg, rest, _ = bytes.Cut(rest, []byte{' '})
		args = append(args, string(arg))
	}
}

// keyword upper-cases a command keyword of 3 or 4 ASCII letters. Known
// keywords are returned as their constant, so the hot path (RETR in a loop)
// allocates nothing for them.
func keyword(b []byte) (string, bool) {
	if len(b) < 3 || len(b) > 4 {
		return "", false
	}
	var up [4]byte
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			up[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z':
			up[i] = c
		default:
			return "", false
		}
	}
	s := up[:len(b)]
	for _, k := range [...]string{cmdRETR, cmdDELE, cmdLIST, cmdUIDL, cmdSTAT, cmdTOP, cmdNOOP, cmdRSET,
		cmdQUIT, cmdUSER, cmdPASS, cmdCAPA, cmdSTLS} {
		if string(s) == k {
			return k, true
		}
	}
	return string(s), true
}

// parseNumber parses a non-negative decimal argument: digits only, no sign,
// no spaces, at most maxNumberDigits digits. RFC 1939 §7 message numbers
// and TOP's line count are plain decimal numbers.
func parseNumber(s string) (int, bool) {
	if len(s) == 0 || len(s) > maxNumberDigits {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
