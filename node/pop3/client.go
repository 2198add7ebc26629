package pop3

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Error is a "-ERR" response. Code is its RFC 2449 §8 response code
// ("AUTH", "IN-USE", "SYS/TEMP", ...), empty if it has none.
type Error struct {
	Code string
	Text string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return "pop3: -ERR " + e.Text
	}
	return "pop3: -ERR [" + e.Code + "] " + e.Text
}

// ErrorCode returns the response code of a *Error in err's chain, or "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ErrProtocol is wrapped by errors about malformed server responses. After
// it, or any I/O error, the Client is unusable: Close it.
var ErrProtocol = errors.New("pop3: protocol error")

// Listing is one line of a LIST response.
type Listing struct {
	Num  int
	Size int64
}

// UID is one line of a UIDL response.
type UID struct {
	Num int
	ID  string
}

// Client limits.
const (
	clientBufferBytes    = 32 << 10 // one read and one write buffer
	maxStatusLineBytes   = 4 << 10  // RFC 2449 §4 allows 512; be generous
	maxRetrPreallocBytes = 64 << 20 // never trust a server's size beyond this
)

// Client is a POP3 client over one connection. It is not safe for
// concurrent use. It keeps one buffered reader and writer and allocates only
// the results it returns.
type Client struct {
	conn     net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	greeting string
	timeout  time.Duration
	line     []byte // scratch command line
}

// NewClient reads the server's greeting from conn. On error conn is left
// open for the caller to close.
func NewClient(conn net.Conn) (*Client, error) {
	c := &Client{
		conn: conn,
		br:   bufio.NewReaderSize(conn, clientBufferBytes),
		bw:   bufio.NewWriterSize(conn, clientBufferBytes),
		line: make([]byte, 0, 64),
	}
	text, err := c.status()
	if err != nil {
		return nil, err
	}
	c.greeting = text
	return c, nil
}

// Greeting is the text of the server's "+OK" greeting.
func (c *Client) Greeting() string { return c.greeting }

// SetTimeout bounds each later command, from sending it to reading the end of
// its response. Zero (the default) means no deadline.
func (c *Client) SetTimeout(d time.Duration) { c.timeout = d }

// Capa returns the capability lines (RFC 2449 §5), e.g. "TOP", "STLS",
// "IMPLEMENTATION mailarray".
func (c *Client) Capa() ([]string, error) {
	if _, err := c.cmd("CAPA", "", ""); err != nil {
		return nil, err
	}
	var caps []string
	err := c.readMultiline(func(line []byte) error {
		caps = append(caps, string(trimEOL(line)))
		return nil
	})
	return caps, err
}

// StartTLS issues STLS (RFC 2595 §4) and runs the TLS handshake with cfg.
// The server forgets the previous CAPA; call Capa again if needed.
func (c *Client) StartTLS(cfg *tls.Config) error {
	if _, err := c.cmd("STLS", "", ""); err != nil {
		return err
	}
	if c.br.Buffered() > 0 {
		return fmt.Errorf("%w: data after STLS response", ErrProtocol)
	}
	tc := tls.Client(c.conn, cfg)
	if c.timeout > 0 {
		_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	}
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("pop3: tls handshake: %w", err)
	}
	c.conn = tc
	c.br.Reset(tc)
	c.bw.Reset(tc)
	return nil
}

// Login authenticates with USER and PASS (RFC 1939 §7). A refusal is an
// *Error whose Code tells why: "AUTH", "IN-USE", "SYS/TEMP".
func (c *Client) Login(user, pass string) error {
	if _, err := c.cmd("USER", user, ""); err != nil {
		return err
	}
	_, err := c.cmd("PASS", pass, "")
	return err
}

// Stat returns the number of messages and their total size (RFC 1939 §5).
func (c *Client) Stat() (count int, size int64, err error) {
	text, err := c.cmd("STAT", "", "")
	if err != nil {
		return 0, 0, err
	}
	n, sz, ok := twoNumbers(text)
	if !ok {
		return 0, 0, fmt.Errorf("%w: STAT response %q", ErrProtocol, text)
	}
	return int(n), sz, nil
}

// List returns every undeleted message's number and size.
func (c *Client) List() ([]Listing, error) {
	if _, err := c.cmd("LIST", "", ""); err != nil {
		return nil, err
	}
	var out []Listing
	err := c.readMultiline(func(line []byte) error {
		n, sz, ok := twoNumbers(string(trimEOL(line)))
		if !ok {
			return fmt.Errorf("%w: LIST line %q", ErrProtocol, line)
		}
		out = append(out, Listing{Num: int(n), Size: sz})
		return nil
	})
	return out, err
}

// ListOne returns message n's size.
func (c *Client) ListOne(n int) (Listing, error) {
	text, err := c.cmd("LIST", strconv.Itoa(n), "")
	if err != nil {
		return Listing{}, err
	}
	num, sz, ok := twoNumbers(text)
	if !ok {
		return Listing{}, fmt.Errorf("%w: LIST response %q", ErrProtocol, text)
	}
	return Listing{Num: int(num), Size: sz}, nil
}

// Uidl returns every undeleted message's number and unique id.
func (c *Client) Uidl() ([]UID, error) {
	if _, err := c.cmd("UIDL", "", ""); err != nil {
		return nil, err
	}
	var out []UID
	err := c.readMultiline(func(line []byte) error {
		u, ok := parseUID(string(trimEOL(line)))
		if !ok {
			return fmt.Errorf("%w: UIDL line %q", ErrProtocol, line)
		}
		out = append(out, u)
		return nil
	})
	return out, err
}

// UidlOne returns message n's unique id.
func (c *Client) UidlOne(n int) (UID, error) {
	text, err := c.cmd("UIDL", strconv.Itoa(n), "")
	if err != nil {
		return UID{}, err
	}
	u, ok := parseUID(text)
	if !ok {
		return UID{}, fmt.Errorf("%w: UIDL response %q", ErrProtocol, text)
	}
	return u, nil
}

// Retr returns message n, dot-stuffing removed, line ends as sent (CRLF).
func (c *Client) Retr(n int) ([]byte, error) {
	text, err := c.cmd("RETR", strconv.Itoa(n), "")
	if err != nil {
		return nil, err
	}
	// "+OK 4096 octets": size the buffer once.
	var buf []byte
	if f, _, _ := strings.Cut(text, " "); f != "" {
		if sz, err := strconv.ParseInt(f, 10, 64); err == nil && sz > 0 {
			buf = make([]byte, 0, min(sz, maxRetrPreallocBytes))
		}
	}
	err = c.readMultiline(func(line []byte) error {
		buf = append(buf, line...)
		return nil
	})
	return buf, err
}

// RetrTo streams message n into w, dot-stuffing removed, and returns the
// octets written.
func (c *Client) RetrTo(n int, w io.Writer) (int64, error) {
	if _, err := c.cmd("RETR", strconv.Itoa(n), ""); err != nil {
		return 0, err
	}
	var written int64
	var werr error
	err := c.readMultiline(func(line []byte) error {
		if werr != nil {
			return nil // drain the response, keep the session usable
		}
		k, err := w.Write(line)
		written += int64(k)
		werr = err
		return nil
	})
	if err != nil {
		return written, err
	}
	return written, werr
}

// Top returns the headers and the first lines lines of message n's body.
func (c *Client) Top(n, lines int) ([]byte, error) {
	if _, err := c.cmd("TOP", strconv.Itoa(n), strconv.Itoa(lines)); err != nil {
		return nil, err
	}
	var buf []byte
	err := c.readMultiline(func(line []byte) error {
		buf = append(buf, line...)
		return nil
	})
	return buf, err
}

// Dele marks message n deleted.
func (c *Client) Dele(n int) error {
	_, err := c.cmd("DELE", strconv.Itoa(n), "")
	return err
}

// Rset unmarks every deleted message.
func (c *Client) Rset() error {
	_, err := c.cmd("RSET", "", "")
	return err
}

// Noop does nothing but keep the session alive.
func (c *Client) Noop() error {
	_, err := c.cmd("NOOP", "", "")
	return err
}

// Quit ends the session; in the TRANSACTION state the server then removes
// the deleted messages, and an *Error (code "SYS/TEMP") says it could not.
// The connection is closed in any case.
func (c *Client) Quit() error {
	_, err := c.cmd("QUIT", "", "")
	if cerr := c.conn.Close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	return err
}

// Close closes the connection without QUIT: the server enters no UPDATE
// state, so nothing is deleted.
func (c *Client) Close() error {
	return c.conn.Close()
}

// cmd sends a command with up to two arguments and reads its status line. It
// returns the text after "+OK ", or an *Error for "-ERR".
func (c *Client) cmd(name, arg1, arg2 string) (string, error) {
	if strings.ContainsAny(arg1, "\r\n") || strings.ContainsAny(arg2, "\r\n") {
		return "", fmt.Errorf("pop3: %s: argument contains CR or LF", name)
	}
	if c.timeout > 0 {
		if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
			return "", fmt.Errorf("pop3: %s: %w", name, err)
		}
	}
	l := append(c.line[:0], name...)
	if arg1 != "" {
		l = append(append(l, ' '), arg1...)
	}
	if arg2 != "" {
		l = append(append(l, ' '), arg2...)
	}
	l = append(l, '\r', '\n')
	c.line = l
	if _, err := c.bw.Write(l); err != nil {
		return "", fmt.Errorf("pop3: %s: %w", name, err)
	}
	if err := c.bw.Flush(); err != nil {
		return "", fmt.Errorf("pop3: %s: %w", name, err)
	}
	return c.status()
}

// status reads one status line: "+OK text" or "-ERR [CODE] text".
func (c *Client) status() (string, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", fmt.Errorf("%w: status line too long", ErrProtocol)
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return "", fmt.Errorf("pop3: read response: %w", err)
	}
	if len(line) > maxStatusLineBytes {
		return "", fmt.Errorf("%w: status line too long", ErrProtocol)
	}
	l := trimEOL(line)
	switch {
	case bytes.Equal(l, []byte("+OK")):
		return "", nil
	case bytes.HasPrefix(l, []byte("+OK ")):
		return string(l[4:]), nil
	case bytes.Equal(l, []byte("-ERR")):
		return "", &Error{}
	case bytes.HasPrefix(l, []byte("-ERR ")):
		return "", parseError(string(l[5:]))
	}
	return "", fmt.Errorf("%w: bad status line %q", ErrProtocol, l)
}

// parseError splits "[CODE] text" (RFC 2449 §8).
func parseError(s string) *Error {
	if strings.HasPrefix(s, "[") {
		if code, text, ok := strings.Cut(s[1:], "]"); ok {
			return &Error{Code: code, Text: strings.TrimPrefix(text, " ")}
		}
	}
	return &Error{Text: s}
}

// readMultiline reads the body of a multi-line response (RFC 1939 §3) up to
// its "." line, calling fn with each chunk, dot-stuffing removed and line end
// kept. A line longer than the buffer comes in several chunks. fn must not
// keep the slice. After an error
// from fn the rest of the response is still consumed.
func (c *Client) readMultiline(fn func(chunk []byte) error) error {
	bol := true
	var fnErr error
	for {
		line, err := c.br.ReadSlice('\n')
		full := errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !full {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("pop3: read response: %w", err)
		}
		if bol && len(line) > 0 && line[0] == '.' {
			if !full && (len(line) == 2 || (len(line) == 3 && line[1] == '\r')) {
				return fnErr // ".\r\n" (or a lenient ".\n") ends the response
			}
			line = line[1:]
		}
		if fnErr == nil {
			fnErr = fn(line)
		}
		bol = !full
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	return bytes.TrimSuffix(b, []byte{'\r'})
}

// twoNumbers parses "n m" (STAT, LIST lines), ignoring anything after m.
func twoNumbers(s string) (int64, int64, bool) {
	a, rest, ok := strings.Cut(s, " ")
	if !ok {
		return 0, 0, false
	}
	b, _, _ := strings.Cut(rest, " ")
	x, err1 := strconv.ParseInt(a, 10, 64)
	y, err2 := strconv.ParseInt(b, 10, 64)
	return x, y, err1 == nil && err2 == nil && x >= 0 && y >= 0
}

func parseUID(s string) (UID, bool) {
	a, id, ok := strings.Cut(s, " ")
	if !ok || id == "" {
		return UID{}, false
	}
	n, err := strconv.Atoi(a)
	if err != nil || n < 1 {
		return UID{}, false
	}
	return UID{Num: n, ID: id}, true
}
