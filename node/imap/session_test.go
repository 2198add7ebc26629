package imap

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fetchAll(t testing.TB, cl *imapclient.Client, items *imap.FetchOptions) []*imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := cl.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, items).Collect() // UID FETCH 1:*
	require.NoError(t, err)
	return msgs
}

func TestLoginAndMailboxes(t *testing.T) {
	ts := startServer(t, testConfig())
	cl := ts.client(t, nil)
	for range maxFailedLogins {
		assert.Error(t, cl.Login(alice, "wrong").Wait(), "a wrong password is refused")
	}
	assert.Error(t, cl.Login(alice, alicePass).Wait(), "after too many failures even the right password is refused on this connection")

	cl = ts.login(t)
	list, err := cl.List("", "*", nil).Collect()
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "INBOX", list[0].Mailbox)
	for _, cmd := range []error{
		cl.Create("Sent", nil).Wait(),
		cl.Delete("INBOX").Wait(),
		cl.Rename("INBOX", "Old", nil).Wait(),
	} {
		assert.ErrorContains(t, cmd, "only INBOX", "one mailbox: a clear NO")
	}
	_, err = cl.Select("Sent", nil).Wait()
	assert.Error(t, err)
	st, err := cl.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDValidity: true, UIDNext: true}).Wait()
	require.NoError(t, err)
	assert.Equal(t, uint32(0), *st.NumMessages)
	assert.Equal(t, UIDValidity(alice), st.UIDValidity)
	assert.Equal(t, imap.UID(1), st.UIDNext)

	// An empty mailbox: FETCH 1:* names nothing, new mail shows on NOOP.
	_, err = cl.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	assert.Empty(t, fetchAll(t, cl, &imap.FetchOptions{UID: true}))
	for i := range 2 {
		ts.backend.deliver(t, alice, testMessage(fmt.Sprintf("search %d", i)))
	}
	require.NoError(t, cl.Noop().Wait())
	assert.Equal(t, uint32(2), cl.Mailbox().NumMessages)
	res, err := cl.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "SEARCH 1"}}}, nil).Wait()
	require.NoError(t, err)
	assert.Equal(t, []imap.UID{2}, res.AllUIDs())
	res, err = cl.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	require.NoError(t, err)
	assert.Equal(t, []uint32{1, 2}, res.AllSeqNums())
}

func TestByeRefusesNewSessions(t *testing.T) {
	// The node's Shutdown says BYE to the sessions, then flushes and
	// leaves before it closes the listeners: a client connecting meanwhile
	// is told BYE at once rather than served by a node going away.
	ts := startServer(t, testConfig())
	cl := ts.login(t)
	ts.srv.Bye(context.Background())
	select {
	case <-cl.Closed():
	case <-time.After(ioTimeout):
		t.Fatal("the session is still open after Bye")
	}
	conn := ts.conn(t)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(ioTimeout)))
	greeting, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(greeting, "* BYE "), "greeting %q", greeting)
}

func TestIdleHearsNewMail(t *testing.T) {
	// A catalog change wakes the idling session (CatalogChanged): EXISTS
	// comes without waiting for a poll.
	ts := startServer(t, testConfig())
	ts.backend.deliver(t, alice, testMessage("before"))
	r := ts.raw(t)
	r.send("a1 LOGIN " + alice + " " + alicePass)
	r.until("a1 OK")
	r.send("a2 SELECT INBOX")
	assert.Contains(t, r.until("a2 OK"), "* 1 EXISTS")
	r.send("a3 IDLE")
	r.until("+ ")
	ts.backend.deliver(t, alice, testMessage("during"))
	r.until("* 2 EXISTS")
	r.send("DONE")
	r.until("a3 OK")
	r.send("a4 UID FETCH 2 (UID FLAGS)")
	assert.Equal(t, []string{"* 2 FETCH (UID 2 FLAGS ())", "a4 OK UID FETCH completed"}, r.until("a4 "))
}

func TestExpungeRefusedWhileInUse(t *testing.T) {
	// Mailbox.Expunge's ErrInUse (a POP3 session holds the mailbox) is
	// NO [INUSE], and nothing leaves the view; once free, EXPUNGE works.
	ts := startServer(t, testConfig())
	for i := range 2 {
		ts.backend.deliver(t, alice, testMessage(fmt.Sprintf("inuse %d", i)))
	}
	cl := ts.login(t)
	_, err := cl.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	_, err = cl.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	require.NoError(t, err)

	ts.backend.mu.Lock()
	ts.backend.inUse = true
	ts.backend.mu.Unlock()
	_, err = cl.Expunge().Collect()
	var ierr *imap.Error
	require.ErrorAs(t, err, &ierr)
	assert.Equal(t, imap.ResponseCodeInUse, ierr.Code)
	assert.Len(t, fetchAll(t, cl, &imap.FetchOptions{UID: true}), 2)

	ts.backend.mu.Lock()
	ts.backend.inUse = false
	ts.backend.mu.Unlock()
	expunged, err := cl.Expunge().Collect()
	require.NoError(t, err)
	assert.Equal(t, []uint32{1}, expunged)
	assert.Len(t, ts.backend.cat.List(alice), 1)
}
