package imap

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
	"mailarray/node/tlstest"
)

// countingListener counts the writes of every connection it accepts: the
// syscalls the server makes, under its corkConn.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// startCounted is startServer with the server's writes counted; with
// tlsCfg it serves implicit TLS (ServeTLS).
func startCounted(t *testing.T, cfg Config, tlsCfg *tls.Config) (*testServer, *atomic.Int64) {
	t.Helper()
	b := newMemBackend(t)
	b.addUser(alice, alicePass)
	srv := New(cfg, b)
	b.cat.OnChange(srv.CatalogChanged)
	l, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	writes := &atomic.Int64{}
	cl := countingListener{l, writes}
	served := make(chan error, 1)
	if tlsCfg != nil {
		go func() { served <- srv.ServeTLS(cl, tlsCfg) }()
	} else {
		go func() { served <- srv.Serve(cl) }()
	}
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	return &testServer{srv: srv, addr: l.Addr().String(), backend: b}, writes
}

// fetchMessages is how many messages the FETCH tests read: several
// corkFlushBytes' worth.
const fetchMessages = 40

// deliverBig delivers fetchMessages messages of ~4.5 KiB (each larger than
// imapserver's 4 KiB write buffer) and returns them in order.
func deliverBig(t *testing.T, b *memBackend) [][]byte {
	var sent [][]byte
	for i := range fetchMessages {
		m := []byte(fmt.Sprintf("Subject: m%d\r\n\r\n%s\r\n", i, bytes.Repeat([]byte("0123456789abcdef"), 290)))
		b.deliver(t, alice, m)
		sent = append(sent, m)
	}
	return sent
}

// fetchBodies runs UID FETCH 1:* BODY.PEEK[] and returns the bodies in
// order.
func fetchBodies(t *testing.T, cl *imapclient.Client) [][]byte {
	t.Helper()
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := cl.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	require.NoError(t, err)
	var out [][]byte
	for _, m := range msgs {
		out = append(out, m.FindBodySection(section))
	}
	return out
}

// TestFetchGathersResponsesIntoFewWrites: a FETCH of many messages goes
// out in a few writes of up to corkFlushBytes (cork.go), where imapserver
// alone wrote each response's literal and its end apart (two writes a
// message), and every response arrives whole and in order, over plain
// TCP and over implicit TLS (ServeTLS, whose connections imapserver must
// still see as TLS: RequireTLS takes the LOGIN).
func TestFetchGathersResponsesIntoFewWrites(t *testing.T) {
	cert, _ := tlstest.SelfSigned(t, "imap.test")
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"implicit TLS", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			var tlsCfg *tls.Config
			if tc.tls {
				cfg.RequireTLS = true
				tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			ts, writes := startCounted(t, cfg, tlsCfg)
			sent := deliverBig(t, ts.backend)
			var conn net.Conn = ts.conn(t)
			if tc.tls {
				conn = tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) // the test's own certificate
			}
			cl := imapclient.New(conn, nil)
			t.Cleanup(func() { cl.Close() })
			require.NoError(t, cl.Login(alice, alicePass).Wait(), "LOGIN over TLS with RequireTLS")
			_, err := cl.Select(inbox, &imap.SelectOptions{ReadOnly: true}).Wait()
			require.NoError(t, err)

			before := writes.Load()
			got := fetchBodies(t, cl)
			fetchWrites := writes.Load() - before

			require.Len(t, got, len(sent))
			for i := range sent {
				require.Equal(t, sent[i], got[i], "message %d whole and in order", i)
			}
			total := 0
			for _, m := range sent {
				total += len(m)
			}
			// The gathered responses in writes of corkFlushBytes, the rest
			// at the end, the tagged OK: without corking, 2 a message.
			want := int64(total/corkFlushBytes + 3)
			assert.LessOrEqual(t, fetchWrites, want, "writes for a FETCH of %d messages (%d bytes)", len(sent), total)

			// Other commands are not held back: NOOP's reply comes alone.
			require.NoError(t, cl.Noop().Wait())
		})
	}
}

// TestCorkWriteErrorIsSticky: a client gone when the gathered responses go
// out fails that write and every later one, so the FETCH ends at its next
// response as it did when each response was written at once.
func TestCorkWriteErrorIsSticky(t *testing.T) {
	server, client := net.Pipe()
	c := &corkConn{Conn: server}
	c.cork()
	_, err := c.Write([]byte("* 1 FETCH (UID 1)\r\n"))
	require.NoError(t, err, "gathered, not written yet")
	require.NoError(t, client.Close())
	assert.Error(t, c.flush(), "the gathered bytes meet the closed peer")
	_, err = c.Write([]byte("x"))
	assert.Error(t, err, "sticky")
	assert.Error(t, c.uncork())
}

// TestCorkedWritesFlushAtTheThreshold: gathered bytes go out as soon as
// they reach corkFlushBytes, under a deadline the write arms itself: the
// deadlines imapserver sets while corked (an expired one here) are not
// the ones gathered writes run under.
func TestCorkedWritesFlushAtTheThreshold(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	c := &corkConn{Conn: server}
	c.cork()
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(-time.Second)), "dropped while corked")
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 2*corkFlushBytes)
		n := 0
		for n < corkFlushBytes {
			k, err := client.Read(buf[n:])
			if err != nil {
				break
			}
			n += k
		}
		got <- n
	}()
	_, err := c.Write(make([]byte, corkFlushBytes-1))
	require.NoError(t, err)
	_, err = c.Write([]byte{1}) // reaches the threshold: written now, under a deadline of its own
	require.NoError(t, err, "the expired deadline set while corked did not apply")
	assert.Equal(t, corkFlushBytes, <-got)
	require.NoError(t, c.uncork())
}

// TestCorkedLargeWriteGoesOutWithWhatWasGathered: a write of
// corkFlushBytes or more (a large message's literal) goes out at once,
// after the bytes gathered before it and in order, without growing the
// buffer to its size; gathering resumes after it.
func TestCorkedLargeWriteGoesOutWithWhatWasGathered(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	c := &corkConn{Conn: server}
	c.cork()
	literal := bytes.Repeat([]byte("0123456789abcdef"), 4*corkFlushBytes/16) // past the buffer's capacity
	head := fmt.Appendf(nil, "* 1 FETCH (UID 1 BODY[] {%d}\r\n", len(literal))
	tail := []byte(")\r\n")
	want := append(append(append([]byte{}, head...), literal...), tail...)
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, len(want))
		n := 0
		for n < len(buf) {
			k, err := client.Read(buf[n:])
			if err != nil {
				break
			}
			n += k
		}
		got <- buf[:n]
	}()
	_, err := c.Write(head)
	require.NoError(t, err)
	_, err = c.Write(literal) // written now, after head
	require.NoError(t, err)
	assert.Less(t, cap(c.buf), len(literal), "the literal was not copied into the buffer")
	_, err = c.Write(tail)
	require.NoError(t, err)
	assert.Equal(t, tail, c.buf, "gathering again")
	require.NoError(t, c.uncork())
	assert.Equal(t, want, <-got)
}

// TestCorkBufferIsPooledAndNeverGrows: a corked connection gathers in a
// pooled buffer of twice corkFlushBytes, which writes under corkFlushBytes
// never grow (each fills it at most to that), and gives it back when it
// uncorks: an idle session holds none.
func TestCorkBufferIsPooledAndNeverGrows(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	read := make(chan int, 1)
	go func() {
		n, buf := 0, make([]byte, 32<<10)
		for {
			k, err := client.Read(buf)
			n += k
			if err != nil {
				read <- n
				return
			}
		}
	}()
	c := &corkConn{Conn: server}
	c.cork()
	require.Equal(t, 2*corkFlushBytes, cap(c.buf), "a pooled buffer")
	first := unsafe.SliceData(c.buf[:1])
	chunk := bytes.Repeat([]byte("x"), corkFlushBytes-1) // the largest write gathered
	total := 0
	for range 5 {
		_, err := c.Write(chunk)
		require.NoError(t, err)
		total += len(chunk)
		assert.Equal(t, first, unsafe.SliceData(c.buf[:1]), "the buffer never grew")
	}
	require.NoError(t, c.uncork())
	assert.Nil(t, c.buf, "given back when uncorked")
	server.Close()
	assert.Equal(t, total, <-read, "every byte sent")
}
