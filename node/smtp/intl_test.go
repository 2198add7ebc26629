package smtp

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSMTPUTF8 (RFC 6531): the extension is offered; a UTF-8 sender and
// recipient are accepted with it and refused (553 5.6.7) without it; an
// IDN recipient reaches the backend in one normal form however the client
// spelled it; the UTF-8 header arrives byte for byte.
func TestSMTPUTF8(t *testing.T) {
	b := newBackend()
	b.boxes["jörg@xn--bcher-kva.example"] = true
	b.domains["xn--bcher-kva.example"] = true
	_, addr := start(t, b, Config{})
	d := dial(t, addr)
	d.send("EHLO c.test")
	var caps []string
	for {
		d.c.SetReadDeadline(deadline())
		line, err := d.r.ReadString('\n')
		require.NoError(t, err)
		caps = append(caps, strings.TrimSpace(line[4:]))
		if line[3] == ' ' {
			break
		}
	}
	assert.Contains(t, caps, "SMTPUTF8", "EHLO offers SMTPUTF8: %v", caps)

	d.send("MAIL FROM:<pérez@r.test>")
	d.expect("553 5.6.7")
	d.send("MAIL FROM:<s@r.test>")
	d.expect("250")
	d.send("RCPT TO:<jörg@bücher.example>")
	d.expect("553 5.6.7")
	d.send("RSET")
	d.expect("250")

	d.send("MAIL FROM:<pérez@r.test> SMTPUTF8")
	d.expect("250")
	for _, rcpt := range []string{
		"jörg@bücher.example",
		"jörg@XN--BCHER-KVA.example",
		"jo\u0308rg@xn--bcher-kva.example", // NFD: the same mailbox
		"a@X.TEST",
	} {
		d.send("RCPT TO:<" + rcpt + ">")
		d.expect("250")
	}
	d.send("RCPT TO:<JÖRG@bücher.example>") // Ö is not folded to ö
	d.expect("550 5.1.1")
	d.send("DATA")
	d.expect("354")
	body := "From: José <pérez@r.test>\r\nTo: jörg@bücher.example\r\nSubject: Grüße, 你好\r\n\r\nÄpfel.\r\n"
	d.c.Write([]byte(body + ".\r\n"))
	d.expect("250 2.0.0")
	require.Len(t, b.got, 1)
	m := b.got[0]
	assert.Equal(t, "pérez@r.test", m.From)
	assert.True(t, m.UTF8)
	assert.Equal(t, []string{"jörg@xn--bcher-kva.example", "a@x.test"}, m.To, "one entry per mailbox, in normal form")
	s := string(m.Data)
	assert.Contains(t, s, "with UTF8SMTP id ", "RFC 6531 section 4.3 protocol type")
	assert.True(t, strings.HasSuffix(s, "\r\n"+body), "the message as sent: %q", s)
}

// TestLongLines: lines far past RFC 5321's 1000 octets are accepted and
// stored as sent (Postfix and Exim accept them); a message over the size
// limit is read to its end whatever its lines and refused with 552 5.3.4,
// and the session goes on. On the base commit a 10,000-character line got
// 554, then 500 and a reset.
func TestLongLines(t *testing.T) {
	const maxBytes = 256 << 10
	b := newBackend()
	_, addr := start(t, b, Config{MaxMessageBytes: maxBytes})
	d := dial(t, addr)
	d.send("EHLO c.test")
	d.expect("250")
	for i, n := range []int{999, 5000, 10_000, 200_000} {
		d.send("MAIL FROM:<s@r.test>")
		d.expect("250")
		d.send("RCPT TO:<a@x.test>")
		d.expect("250")
		d.send("DATA")
		d.expect("354")
		body := "Subject: long\r\n\r\n" + strings.Repeat("x", n) + "\r\nend\r\n"
		d.c.Write([]byte(body + ".\r\n"))
		d.expect("250 2.0.0")
		require.Len(t, b.got, i+1)
		assert.True(t, strings.HasSuffix(string(b.got[i].Data), "\r\n"+body), "a %d-character line stored as sent", n)
	}
	tooBig := func(d *dialog, n int) {
		d.send("MAIL FROM:<s@r.test>")
		d.expect("250")
		d.send("RCPT TO:<a@x.test>")
		d.expect("250")
		d.send("DATA")
		d.expect("354")
		// Written while the reply is awaited: the server must read it all.
		errc := make(chan error, 1)
		go func() {
			_, err := d.c.Write([]byte("Subject: too big\r\n\r\n" + strings.Repeat("y", n) + "\r\n.\r\n"))
			errc <- err
		}()
		d.expect("552 5.3.4")
		require.NoError(t, <-errc, "the whole message was read, no reset")
	}
	tooBig(d, maxBytes+1)
	d.send("NOOP")
	d.expect("250")
	d.send("QUIT")
	d.expect("221")

	// A line longer than the size limit plus lineSlackBytes cannot be told
	// from a client that never ends a line: the session ends with 500, but
	// the server reads on until the client is done, so the client gets
	// its replies and an orderly end, not a reset.
	d = dial(t, addr)
	d.send("HELO c.test")
	d.expect("250")
	tooBig(d, maxBytes+lineSlackBytes+1<<20)
	d.expect("500 5.4.0")
	d.c.SetReadDeadline(deadline())
	_, err := d.r.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "an orderly end, not a reset")
}

// TestNotYetIs450: a mailbox the directory may be about to load is refused
// for now, not for good.
func TestNotYetIs450(t *testing.T) {
	b := newBackend()
	_, addr := start(t, b, Config{})
	b.failRcpt = ErrNotYet
	d := dial(t, addr)
	d.send("HELO c.test")
	d.expect("250")
	d.send("MAIL FROM:<s@r.test>")
	d.expect("250")
	d.send("RCPT TO:<new@x.test>")
	d.expect("450 4.1.1")
}
