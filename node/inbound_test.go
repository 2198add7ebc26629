package node

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
	"mailarray/node/fault"
)

// eicar is the antivirus test file (built at run time so this source is
// not itself flagged).
var eicar = strings.Join([]string{`X5O!P%@AP[4\PZX54(P^)7CC)7}$`, `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`}, "")

// mimeWithAttachment builds a multipart/mixed message with a text part and
// a base64 attachment.
func mimeWithAttachment(from, subject string, attachment []byte) []byte {
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	tp, _ := w.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}})
	tp.Write([]byte("Hello, see the attachment.\r\n"))
	ap, _ := w.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"application/octet-stream"},
		"Content-Transfer-Encoding": {"base64"},
		"Content-Disposition":       {`attachment; filename="file.bin"`},
	})
	enc := base64.StdEncoding.EncodeToString(attachment)
	for len(enc) > 76 {
		ap.Write([]byte(enc[:76] + "\r\n"))
		enc = enc[76:]
	}
	ap.Write([]byte(enc + "\r\n"))
	w.Close()
	return []byte(fmt.Sprintf("From: %s\r\nTo: alice@example.com\r\nSubject: %s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=%s\r\n\r\n%s",
		from, subject, w.Boundary(), body.String()))
}

func TestPipelineDefangsEICAR(t *testing.T) {
	n := startNode(t, func(*Config) {})
	msg := mimeWithAttachment("x@remote.test", "virus", []byte(eicar))
	_, err := send(t, n.Addr("smtp"), []string{"alice@example.com"}, msg)
	require.NoError(t, err)
	got := readAll(t, n.Addr("pop3"), "alice@example.com", "secret")
	require.Len(t, got, 1)
	for id, b := range got {
		s := string(b)
		assert.Contains(t, s, "X-Virus-Status:")
		assert.NotContains(t, s, base64.StdEncoding.EncodeToString([]byte(eicar))[:40], "the infected part is gone")
		assert.Contains(t, s, "Hello, see the attachment.", "the rest is delivered")
		e, _ := n.Catalog().Get(id)
		assert.NotEmpty(t, e.Trace, "the decision is recorded in the catalog")
		assert.Contains(t, strings.Join(e.Trace, "\n"), "antivirus")
	}
}

func TestPipelineQuarantineAndRelease(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Pipeline.AVPolicy = "quarantine" })
	_, err := send(t, n.Addr("smtp"), []string{"alice@example.com"}, mimeWithAttachment("x@remote.test", "held", []byte(eicar)))
	require.NoError(t, err)
	assert.Empty(t, readAll(t, n.Addr("pop3"), "alice@example.com", "secret"), "a quarantined message is outside the mailbox")
	q := n.Quarantined()
	require.Len(t, q, 1)
	resp, err := http.Post("http://"+n.Addr("http")+"/v1/quarantine/"+q[0].ID+"/release", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	got := readAll(t, n.Addr("pop3"), "alice@example.com", "secret")
	require.Len(t, got, 1, "released into the mailbox")
	assert.Empty(t, n.Quarantined())
	for _, b := range got {
		assert.Contains(t, string(b), base64.StdEncoding.EncodeToString([]byte(eicar))[:40], "released as held: intact")
	}
}

func TestPipelineSpamFlagAndWebhook(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "spam.db")
	require.NoError(t, os.WriteFile(db, []byte("# blocked\nspammer.test\n"), 0o600))
	hooks := make(chan map[string]any, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		hooks <- m
	})}
	l, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(l)
	defer srv.Close()
	users := append([]string(nil), testUsers...)
	users[1] = "bob@example.com:{PLAIN}hunter2:notify=http://" + l.Addr().String() + "/hook"
	n := startNode(t, func(c *Config) {
		c.Pipeline.SpamDB = db
		c.Mailboxes = users
	})
	raw := []byte("From: boss@spammer.test\r\nTo: bob@example.com\r\nSubject: buy now\r\n\r\ncheap\r\n")
	_, err = send(t, n.Addr("smtp"), []string{"bob@example.com"}, raw)
	require.NoError(t, err)
	got := readAll(t, n.Addr("pop3"), "bob@example.com", "hunter2")
	require.Len(t, got, 1)
	for _, b := range got {
		assert.Contains(t, string(b), "X-Spam-Flag: YES")
	}
	select {
	case h := <-hooks:
		assert.Equal(t, "bob@example.com", h["mailbox"])
		assert.Equal(t, "buy now", h["subject"])
		assert.NotEmpty(t, h["id"])
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook was not called")
	}
}

func TestPipelineFailingFilterIs451AndStoresNothing(t *testing.T) {
	// clamd on a port nobody listens on: the antivirus filter fails.
	l, err := (&env.RealNet{}).Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	l.Close()
	n := startNode(t, func(c *Config) { c.Pipeline.Clamd = dead })
	_, err = send(t, n.Addr("smtp"), []string{"alice@example.com"}, testMessage("scan fails", 800))
	require.Error(t, err)
	assert.Equal(t, 451, smtpCode(err))
	assert.Equal(t, 0, n.Catalog().Len(), "no entry anywhere")
	st, _ := n.Store().Stats()
	assert.Equal(t, 0, st.Copies, "no partial copy")
}

// TestFaultFilterOnlyWithAFaultHook (issue 18, item 10): a production
// node's pipeline has no fault filter (it logged a "no fault" verdict for
// every message); a node with a fault hook (the simulator's tests) has it
// first, so injected pipeline faults still reach it.
func TestFaultFilterOnlyWithAFaultHook(t *testing.T) {
	n := startNode(t, func(*Config) {})
	assert.NotContains(t, n.in.pipe.Filters(), "fault", "production pipeline")
	assert.Contains(t, n.in.pipe.Filters(), "antivirus", "production pipeline")

	faults := newTestFaults()
	c := newTestCluster(t, 0, 1, 1)
	c.env = func(name string, e *Env) { e.Fault = nodeFaults{faults, name} }
	c.start("n1")
	assert.Equal(t, "fault", c.nodes["n1"].in.pipe.Filters()[0], "pipeline with a fault hook: the fault filter first")
	faults.set("n1", fault.PipelineFilter, true)
	_, err := send(t, c.nodes["n1"].Addr("smtp"), []string{"alice@example.com"}, testMessage("fault", 400))
	require.Error(t, err, "the injected filter fault refuses the message")
	assert.Equal(t, 451, smtpCode(err))
}
