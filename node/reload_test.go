package node

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/ddns"
	"mailarray/node/env"
	"mailarray/node/fault"
)

// holdFirstFilter holds the first message at the pipeline's fault filter
// until release is closed: a transaction in flight across a reload.
type holdFirstFilter struct {
	held             atomic.Bool // not a sync.Once: the next messages must not wait
	entered, release chan struct{}
}

func (h *holdFirstFilter) Fault(p fault.Point) error {
	if p == fault.PipelineFilter && h.held.CompareAndSwap(false, true) {
		close(h.entered)
		<-h.release
	}
	return nil
}

// pipelineInUse is the configuration the pipeline in use was built from.
func pipelineInUse(n *Node) PipelineConfig {
	n.inMu.RLock()
	defer n.inMu.RUnlock()
	return n.in.conf
}

// TestReloadPipelineSwap: a reload that changes the antivirus action
// changes what happens to the next message on the socket, while a message
// in DATA before the reload finishes on the old pipeline; the reload
// returns once it has, with the old pipeline's watchers stopped. A
// pipeline that does not build refuses the reload and the running one
// stays.
func TestReloadPipelineSwap(t *testing.T) {
	sigs := filepath.Join(t.TempDir(), "sigs.txt")
	require.NoError(t, os.WriteFile(sigs, []byte("# none beyond EICAR\n"), 0o644))
	hold := &holdFirstFilter{entered: make(chan struct{}), release: make(chan struct{})}
	c := &testCluster{t: t, nodes: map[string]*Node{}, dirs: map[string]string{}, r: 1, w: 1, users: testUsers}
	cfg := c.config("n1")
	cfg.Pipeline.AVSignatures = sigs // a watcher the swap must stop
	cfg.UsersReload = 10 * time.Millisecond
	e := &Env{Net: &env.RealNet{}, Rand: env.NewRand(3), Membership: staticSelf("n1"), DataDir: cfg.DataDir, Log: testLogger(t), Fault: hold}
	n, err := New(cfg, e)
	require.NoError(t, err)
	require.NoError(t, n.Start())
	t.Cleanup(func() { n.Close() })
	var released sync.Once
	releaseFirst := func() { released.Do(func() { close(hold.release) }) }
	t.Cleanup(releaseFirst) // before Close, which waits for the session
	require.Equal(t, "defang", pipelineInUse(n).AVPolicy)

	first := make(chan error, 1)
	go func() {
		_, err := send(t, n.Addr("smtp"), []string{"alice@example.com"}, mimeWithAttachment("x@remote.test", "before", []byte(eicar)))
		first <- err
	}()
	<-hold.entered // the first message is in the old pipeline

	next := n.Config()
	next.Pipeline.AVPolicy = "quarantine"
	type result struct {
		st  ReloadStatus
		err error
	}
	reloaded := make(chan result, 1)
	go func() {
		st, err := n.Reload(next)
		reloaded <- result{st, err}
	}()
	require.Eventually(t, func() bool { return pipelineInUse(n).AVPolicy == "quarantine" }, 10*time.Second, time.Millisecond,
		"the new pipeline is swapped in while the first message is held")

	// The next message takes the new pipeline: quarantined.
	_, err = send(t, n.Addr("smtp"), []string{"alice@example.com"}, mimeWithAttachment("x@remote.test", "after", []byte(eicar)))
	require.NoError(t, err)
	q := n.Quarantined()
	require.Len(t, q, 1, "the message after the reload is quarantined")
	select {
	case r := <-reloaded:
		t.Fatalf("the reload returned (%+v) before the message on the old pipeline finished", r)
	default:
	}

	// The held message finishes on the old pipeline: defanged, delivered.
	releaseFirst()
	require.NoError(t, <-first)
	var r result
	select {
	case r = <-reloaded:
	case <-time.After(30 * time.Second):
		t.Fatal("the reload did not return once the old pipeline was idle")
	}
	require.NoError(t, r.err)
	assert.Equal(t, []string{"pipeline.av-policy"}, r.st.Applied)
	assert.Empty(t, r.st.Restart)
	got := readAll(t, n.Addr("pop3"), "alice@example.com", "secret")
	require.Len(t, got, 1, "the message in flight was delivered, not quarantined")
	for _, b := range got {
		s := string(b)
		assert.Contains(t, s, "Subject: before")
		assert.Contains(t, s, "X-Virus-Status:", "defanged by the old pipeline")
		assert.NotContains(t, s, base64.StdEncoding.EncodeToString([]byte(eicar))[:40])
	}

	// A pipeline that does not build (the signature file is gone) refuses
	// the reload; the running one stays.
	bad := n.Config()
	bad.Pipeline.AVPolicy = "defang"
	bad.Pipeline.AVSignatures = filepath.Join(t.TempDir(), "missing.txt")
	_, err = n.Reload(bad)
	require.ErrorIs(t, err, ErrReloadRefused)
	assert.ErrorContains(t, err, "pipeline")
	assert.Equal(t, "quarantine", pipelineInUse(n).AVPolicy)
	assert.Equal(t, sigs, n.Config().Pipeline.AVSignatures)
	_, err = send(t, n.Addr("smtp"), []string{"alice@example.com"}, mimeWithAttachment("x@remote.test", "still", []byte(eicar)))
	require.NoError(t, err)
	assert.Len(t, n.Quarantined(), 2, "still quarantined")
}

// TestReloadPipelineNoLeak: swapping the pipeline many times leaves no
// watcher running: the goroutine count comes back.
func TestReloadPipelineNoLeak(t *testing.T) {
	sigs := filepath.Join(t.TempDir(), "sigs.txt")
	spam := filepath.Join(t.TempDir(), "spam.db")
	require.NoError(t, os.WriteFile(sigs, []byte("# none\n"), 0o644))
	require.NoError(t, os.WriteFile(spam, []byte("spammer.test\n"), 0o644))
	n := startNode(t, func(c *Config) {
		c.Pipeline.AVSignatures, c.Pipeline.SpamDB = sigs, spam
		c.UsersReload = 10 * time.Millisecond
	})
	before := runtime.NumGoroutine()
	for i := range 20 {
		next := n.Config()
		next.Pipeline.SpamReject = i%2 == 0
		_, err := n.Reload(next)
		require.NoError(t, err)
	}
	assert.True(t, n.Config().Pipeline.SpamReject == false && pipelineInUse(n).SpamReject == false)
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, 10*time.Second, 10*time.Millisecond,
		"goroutines: %d before the reloads", before)
}

// TestReloadZoneFile: a reload that changes zone-file serves the new
// files and watches them instead of the old; a file that does not load
// refuses the reload and the zones in use stay.
func TestReloadZoneFile(t *testing.T) {
	dir := t.TempDir()
	a, b, bad := filepath.Join(dir, "a.zone"), filepath.Join(dir, "b.zone"), filepath.Join(dir, "bad.zone")
	require.NoError(t, os.WriteFile(a, []byte("@ TXT \"from a\"\n"), 0o644))
	require.NoError(t, os.WriteFile(b, []byte("@ TXT \"from b\"\n"), 0o644))
	require.NoError(t, os.WriteFile(bad, []byte("@ TXT \"ok\"\nn1 A 192.0.2.1\n"), 0o644))
	n := startNode(t, func(c *Config) {
		c.ZoneFiles = []string{"example.com=" + a}
		c.UsersReload = 10 * time.Millisecond
	})
	txt := func() string {
		m := new(dns.Msg).SetQuestion("example.com.", dns.TypeTXT)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := ddns.Exchange(ctx, &env.RealNet{}, n.Addr("dns"), m, false)
		require.NoError(t, err)
		var out []string
		for _, rr := range r.Answer {
			out = append(out, rr.String())
		}
		return strings.Join(out, "\n")
	}
	require.Contains(t, txt(), "from a")

	next := n.Config()
	next.ZoneFiles = []string{"example.com=" + b}
	st, err := n.Reload(next)
	require.NoError(t, err)
	assert.Equal(t, []string{"zone-file"}, st.Applied)
	assert.Contains(t, txt(), "from b")

	// The new file is watched, the old one no longer.
	require.NoError(t, os.WriteFile(a, []byte("@ TXT \"a again\"\n"), 0o644))
	require.NoError(t, os.WriteFile(b, []byte("@ TXT \"b edited\"\n"), 0o644))
	require.Eventually(t, func() bool { return strings.Contains(txt(), "b edited") }, 10*time.Second, 10*time.Millisecond)
	assert.NotContains(t, txt(), "a again")

	badCfg := n.Config()
	badCfg.ZoneFiles = []string{"example.com=" + bad}
	_, err = n.Reload(badCfg)
	require.ErrorIs(t, err, ErrReloadRefused)
	assert.ErrorContains(t, err, bad+" line 2")
	assert.Contains(t, txt(), "b edited", "the zones in use stay")
	assert.Equal(t, []string{"example.com=" + b}, n.Config().ZoneFiles)

	none := n.Config()
	none.ZoneFiles = nil
	_, err = n.Reload(none)
	require.NoError(t, err)
	assert.Nil(t, n.dns.Zones(), "no static zone any more")
}
