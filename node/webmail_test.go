package node

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/mail"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/catalog"
	"mailarray/node/ingest/ingesttest"
	"mailarray/node/member"
)

var httpClient = &http.Client{Timeout: 10 * time.Second}

// ingestDoc posts a document to node n's gateway and returns the status
// and the decoded JSON answer.
func ingestDoc(t *testing.T, n *Node, kind, query string, doc []byte, token string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+n.Addr("http")+"/v1/ingest/"+kind+"?"+query, bytes.NewReader(doc))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/octet-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

// attachmentOf returns the header and the decoded attachment of a message
// the gateway built.
func attachmentOf(t *testing.T, msg []byte) (mail.Header, string, []byte) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	require.NoError(t, err)
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	require.NoError(t, err)
	mr := multipart.NewReader(m.Body, params["boundary"])
	text, err := mr.NextPart()
	require.NoError(t, err)
	tb, _ := io.ReadAll(text)
	att, err := mr.NextPart()
	require.NoError(t, err)
	raw, _ := io.ReadAll(att)
	if att.Header.Get("Content-Transfer-Encoding") != "base64" {
		return m.Header, string(tb), raw // defanged: a text notice
	}
	doc, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw), "\r\n", ""))
	require.NoError(t, err)
	return m.Header, string(tb), doc
}

func TestIngestFaxAndVoiceReadableEverywhere(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	fax := ingesttest.TIFF(3, false, bytes.Repeat([]byte{0x55}, 2000))
	code, res := ingestDoc(t, c.nodes["n1"], "fax", "to=alice@example.com&from=%2B1%20555%200100", fax, "")
	require.Equal(t, http.StatusCreated, code, "%v", res)
	assert.Equal(t, "Fax from +1 555 0100 (3 pages)", res["subject"])
	faxID := res["id"].(string)
	wav := ingesttest.WAV(8000, 8000*2, []byte("hello"))
	code, res = ingestDoc(t, c.nodes["n2"], "voice", "to=Bob@Example.com", wav, "")
	require.Equal(t, http.StatusCreated, code, "%v", res)
	assert.Equal(t, "Voicemail (2 s)", res["subject"])

	// Readable through a node that took neither upload, once the commit
	// (asynchronous after the acknowledgement, as for SMTP) has spread.
	c.waitConverged(10 * time.Second)
	got := readAll(t, c.nodes["n3"].Addr("pop3"), "alice@example.com", "secret")
	require.Len(t, got, 1)
	for id, msg := range got {
		assert.True(t, strings.HasPrefix(id, faxID), "UIDL %s is the transaction %s", id, faxID)
		assert.True(t, bytes.HasPrefix(msg, []byte("Received: from [127.0.0.1] by n1.example.com (mailarray) with HTTP id "+faxID)))
		h, text, doc := attachmentOf(t, msg)
		assert.Equal(t, "Fax from +1 555 0100 (3 pages)", h.Get("Subject"))
		assert.Equal(t, `"Fax +1 555 0100" <fax@example.com>`, h.Get("From"))
		assert.Contains(t, text, "3 pages")
		assert.Equal(t, fax, doc, "the TIFF arrives intact")
		// The inbound pipeline ran, as for SMTP mail, and said so.
		e, ok := c.nodes["n3"].Catalog().Get(id)
		require.True(t, ok)
		trace := strings.Join(e.Trace, "\n")
		assert.Contains(t, trace, "antivirus: accept: clean")
		assert.Contains(t, trace, "spam: accept")
		assert.Len(t, e.Locations, 2, "R=2 copies")
	}
	got = readAll(t, c.nodes["n1"].Addr("pop3"), "bob@example.com", "hunter2")
	require.Len(t, got, 1)
	for _, msg := range got {
		h, text, doc := attachmentOf(t, msg)
		assert.Equal(t, "Voicemail (2 s)", h.Get("Subject"))
		assert.Contains(t, text, "8000 Hz, mono, 16-bit PCM")
		assert.Equal(t, wav, doc)
	}
}

func TestIngestRunsTheAntivirus(t *testing.T) {
	c := newTestCluster(t, 1, 1, 1)
	n := c.nodes["n1"]
	wav := ingesttest.WAV(8000, 4000, []byte(eicar))
	code, res := ingestDoc(t, n, "voice", "to=alice@example.com", wav, "")
	require.Equal(t, http.StatusCreated, code, "%v", res)
	got := readAll(t, n.Addr("pop3"), "alice@example.com", "secret")
	require.Len(t, got, 1)
	for id, msg := range got {
		assert.Contains(t, string(msg), "X-Virus-Status: Infected")
		_, _, doc := attachmentOf(t, msg)
		assert.NotContains(t, string(doc), eicar, "the infected attachment was defanged")
		assert.Contains(t, string(doc), "contained malware and was removed")
		e, _ := n.Catalog().Get(id)
		assert.Contains(t, strings.Join(e.Trace, "\n"), "antivirus: modify: infected")
	}
}

func TestIngestRefusals(t *testing.T) {
	c := newTestCluster(t, 2, 2, 2)
	n := c.nodes["n1"]
	fax := ingesttest.TIFF(1, false, nil)
	tests := []struct {
		name  string
		kind  string
		query string
		doc   []byte
		code  int
		err   string
	}{
		{"bad magic", "fax", "to=alice@example.com", []byte("%PDF-1.4 not a fax at all"), http.StatusUnsupportedMediaType, "no TIFF magic"},
		{"wav without fmt", "voice", "to=alice@example.com", []byte("RIFF\x04\x00\x00\x00WAVEdata\x00\x00\x00\x00"), http.StatusUnsupportedMediaType, "no fmt chunk"},
		{"oversize", "fax", "to=alice@example.com", ingesttest.TIFF(1, false, make([]byte, 64<<10)), http.StatusRequestEntityTooLarge, "over the limit"},
		{"unknown mailbox", "fax", "to=nobody@example.com", fax, http.StatusNotFound, "no mailbox nobody@example.com"},
		{"domain not hosted", "fax", "to=alice@elsewhere.test", fax, http.StatusNotFound, "no mailbox"},
		{"missing to", "fax", "", fax, http.StatusBadRequest, "to: missing"},
		{"bad caller", "fax", "to=alice@example.com&from=%3Cx%3E", fax, http.StatusBadRequest, "not a caller id"},
	}
	for _, tc := range tests {
		code, res := ingestDoc(t, n, tc.kind, tc.query, tc.doc, "")
		assert.Equal(t, tc.code, code, "%s: %v", tc.name, res)
		assert.Contains(t, res["error"], tc.err, tc.name)
	}
	c.kill("n2")
	// Until n1 declares n2 failed it still tries n2 (connection refused:
	// a 503 of another wording, and the refused transaction's tombstone):
	// the case here is a node that knows it has no write quorum.
	require.Eventually(t, func() bool { return len(n.members.Table().Ring) == 1 }, 30*time.Second, 20*time.Millisecond, "n1 sees n2 gone")
	code, res := ingestDoc(t, n, "fax", "to=alice@example.com", fax, "")
	assert.Equal(t, http.StatusServiceUnavailable, code, "no write quorum: %v", res)
	assert.Contains(t, res["error"], "write quorum 2")
	assert.Equal(t, 0, n.Catalog().Len(), "nothing refused is stored")
}

func TestIngestToken(t *testing.T) {
	n := startNode(t, func(cfg *Config) { cfg.IngestToken = "gateway-secret" })
	fax := ingesttest.TIFF(1, false, nil)
	code, res := ingestDoc(t, n, "fax", "to=alice@example.com", fax, "")
	assert.Equal(t, http.StatusUnauthorized, code, "loopback needs the token too once one is set: %v", res)
	code, _ = ingestDoc(t, n, "fax", "to=alice@example.com", fax, "wrong")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, res = ingestDoc(t, n, "fax", "to=alice@example.com", fax, "gateway-secret")
	assert.Equal(t, http.StatusCreated, code, "%v", res)
	assert.Len(t, n.Catalog().List("alice@example.com"), 1)
}

// browser is a webmail client with a cookie jar.
type browser struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newBrowser(t *testing.T, n *Node) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, base: "http://" + n.Addr("http"), hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

func (b *browser) do(method, path string, body any, out any) int {
	b.t.Helper()
	var r io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, b.base+path, r)
	require.NoError(b.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.hc.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		require.NoError(b.t, json.NewDecoder(resp.Body).Decode(out))
	}
	return resp.StatusCode
}

type mailPage struct {
	Total    int `json:"total"`
	Messages []struct {
		ID, From, Subject string
		Size              int64
	} `json:"messages"`
}

func TestWebmailOnTheArray(t *testing.T) {
	c := newTestCluster(t, 3, 2, 2)
	_, err := send(t, c.nodes["n1"].Addr("smtp"), []string{"alice@example.com"}, testMessage("web one", 900))
	require.NoError(t, err)
	_, err = send(t, c.nodes["n2"].Addr("smtp"), []string{"alice@example.com", "bob@example.com"}, testMessage("web two", 700))
	require.NoError(t, err)
	c.waitConverged(10 * time.Second)

	b := newBrowser(t, c.nodes["n3"])
	assert.Equal(t, http.StatusUnauthorized, b.do("POST", "/v1/mail/login", map[string]string{"address": "alice@example.com", "password": "nope"}, nil))
	require.Equal(t, http.StatusOK, b.do("POST", "/v1/mail/login", map[string]string{"address": "alice@example.com", "password": "secret"}, nil))
	var page mailPage
	require.Equal(t, http.StatusOK, b.do("GET", "/v1/mail/messages", nil, &page))
	require.Equal(t, 2, page.Total)
	assert.Equal(t, "web two", page.Messages[0].Subject, "newest first")
	assert.Equal(t, "sender@remote.test", page.Messages[0].From)
	var v struct {
		Subject, Text string
	}
	require.Equal(t, http.StatusOK, b.do("GET", "/v1/mail/messages/"+url.PathEscape(page.Messages[1].ID), nil, &v))
	assert.Equal(t, "web one", v.Subject)
	assert.Contains(t, v.Text, ".a line that needs dot-stuffing\n", "the body as sent")

	// Bob's copy of the shared message is not alice's to read.
	bobs := c.nodes["n1"].Catalog().List("bob@example.com")
	require.Len(t, bobs, 1)
	assert.Equal(t, http.StatusNotFound, b.do("GET", "/v1/mail/messages/"+bobs[0].ID, nil, nil))
	assert.Equal(t, http.StatusNotFound, b.do("DELETE", "/v1/mail/messages/"+bobs[0].ID, nil, nil))

	// A POP3 session holds the mailbox: deletion waits for it.
	pc, err := popLogin(t, c.nodes["n1"].Addr("pop3"), "alice@example.com", "secret")
	require.NoError(t, err)
	id := page.Messages[0].ID
	assert.Equal(t, http.StatusConflict, b.do("DELETE", "/v1/mail/messages/"+id, nil, nil))
	require.NoError(t, pc.Quit())

	require.Equal(t, http.StatusNoContent, b.do("DELETE", "/v1/mail/messages/"+id, nil, nil))
	for name, n := range c.nodes {
		e, ok := n.Catalog().Get(id)
		require.True(t, ok, name)
		assert.Equal(t, catalog.Deleted, e.State, "deleted on %s once the answer came", name)
	}
	require.Equal(t, http.StatusOK, b.do("GET", "/v1/mail/messages", nil, &page))
	assert.Equal(t, 1, page.Total)
	assert.Len(t, readAll(t, c.nodes["n2"].Addr("pop3"), "alice@example.com", "secret"), 1, "POP3 agrees")
	assert.Len(t, readAll(t, c.nodes["n2"].Addr("pop3"), "bob@example.com", "hunter2"), 1, "bob's copy stays")
}

// TestIngestReadableOverIMAP: a fax taken by one node is read over IMAP
// on another, byte for byte what POP3 gives.
func TestIngestReadableOverIMAP(t *testing.T) {
	c := &testCluster{t: t, group: member.NewGroup(), nodes: map[string]*Node{}, dirs: map[string]string{}, r: 2, w: 2, users: testUsers,
		mutate: func(cfg *Config) { cfg.IMAPAddr = "127.0.0.1:0" }}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.Close()
		}
	})
	c.start("n1")
	c.start("n2")
	// n1 takes the document only once it sees n2 (W=2): the final CI
	// under -race ingested first and got 503 (1 live storage node).
	c.waitRing()
	fax := ingesttest.TIFF(1, true, []byte("imap page"))
	code, res := ingestDoc(t, c.nodes["n1"], "fax", "to=alice@example.com&from=Front%20desk", fax, "")
	require.Equal(t, http.StatusCreated, code, "%v", res)
	c.waitConverged(10 * time.Second)

	conn, err := net.DialTimeout("tcp", c.nodes["n2"].Addr("imap"), 5*time.Second)
	require.NoError(t, err)
	cl := imapclient.New(conn, nil)
	defer cl.Close()
	require.NoError(t, cl.WaitGreeting())
	require.NoError(t, cl.Login("alice@example.com", "secret").Wait())
	_, err = cl.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := cl.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	got := msgs[0].FindBodySection(section)
	h, _, doc := attachmentOf(t, got)
	assert.Equal(t, "Fax from Front desk (1 page)", h.Get("Subject"))
	assert.Equal(t, fax, doc)
	pop := readAll(t, c.nodes["n2"].Addr("pop3"), "alice@example.com", "secret")
	require.Len(t, pop, 1)
	for _, b := range pop {
		assert.Equal(t, string(b), string(got), "IMAP and POP3 serve the same bytes")
	}
}
