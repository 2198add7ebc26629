package main

import (
	"fmt"
	"net"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInternationalMailbox (issue 19 item 1, without Postfix): a node whose
// users file names a mailbox with a UTF-8 local part at an IDN domain in
// U-labels, and whose --domain gives it in A-labels, takes mail for it in
// SMTPUTF8 whatever form the recipient is written in, and serves it to a
// POP3 login in U-labels and an IMAP login in A-labels (curl).
func TestInternationalMailbox(t *testing.T) {
	t.Parallel()
	curl := needTool(t, "curl")
	dir := t.TempDir()
	users := writeUsers(t, dir, "jörg@"+idnDomainU+":{PLAIN}geheim")
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: users, extra: []string{"--imap", "127.0.0.1:0", "--domain", idnDomainA}})
	require.Eventually(t, p.ready, startTimeout, 20*time.Millisecond, "the node is ready")

	body := "From: José <josé@sender.test>\r\nTo: jörg@" + idnDomainU + "\r\nSubject: Grüße\r\n\r\nÄpfel und Birnen.\r\n"
	for i, rcpt := range []string{"jörg@" + idnDomainU, "Jörg@" + idnDomainA, "jo\u0308rg@BÜCHER.example"} {
		conn, err := net.DialTimeout("tcp", p.addrs["smtp"], ioTimeout)
		require.NoError(t, err)
		conn.SetDeadline(time.Now().Add(ioTimeout))
		cl := gosmtp.NewClient(conn)
		require.NoError(t, cl.Hello("client.test"))
		ok, _ := cl.Extension("SMTPUTF8")
		require.True(t, ok, "SMTPUTF8 offered")
		require.NoError(t, cl.Mail("josé@sender.test", &gosmtp.MailOptions{UTF8: true}))
		require.NoError(t, cl.Rcpt(rcpt, nil), "RCPT TO:<%s>", rcpt)
		wc, err := cl.Data()
		require.NoError(t, err)
		_, err = fmt.Fprintf(wc, "Message-ID: <%d@sender.test>\r\n%s", i, body)
		require.NoError(t, err)
		require.NoError(t, wc.Close())
		require.NoError(t, cl.Quit())
	}

	list := string(curlOut(t, curl, "-u", "jörg@"+idnDomainU+":geheim", "pop3://"+p.addrs["pop3"]+"/"))
	assert.Regexp(t, `^1 \d+\r\n2 \d+\r\n3 \d+\r\n$`, list, "POP3 login with the UTF-8 user name in U-labels")
	for uid := 1; uid <= 3; uid++ {
		got := string(curlOut(t, curl, "-u", "jörg@"+idnDomainA+":geheim", fmt.Sprintf("imap://%s/INBOX;UID=%d", p.addrs["imap"], uid)))
		assert.Contains(t, got, "with UTF8SMTP id ")
		assert.Contains(t, got, "\r\n\tfor <jörg@"+idnDomainA+">; ", "one mailbox, in normal form")
		assert.Contains(t, got, fmt.Sprintf("Message-ID: <%d@sender.test>\r\n%s", uid-1, body), "IMAP login with the A-label form; the message as sent")
	}
}
