package node

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/tlstest"
)

func TestPeerAPIRefusesRequestsWithoutTheKey(t *testing.T) {
	n := startNode(t, func(cfg *Config) { cfg.PeerKey = "s3cret-array-key" })
	_, err := send(t, n.Addr("smtp"), []string{"alice@example.com"}, testMessage("secret mail", 300))
	require.NoError(t, err)
	id := n.Catalog().List("alice@example.com")[0].ID
	base := "http://" + n.Addr("peer")
	// The node hands its key to node/peer, whose tests cover every route.
	tests := []struct {
		method, path, key string
		want              int
	}{
		{"GET", "/v1/copies/" + id, "", http.StatusUnauthorized},
		{"GET", "/v1/copies/" + id, "wrong", http.StatusUnauthorized},
		{"GET", "/v1/copies/" + id, "s3cret-array-key", http.StatusOK},
	}
	for _, tc := range tests {
		req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(""))
		require.NoError(t, err)
		if tc.key != "" {
			req.Header.Set("X-Mailarray-Key", tc.key)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, tc.want, resp.StatusCode, "%s %s key=%q", tc.method, tc.path, tc.key)
		if tc.want != http.StatusOK {
			assert.NotContains(t, string(b), "secret mail", "no mail leaks without the key")
		}
	}
}

func TestCertificateReloadWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool1 := tlstest.WriteSelfSigned(t, dir, "first.example.com")
	logs := &logBuffer{}
	r, err := newCertReloader(certFile, keyFile, slog.New(slog.NewJSONHandler(logs, nil)))
	require.NoError(t, err)
	leaf := func() string {
		c := r.Config().Certificates[0]
		return c.Leaf.Subject.CommonName
	}
	assert.Equal(t, "first.example.com", leaf())
	_ = pool1
	// Replace the files (new mtime) and let the watcher pick them up.
	time.Sleep(10 * time.Millisecond) // distinct mtime granularity on some filesystems
	_, _, _ = tlstest.WriteSelfSigned(t, dir, "second.example.com")
	ctx, cancel := contextWithCancel()
	defer cancel()
	go r.Watch(ctx, 10*time.Millisecond)
	require.Eventually(t, func() bool { return leaf() == "second.example.com" }, 5*time.Second, 10*time.Millisecond)
	// A broken file keeps the old certificate. Asserted once the watcher
	// has read the broken file (it logs the failed load), not after a
	// pause, which on a loaded machine may end before the watcher looks.
	require.NoError(t, os.WriteFile(certFile, []byte("garbage"), 0o600))
	require.Eventually(t, func() bool { return len(logs.lines(t, "node: tls certificate reload failed; keeping the old one")) > 0 },
		10*time.Second, 10*time.Millisecond, "the watcher tries the broken file")
	assert.Equal(t, "second.example.com", leaf())
	_ = tls.VersionTLS12
}

func TestMetricsPageParses(t *testing.T) {
	c := newTestCluster(t, 1, 1, 1)
	n := c.nodes["n1"]
	_, err := send(t, n.Addr("smtp"), []string{"alice@example.com"}, testMessage("metric", 300))
	require.NoError(t, err)
	_, err = send(t, n.Addr("smtp"), []string{"nobody@example.com"}, testMessage("metric", 300))
	require.Error(t, err)
	resp, err := http.Get("http://" + n.Addr("http") + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err, "the metrics page parses as Prometheus text")
	val := func(name string, labels map[string]string) float64 {
		f := fams[name]
		require.NotNil(t, f, name)
		for _, m := range f.Metric {
			match := true
			for k, v := range labels {
				found := false
				for _, l := range m.Label {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				match = match && found
			}
			if match {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				if m.Gauge != nil {
					return m.Gauge.GetValue()
				}
				if m.Histogram != nil {
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
		t.Fatalf("%s%v not found", name, labels)
		return 0
	}
	assert.Equal(t, 1.0, val("mailarray_smtp_messages_total", map[string]string{"result": "accepted"}))
	assert.Equal(t, 1.0, val("mailarray_smtp_messages_total", map[string]string{"result": "rejected", "reason": "5.1.1"}))
	assert.Equal(t, 1.0, val("mailarray_smtp_transaction_seconds", nil))
	assert.Equal(t, 1.0, val("mailarray_catalog_entries", map[string]string{"state": "committed"}))
	assert.Equal(t, 1.0, val("mailarray_store_copies", nil))
	// At least the accepted message's commit (the node's own start writes
	// some more); never fewer writes than commits.
	commits, writes := val("mailarray_store_commits_total", nil), val("mailarray_store_writes_total", nil)
	assert.GreaterOrEqual(t, commits, 1.0)
	assert.GreaterOrEqual(t, writes, commits)
	assert.Equal(t, 0.0, val("mailarray_under_replicated_messages", nil))
	assert.Equal(t, 0.0, val("mailarray_peer_streams", map[string]string{"kind": "outgoing"}), "a lone node has no peer to stream to")
	assert.Equal(t, 1.0, val("mailarray_members", map[string]string{"status": "alive"}))
}
