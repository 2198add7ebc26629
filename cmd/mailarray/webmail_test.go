package main

// The webmail page driven end to end: a real `mailarray serve`, mail
// delivered over SMTP and through the fax gateway, and headless Chromium
// logging in, listing, reading and deleting as a person would.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/ingest/ingesttest"
)

// browserNames are the Chromium binaries the test looks for (Debian's
// package installs chromium; `make deps` installs it).
var browserNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// screenshotsEnv, set to a directory, saves the page at each step there.
const screenshotsEnv = "MAILARRAY_TEST_SCREENSHOTS"

// browserTimeout bounds the whole browser session.
const browserTimeout = 45 * time.Second

func findBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range browserNames {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skipf("no headless browser: none of %s is on PATH (make deps installs Debian's chromium)", strings.Join(browserNames, ", "))
	return ""
}

// newBrowser starts headless Chromium for the test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := findBrowser(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, browserTimeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	require.NoError(t, chromedp.Do(ctx), "start %s", path)
	return ctx
}

// shot saves the page as dir/name.png when screenshotsEnv is set.
func shot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100) /* 100: PNG */)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// run runs an action that returns a value.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	require.NoError(t, err)
	return v
}

// rowTexts returns the text of each message row.
func rowTexts(t *testing.T, ctx context.Context) []string {
	t.Helper()
	return run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#messages tbody tr")).map(r => r.innerText)`))
}

// waitFor waits until a JavaScript expression is true on the page.
func waitFor(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(15*time.Second))
}

func TestWebmailInBrowser(t *testing.T) {
	ctx := newBrowser(t) // skips before starting a node when there is no browser
	dir := t.TempDir()
	users := writeUsers(t, dir, "alice@example.com:{PLAIN}wonderland", "bob@example.com:{PLAIN}builder")
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: users})

	// One message over SMTP, one fax through the gateway (from loopback,
	// so no token is needed).
	body := "Dear Alice,\r\nthe <b>tea party</b> is at four.\r\n"
	msg := []byte("From: Hatter <hatter@remote.test>\r\nTo: alice@example.com\r\nSubject: Tea at four\r\n" +
		"Date: Tue, 3 Mar 2026 16:00:00 +0000\r\nMessage-ID: <tea@remote.test>\r\n\r\n" + body)
	_, err := send(context.Background(), p.addrs["smtp"], []string{"alice@example.com"}, msg)
	require.NoError(t, err)
	fax := ingesttest.TIFF(2, false, []byte("scan"))
	resp, err := httpClient.Post("http://"+p.http+"/v1/ingest/fax?to=alice@example.com&from=%2B1%20555%200199", "image/tiff", bytes.NewReader(fax))
	require.NoError(t, err)
	var res struct{ ID, Subject string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, "Fax from +1 555 0199 (2 pages)", res.Subject)

	page := "http://" + p.http + "/"
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("address"), "alice@example.com"),
		chromedp.SendKeys(chromedp.ID("password"), "wrong"),
		chromedp.Click(chromedp.ID("login-button")),
		waitFor(`document.getElementById("login-error").textContent !== ""`),
	))
	assert.Equal(t, "wrong address or password", run(t, ctx, chromedp.Text(chromedp.ID("login-error"))))
	assert.Equal(t, "", run(t, ctx, chromedp.Evaluate[string](`document.getElementById("password").value`)), "the form clears a refused password")
	shot(t, ctx, "1-login-failed")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("password"), "wonderland"),
		chromedp.Click(chromedp.ID("login-button")),
		chromedp.WaitVisible(chromedp.CSS("#messages tbody tr")),
	))
	assert.Equal(t, "alice@example.com", run(t, ctx, chromedp.Text(chromedp.ID("mailbox"))))
	assert.Equal(t, "2 messages", run(t, ctx, chromedp.Text(chromedp.ID("count"))))
	rows := rowTexts(t, ctx)
	require.Len(t, rows, 2)
	assert.Contains(t, rows[0], "Fax from +1 555 0199 (2 pages)", "newest first")
	assert.Contains(t, rows[0], "Fax +1 555 0199\t", "the display name of the sender")
	assert.Contains(t, rows[1], "Tea at four")
	assert.Contains(t, rows[1], "Hatter\t")
	shot(t, ctx, "2-list")

	// Read the SMTP message: its text, and its markup shown as text.
	st, err := p.status()
	require.NoError(t, err)
	tea := run(t, ctx, chromedp.AttributeValue(chromedp.CSS("#messages tbody tr:nth-child(2)"), "data-id"))
	require.True(t, tea.Exists)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#messages tbody tr:nth-child(2)")),
		chromedp.WaitVisible(chromedp.ID("reader")),
	))
	assert.Equal(t, "Tea at four", run(t, ctx, chromedp.Text(chromedp.ID("reader-subject"))))
	assert.Equal(t, "Dear Alice,\nthe <b>tea party</b> is at four.", strings.TrimSpace(run(t, ctx, chromedp.TextContent(chromedp.ID("reader-body")))))
	assert.Equal(t, 0, run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#reader-body b").length`)), "mail markup is never rendered")
	shot(t, ctx, "3-read")

	// The fax shows its attachment.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#messages tbody tr:nth-child(1)")),
		chromedp.WaitVisible(chromedp.CSS("#attachments li")),
	))
	assert.Contains(t, run(t, ctx, chromedp.Text(chromedp.ID("attachments"))), "fax-"+res.ID+".tif")
	shot(t, ctx, "4-fax")

	// Delete the tea message: gone from the page, from the mailbox and
	// from the catalog.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#messages tbody tr:nth-child(2)")),
		waitFor(fmt.Sprintf(`document.getElementById("reader-subject").textContent === %q`, "Tea at four")),
		chromedp.Click(chromedp.ID("delete")),
		chromedp.WaitNotPresent(chromedp.CSS(fmt.Sprintf(`tr[data-id=%q]`, tea.Value))),
		waitFor(`document.getElementById("status").textContent !== ""`),
	))
	assert.Equal(t, "Message deleted.", run(t, ctx, chromedp.Text(chromedp.ID("status"))))
	rows = rowTexts(t, ctx)
	require.Len(t, rows, 1)
	assert.Contains(t, rows[0], "Fax from")
	shot(t, ctx, "5-deleted")

	after, err := p.status()
	require.NoError(t, err)
	assert.Equal(t, st.Entries["committed"]-1, after.Entries["committed"])
	assert.Equal(t, st.Entries["deleted"]+1, after.Entries["deleted"], "a tombstone in the catalog")
	got, err := readMailbox(p.addrs["pop3"], "alice@example.com", "wonderland")
	require.NoError(t, err)
	require.Len(t, got, 1, "POP3 sees the deletion")
	for id := range got {
		assert.True(t, strings.HasPrefix(id, res.ID), "the fax is what is left")
	}

	// Logging out returns to the form, and the session is over.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.ID("login-form")),
	))
}

// TestIngestTokenFlag: --ingest-token reaches the gateway of a real node.
func TestIngestTokenFlag(t *testing.T) {
	dir := t.TempDir()
	p := startNode(t, nodeOpts{name: "n1", dir: dir, users: writeUsers(t, dir, "alice@example.com:{PLAIN}pw"),
		extra: []string{"--ingest-token", "t0ken"}})
	post := func(token string) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+p.http+"/v1/ingest/voice?to=alice@example.com", bytes.NewReader(ingesttest.WAV(8000, 800, nil)))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusUnauthorized, post(""))
	assert.Equal(t, http.StatusUnauthorized, post("guess"))
	assert.Equal(t, http.StatusCreated, post("t0ken"))
	got, err := readMailbox(p.addrs["pop3"], "alice@example.com", "pw")
	require.NoError(t, err)
	assert.Len(t, got, 1)
}
