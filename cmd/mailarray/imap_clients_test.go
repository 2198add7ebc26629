package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// imaplibScript drives two IMAP sessions on two nodes with Python's
// imaplib (a real IMAP4rev1 client) and prints what it saw as JSON:
// argv: host portA portB user password want.
const imaplibScript = `
import imaplib, json, re, sys, time

host, port_a, port_b, user, password, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
deadline = time.time() + 20
out = {}

def exists(conn):
    typ, data = conn.select("INBOX")
    assert typ == "OK", (typ, data)
    return int(data[0])

def poll(conn, cond, what):
    # NOOP until the server reports what we wait for (mail replicating).
    while True:
        typ, _ = conn.noop()
        assert typ == "OK"
        if cond():
            return
        if time.time() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.05)

a = imaplib.IMAP4(host, port_a)
a.login(user, password)
n = exists(a)
while n < want:
    poll(a, lambda: True, "mail")
    n = exists(a)
out["exists"] = n
out["uidvalidity"] = int(a.response("UIDVALIDITY")[1][0])
typ, data = a.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
assert typ == "OK", (typ, data)
msgs = []
for item in data:
    if isinstance(item, tuple):
        meta, body = item
        uid = int(re.search(rb"UID (\d+)", meta).group(1))
        subj = re.search(rb"Subject: ([^\r\n]*)", body).group(1).decode()
        msgs.append({"uid": uid, "subject": subj, "size": len(body)})
out["messages"] = msgs

b = imaplib.IMAP4(host, port_b)
b.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (user, password)).encode())
typ, data = b.select("INBOX", readonly=True)
assert typ == "OK", (typ, data)
typ, data = b.uid("FETCH", "1:*", "(UID)")
out["uids_b"] = [int(x) for x in re.findall(rb"UID (\d+)", b" ".join(d if isinstance(d, bytes) else d[0] for d in data))]

typ, _ = a.uid("STORE", str(msgs[1]["uid"]), "+FLAGS", r"(\Flagged)")
assert typ == "OK"
def flagged():
    typ, data = b.uid("FETCH", str(msgs[1]["uid"]), "(FLAGS)")
    return b"\\Flagged" in data[0]
poll(b, flagged, "the flag on the other node")
out["flag_seen_on_b"] = True

typ, _ = a.uid("STORE", str(msgs[0]["uid"]), "+FLAGS.SILENT", r"(\Deleted)")
assert typ == "OK"
typ, data = a.expunge()
assert typ == "OK", (typ, data)
out["expunged_a"] = [int(x) for x in data if x]
def expunged():
    typ, data = b.uid("FETCH", "1:*", "(UID)")
    uids = [int(x) for x in re.findall(rb"UID (\d+)", b" ".join(d if isinstance(d, bytes) else d[0] for d in data if d))]
    return msgs[0]["uid"] not in uids
poll(b, expunged, "the expunge on the other node")
out["expunge_seen_on_b"] = True
try:
    a.login(user, "wrong")
except imaplib.IMAP4.error:
    pass
a.logout()
b.logout()
print(json.dumps(out))
`

// TestIMAPWithRealClients runs three gossiping `mailarray serve` processes
// with --imap, delivers by SMTP to one, and reads and changes the mailbox
// through the two others with Python's imaplib; curl reads a message by
// UID. Each part skips with a message when its tool is missing.
func TestIMAPWithRealClients(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "--imap", "127.0.0.1:0")
	dir := t.TempDir() // the client scripts
	for _, p := range nodes {
		require.NotEmpty(t, p.addrs["imap"], "%s serves IMAP", p.name)
	}
	alice := "alice@" + testDomain
	for i := range 3 {
		_, err := send(context.Background(), nodes[0].addrs["smtp"], []string{alice}, testMessage(fmt.Sprintf("imap-%d", i), 900))
		require.NoError(t, err)
	}

	t.Run("python imaplib", func(t *testing.T) {
		py := needTool(t, "python3")
		script := filepath.Join(dir, "imap_client.py")
		require.NoError(t, os.WriteFile(script, []byte(imaplibScript), 0o600))
		_, portA, _ := strings.Cut(nodes[1].addrs["imap"], "127.0.0.1:")
		_, portB, _ := strings.Cut(nodes[2].addrs["imap"], "127.0.0.1:")
		out := runTool(t, "", py, script, "127.0.0.1", portA, portB, alice, "secret", "3")
		var got struct {
			Exists      int    `json:"exists"`
			UIDValidity uint32 `json:"uidvalidity"`
			Messages    []struct {
				UID     int    `json:"uid"`
				Subject string `json:"subject"`
				Size    int    `json:"size"`
			} `json:"messages"`
			UIDsB        []int `json:"uids_b"`
			FlagSeenOnB  bool  `json:"flag_seen_on_b"`
			ExpungedA    []int `json:"expunged_a"`
			ExpungeSeenB bool  `json:"expunge_seen_on_b"`
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &got), "imaplib said:\n%s", out)
		assert.Equal(t, 3, got.Exists)
		assert.NotZero(t, got.UIDValidity)
		require.Len(t, got.Messages, 3)
		subjects := map[string]bool{}
		for i, m := range got.Messages {
			assert.Equal(t, i+1, m.UID, "UIDs 1..3")
			assert.Greater(t, m.Size, 900)
			subjects[m.Subject] = true
		}
		assert.Equal(t, map[string]bool{"imap-0": true, "imap-1": true, "imap-2": true}, subjects)
		assert.Equal(t, []int{1, 2, 3}, got.UIDsB, "the other node shows the same UIDs")
		assert.True(t, got.FlagSeenOnB)
		assert.Equal(t, []int{1}, got.ExpungedA)
		assert.True(t, got.ExpungeSeenB)
	})

	t.Run("curl imap", func(t *testing.T) {
		curl := needTool(t, "curl")
		base := "imap://" + nodes[0].addrs["imap"] + "/"
		auth := alice + ":secret"
		list := runTool(t, "", curl, "-sS", "--max-time", "10", "-u", auth, base)
		assert.Contains(t, list, "INBOX", "LIST shows INBOX:\n%s", list)
		// The message with UID 3 (UID 1 may have been expunged above).
		msg := runTool(t, "", curl, "-sS", "--max-time", "10", "-u", auth, base+"INBOX;UID=3")
		assert.Contains(t, msg, "Subject: imap-", "UID FETCH BODY[] by curl:\n%s", msg)
		assert.True(t, strings.HasPrefix(msg, "Received: from "), "the whole message:\n%s", msg)
	})
}
