package peer

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// With a peer key every route, the stream's upgrade included, refuses a
// request without it, and nothing of the mail leaks.
func TestServerRefusesRequestsWithoutTheKey(t *testing.T) {
	h := newMemHandler()
	h.copies["m1"] = []byte("secret mail")
	base := "http://" + serve(t, Config{Key: "s3cret-array-key"}, h)
	tests := []struct {
		method, path, key string
		want              int
	}{
		{"GET", "/v1/copies/m1", "", http.StatusUnauthorized},
		{"GET", "/v1/copies/m1", "wrong", http.StatusUnauthorized},
		{"PUT", "/v1/copies/x", "", http.StatusUnauthorized},
		{"POST", "/v1/entries", "", http.StatusUnauthorized},
		{"GET", "/v1/buckets/0", "", http.StatusUnauthorized},
		{"POST", "/v1/copy-batch", "", http.StatusUnauthorized},
		{"GET", "/v1/status", "", http.StatusUnauthorized},
		{"GET", "/v1/stream", "", http.StatusUnauthorized},
		{"GET", "/v1/stream", "wrong", http.StatusUnauthorized},
		{"GET", "/v1/stream", "s3cret-array-key", http.StatusUpgradeRequired}, // a stream needs the Upgrade header
		{"GET", "/v1/copies/m1", "s3cret-array-key", http.StatusOK},
	}
	for _, tc := range tests {
		req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(""))
		require.NoError(t, err)
		if tc.key != "" {
			req.Header.Set(headerKey, tc.key)
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
