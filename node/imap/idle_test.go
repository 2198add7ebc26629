package imap

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIdleEndedWithoutDone(t *testing.T) {
	// imapserver waits for Idle to return only when the client says DONE.
	// A client that ends IDLE with another line, or drops the connection,
	// gets its next command (or the Poll after IDLE) run while Idle is
	// still refreshing the view: here Idle is held in a UID assignment
	// (another node holds the lease) when that happens. The view must come
	// out whole (go test -race also watches the two goroutines).
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprintf("drop=%v", drop), func(t *testing.T) {
			ts := startServer(t, testConfig())
			b := ts.backend
			b.deliver(t, alice, testMessage("before"))
			r := ts.raw(t)
			r.send("a1 LOGIN " + alice + " " + alicePass)
			r.until("a1 OK")
			r.send("a2 SELECT INBOX")
			r.until("a2 OK")

			hold := make(chan struct{})
			b.mu.Lock()
			b.hold = hold
			b.mu.Unlock()
			r.send("a3 IDLE")
			r.until("+ ")
			b.deliver(t, alice, testMessage("during"))
			select {
			case <-b.assigning:
			case <-time.After(ioTimeout):
				t.Fatal("the idling session never asked for UIDs")
			}
			if drop {
				require.NoError(t, r.c.Close())
				close(hold)
				require.Eventually(t, func() bool { return ts.srv.SessionCount() == 0 }, ioTimeout, pollTick,
					"the session ends once its Idle is done")
				return
			}
			r.send("not DONE")
			assert.Contains(t, r.until("a3 ")[0], "a3 BAD")
			r.send("a4 NOOP")
			close(hold)
			var exists []string
			for _, l := range r.until("a4 ") {
				if strings.HasSuffix(l, " EXISTS") {
					exists = append(exists, l)
				}
			}
			assert.Equal(t, []string{"* 2 EXISTS"}, exists, "the new message is announced once")
			r.send("a5 UID FETCH 1:* (UID)")
			var fetched []string
			for _, l := range r.until("a5 ") {
				if strings.HasPrefix(l, "* ") && strings.Contains(l, " FETCH ") {
					fetched = append(fetched, l)
				}
			}
			assert.Equal(t, []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)"}, fetched)
		})
	}
}
