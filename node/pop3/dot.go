package pop3

import (
	"bufio"
	"bytes"
	"errors"
)

// errTopDone stops the copy of a message once TOP has sent enough lines.
var errTopDone = errors.New("pop3: top lines sent")

// dotWriter writes a message as the body of a multi-line response
// (RFC 1939 §3): every line that starts with "." gets another "." in front.
// finish ends the response with ".\r\n", adding a CRLF first if the message's
// last line lacked one.
//
// A bare LF also counts as a line end for stuffing, so a message with bare
// LFs can never end the response early for a lenient client that splits on
// LF; Maildrop promises CRLF anyway.
//
// In top mode it passes the headers, the blank line that ends them, and
// bodyLeft lines of the body, then returns errTopDone.
type dotWriter struct {
	w    *bufio.Writer
	bol  bool  // at the beginning of a line
	n    int64 // message octets consumed
	werr error // first error writing to w

	top      bool
	inBody   bool
	bodyLeft int
	lineLen  int  // octets of the current line seen so far
	firstCR  bool // the current line starts with CR
}

func (d *dotWriter) Write(p []byte) (int, error) {
	if !d.top {
		return d.writeWhole(p)
	}
	total := len(p)
	for len(p) > 0 {
		if d.top && d.inBody && d.bodyLeft <= 0 {
			return total - len(p), errTopDone
		}
		if d.bol {
			if p[0] == '.' {
				d.writeString(".")
			}
			d.firstCR = p[0] == '\r'
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			d.write(p)
			d.n += int64(len(p))
			d.lineLen += len(p)
			d.bol = false
			break
		}
		d.write(p[:i+1])
		d.n += int64(i + 1)
		if d.top {
			if d.inBody {
				d.bodyLeft--
			} else if content := d.lineLen + i; content == 0 || (content == 1 && d.firstCR) {
				d.inBody = true // the blank line ending the headers
			}
		}
		d.lineLen = 0
		d.bol = true
		p = p[i+1:]
		if d.werr != nil {
			return total - len(p), d.werr
		}
	}
	if d.werr != nil {
		return total, d.werr
	}
	return total, nil
}

// writeWhole is Write for a whole message (RETR): only the lines that
// start with "." need anything done, so it writes the runs between them
// in one piece each, instead of line by line (a 4 KiB message is some 70
// lines: as many buffered writes and scans, a share of a RETR's CPU).
func (d *dotWriter) writeWhole(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if d.bol && p[0] == '.' {
			d.writeString(".")
		}
		// The next line that starts with ".": after an LF, bare or not.
		i := bytes.Index(p, lfDot)
		if i < 0 {
			d.write(p)
			d.n += int64(len(p))
			d.bol = p[len(p)-1] == '\n'
			break
		}
		d.write(p[:i+1])
		d.n += int64(i + 1)
		d.bol = true
		p = p[i+1:]
		if d.werr != nil {
			return total - len(p), d.werr
		}
	}
	if d.werr != nil {
		return total, d.werr
	}
	return total, nil
}

var lfDot = []byte("\n.")

func (d *dotWriter) write(p []byte) {
	if d.werr != nil {
		return
	}
	_, d.werr = d.w.Write(p)
}

func (d *dotWriter) writeString(s string) {
	if d.werr != nil {
		return
	}
	_, d.werr = d.w.WriteString(s)
}

// finish terminates the multi-line response.
func (d *dotWriter) finish() {
	if !d.bol {
		d.writeString("\r\n")
	}
	d.writeString(".\r\n")
}
