package sim

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// The SMTP side of a load sender, shared by the simulated senders
// (loadgen.go) and the real-socket ones (real_load.go), so that both send
// the same dialogue and the same bytes.

// greet starts an SMTP session on conn: the greeting and EHLO as name. The
// returned stop cuts the session when ctx ends (cancelling the load); on
// error conn is closed.
func greet(ctx context.Context, conn net.Conn, timeout time.Duration, name string) (*smtp.Client, func() bool, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	c := smtp.NewClient(conn)
	c.CommandTimeout, c.SubmissionTimeout = timeout, timeout
	if err := c.Hello(name + ".load.test"); err != nil {
		stop()
		c.Close()
		return nil, nil, err
	}
	return c, stop, nil
}

// transact sends rec on c and calls done with its outcome, as soon as it
// is known (before any RSET, so its time is the reply's). It reports
// whether the connection may carry another transaction.
func transact(c *smtp.Client, rec *Record, seed uint64, filler []byte, done func(o Outcome, code int, reason, id string)) bool {
	err := c.Mail(senderFrom, nil)
	if err == nil {
		err = c.Rcpt(rec.Mailbox, nil)
	}
	var resp *smtp.DataResponse
	if err == nil {
		var dc *smtp.DataCommand
		if dc, err = c.Data(); err == nil {
			if err = writeLoadBody(dc, rec, seed, filler); err == nil {
				resp, err = dc.CloseWithResponse()
			} else {
				dc.Close()
			}
		}
	}
	if err != nil {
		code, reason := classify(err)
		if code != 0 {
			done(Rejected, code, "", "")
			// A rejected transaction leaves the session usable, except
			// after 421 (the server is closing).
			if code == 421 {
				return false
			}
			return c.Reset() == nil
		}
		done(Failed, 0, reason, "")
		return false
	}
	done(Accepted, 250, "", queuedID(resp.StatusText))
	return true
}

// queuedID extracts the transaction id of "Ok: queued as ID".
func queuedID(text string) string {
	const marker = "queued as "
	if i := strings.LastIndex(text, marker); i >= 0 {
		return strings.TrimSpace(text[i+len(marker):])
	}
	return text
}

// writeLoadBody writes rec's message: headers naming it (the run's seed in
// the Message-ID), then filler lines up to its size.
func writeLoadBody(w io.Writer, rec *Record, seed uint64, filler []byte) error {
	var hb strings.Builder
	hb.Grow(256)
	hb.WriteString("From: <" + senderFrom + ">\r\nTo: <" + rec.Mailbox + ">\r\nSubject: load message ")
	hb.WriteString(strconv.Itoa(rec.Seq))
	hb.WriteString("\r\nMessage-ID: <" + strconv.Itoa(rec.Seq) + "." + strconv.FormatUint(seed, 10) + "@load.test>\r\n")
	if rec.Urgent {
		hb.WriteString("Priority: urgent\r\n")
	}
	hb.WriteString("\r\n")
	h := hb.String()
	if _, err := io.WriteString(w, h); err != nil {
		return err
	}
	n := rec.Size - len(h)
	if n < 2 {
		return nil
	}
	// A prefix of whole and partial lines, ending with CRLF.
	if _, err := w.Write(filler[:n-2]); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\r\n")
	return err
}
