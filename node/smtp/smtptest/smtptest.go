// Package smtptest runs SMTP transactions for tests, as a remote MTA
// would: one helper for the tests of the node and of the command that
// deliver through a listener.
package smtptest

import (
	"net"

	gosmtp "github.com/emersion/go-smtp"
)

// Send runs one transaction over conn, an SMTP listener's connection
// (closed on return): HELO client.test, MAIL FROM sender@remote.test, a
// RCPT for each of rcpts, msg as the DATA. It returns the text of the 250
// reply (which names the queue id), or the first refusal.
func Send(conn net.Conn, rcpts []string, msg []byte) (string, error) {
	cl := gosmtp.NewClient(conn)
	defer cl.Close()
	if err := cl.Hello("client.test"); err != nil {
		return "", err
	}
	if err := cl.Mail("sender@remote.test", nil); err != nil {
		return "", err
	}
	for _, r := range rcpts {
		if err := cl.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	wc, err := cl.Data()
	if err != nil {
		return "", err
	}
	if _, err := wc.Write(msg); err != nil {
		return "", err
	}
	resp, err := wc.CloseWithResponse()
	if err != nil {
		return "", err
	}
	cl.Quit()
	return resp.StatusText, nil
}
