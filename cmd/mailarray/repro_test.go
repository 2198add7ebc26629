package main

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/pop3"
)

// needRepro: these tests reproduced lock-manager bugs B and C (a second
// session admitted when a joining node became the lock manager; a lock
// left behind on a dead manager) and now guard against their return.
func needRepro(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test skipped with -short")
	}
}

// lockHeld asks the peer API of node at peerAddr whether it holds a live
// lease on mailbox for another owner: a 1 ms probe lease is refused (409)
// only then, and expires at once otherwise.
func lockHeld(t *testing.T, peerAddr, mailbox string) bool {
	t.Helper()
	resp, err := httpClient.Post("http://"+peerAddr+"/v1/locks/"+url.PathEscape(mailbox)+"?owner=probe&ttl_ms=1", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode == http.StatusConflict
}

func peerOf(t *testing.T, p *proc) string {
	t.Helper()
	return p.addrs["peer"]
}

// The lock of a mailbox lives on one manager, the rendezvous-hash top of
// the live members (node/locks.go lockManager). For alice@example.com the
// order is n2 > n3 > n1. Each step below moves the manager while a session
// holds the lock.
func TestReproLockManagerMoves(t *testing.T) {
	needRepro(t)
	alice := "alice@" + testDomain
	dir := t.TempDir()
	users := writeUsers(t, dir, clusterUsers...)
	opts := func(name string, join ...string) nodeOpts {
		return nodeOpts{name: name, dir: dir, users: users, gossip: true, join: join,
			extra: []string{"--replicas", "2", "--write-quorum", "2"}}
	}
	waitAlive := func(k int, nodes ...*proc) {
		require.Eventually(t, func() bool {
			for _, p := range nodes {
				st, err := p.status()
				if err != nil || aliveMembers(st.Members) != k || len(st.Mirror.Ring) != k {
					return false
				}
			}
			return true
		}, lastSurvivorTimeout, 50*time.Millisecond)
	}
	n1 := startNode(t, opts("n1"))
	n3 := startNode(t, opts("n3", n1.gossip))
	waitAlive(2, n1, n3)
	sent := deliver(t, []*proc{n1, n3}, 3)
	require.Len(t, sent, 3)

	// Bug B: a node joins and becomes alice's manager while a session
	// holds her lock on the old manager (n3): a second session is let in.
	s1, err := popLogin(n1.addrs["pop3"], alice, "secret")
	require.NoError(t, err)
	require.True(t, lockHeld(t, peerOf(t, n3), alice), "s1's lock is on n3")
	n2 := startNode(t, opts("n2", n1.gossip))
	waitAlive(3, n1, n2, n3)
	s2, err := popLogin(n3.addrs["pop3"], alice, "secret")
	if !assert.Equal(t, "IN-USE", pop3.ErrorCode(err), "bug B: a second session while s1 holds the lock (err %v)", err) && err == nil {
		// Consequence: s1 deletes a message and QUIT is acknowledged;
		// s2, opened on the same mailbox, still lists it.
		require.NoError(t, s1.Dele(1))
		require.NoError(t, s1.Quit())
		n, _, err := s2.Stat()
		require.NoError(t, err)
		t.Logf("bug B: after s1 deleted message 1 and QUIT, s2 still lists %d messages", n)
		_, err = s2.Retr(1)
		t.Logf("bug B: s2 RETR 1 of the deleted message: err=%v", err)
		require.NoError(t, s2.Quit())
	} else {
		require.NoError(t, s1.Quit())
	}

	// Bug C: s3's lock is on n2; n2 dies; after detection s3's renewal
	// (every 20 s) takes a lease on the new manager n3, but QUIT unlocks
	// on the manager recorded at login (n2, dead). The lease on n3 stays
	// for its TTL (60 s) and every login meanwhile is refused IN-USE.
	s3, err := popLogin(n1.addrs["pop3"], alice, "secret")
	require.NoError(t, err)
	require.True(t, lockHeld(t, peerOf(t, n2), alice), "s3's lock is on n2")
	n2.kill()
	waitAlive(2, n1, n3)
	require.Eventually(t, func() bool { return lockHeld(t, peerOf(t, n3), alice) },
		30*time.Second, 200*time.Millisecond, "s3's renewal takes a lease on the new manager n3")
	require.NoError(t, s3.Quit())
	quit := time.Now()
	s4, err := popLogin(n3.addrs["pop3"], alice, "secret")
	if err == nil {
		s4.Quit()
	}
	assert.NoError(t, err, "bug C: a login right after the only session QUIT")
	if err != nil {
		require.Eventually(t, func() bool {
			cl, err := popLogin(n3.addrs["pop3"], alice, "secret")
			if err == nil {
				cl.Quit()
			}
			return err == nil
		}, 90*time.Second, 500*time.Millisecond)
		t.Logf("bug C: alice's mailbox was refused IN-USE for %v after her only session ended", time.Since(quit).Round(time.Second))
	}
}
