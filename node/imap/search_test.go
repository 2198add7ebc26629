package imap

import (
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStarNamesTheLastMessage(t *testing.T) {
	// "*" is the last message (or the highest UID), and n:* with n above
	// it still names it (RFC 9051 section 6.4.8), in SEARCH and UID
	// EXPUNGE as in FETCH.
	ts := startServer(t, testConfig())
	for i := range 3 {
		ts.backend.deliver(t, alice, testMessage(fmt.Sprintf("star %d", i)))
	}
	cl := ts.login(t)
	_, err := cl.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	res, err := cl.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 7, Stop: 0}}}}, nil).Wait()
	require.NoError(t, err)
	assert.Equal(t, []imap.UID{3}, res.AllUIDs(), "UID SEARCH UID 7:*")
	res, err = cl.Search(&imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 0, Stop: 0}}}}, nil).Wait()
	require.NoError(t, err)
	assert.Equal(t, []uint32{3}, res.AllSeqNums(), "SEARCH *")

	_, err = cl.Store(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	require.NoError(t, err)
	expunged, err := cl.UIDExpunge(imap.UIDSet{{Start: 0, Stop: 0}}).Collect()
	require.NoError(t, err)
	assert.Equal(t, []uint32{3}, expunged, "UID EXPUNGE * removes the highest UID only")
	var uids []imap.UID
	for _, m := range fetchAll(t, cl, &imap.FetchOptions{UID: true}) {
		uids = append(uids, m.UID)
	}
	assert.Equal(t, []imap.UID{1, 2}, uids)
}
