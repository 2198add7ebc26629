package sim

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tcpPair is a connected loopback TCP pair (buffered, unlike net.Pipe:
// a server answer nobody reads does not block the server).
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	server = <-acc
	require.NotNil(t, server)
	return client, server
}

// scriptedPOP3 answers one session on conn: +OK to everything, a UIDL
// of two messages, and no answer at all to DELE of the second (its
// answer lost); QUIT is answered +OK and ends the session.
func scriptedPOP3(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	w := func(s string) { conn.Write([]byte(s)) }
	w("+OK ready\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.Fields(line)[0])
		switch {
		case cmd == "UIDL":
			w("+OK\r\n1 m1.0\r\n2 m2.0\r\n.\r\n")
		case cmd == "RETR":
			w("+OK\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
		case cmd == "DELE" && strings.Contains(line, "2"):
			// marked, answer lost
		case cmd == "QUIT":
			w("+OK bye\r\n")
			return
		default:
			w("+OK\r\n")
		}
	}
}

// A DELE whose answer is lost leaves the message in doubt: the QUIT that
// follows may remove it (the real-process soak counted one such message
// lost, seed 36); a DELE answered +OK and a QUIT answered +OK is deleted.
func TestReadSessionDeleteInDoubt(t *testing.T) {
	client, server := tcpPair(t)
	go scriptedPOP3(server)
	tally := newReadTally()
	var mu sync.Mutex
	// The timeout only has to expire on the DELE that is never answered.
	tally.readSession(context.Background(), &mu, client, 200*time.Millisecond, "u@example.com", "pw", 5)
	assert.Equal(t, map[string]bool{"m1.0": true}, tally.deleted)
	assert.Equal(t, map[string]bool{"m2.0": true}, tally.maybeDel)
}

// A session cut by its context (the load's end) sends no QUIT, although
// the cut's deadline does not outlast the client's next command: nothing
// is deleted, nothing in doubt.
func TestReadSessionCutSendsNoQuit(t *testing.T) {
	client, server := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	quit := make(chan bool, 1)
	go func() {
		defer server.Close()
		r := bufio.NewReader(server)
		server.Write([]byte("+OK ready\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				quit <- false
				return
			}
			switch strings.ToUpper(strings.Fields(line)[0]) {
			case "UIDL":
				server.Write([]byte("+OK\r\n1 m1.0\r\n.\r\n"))
			case "RETR":
				server.Write([]byte("+OK\r\nSubject: x\r\n\r\nbody\r\n.\r\n"))
			case "DELE":
				cancel() // the load ends while the session runs
				server.Write([]byte("+OK\r\n"))
			case "QUIT":
				quit <- true
				server.Write([]byte("+OK\r\n"))
				return
			default:
				server.Write([]byte("+OK\r\n"))
			}
		}
	}()
	tally := newReadTally()
	var mu sync.Mutex
	tally.readSession(ctx, &mu, client, time.Minute, "u@example.com", "pw", 5)
	client.Close()
	assert.False(t, <-quit, "no QUIT after the cut")
	assert.Empty(t, tally.deleted)
	assert.Empty(t, tally.maybeDel)
}
