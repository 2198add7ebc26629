package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckPprofAddr(t *testing.T) {
	for _, tt := range []struct {
		addr string
		ok   bool
	}{
		{"", true}, // off
		{"127.0.0.1:6060", true},
		{"127.0.0.2:6060", true},
		{"[::1]:6060", true},
		{"localhost:6060", true},
		{":6060", false}, // every interface
		{"0.0.0.0:6060", false},
		{"10.0.0.5:6060", false},
		{"example.com:6060", false},
		{"127.0.0.1", false}, // no port
	} {
		err := checkPprofAddr(tt.addr)
		assert.Equal(t, tt.ok, err == nil, "checkPprofAddr(%q): got %v", tt.addr, err)
	}
}

// serve refuses a profiler beyond loopback before it starts anything.
func TestServeRefusesPprofBeyondLoopback(t *testing.T) {
	var stderr bytes.Buffer
	_, _, _, _, err := loadConfigLevel([]string{"--name", "n1", "--domain", "example.com", "--users", "users", "--pprof", "0.0.0.0:6060"}, &stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a loopback address")

	_, _, _, sf, err := loadConfigLevel([]string{"--name", "n1", "--domain", "example.com", "--users", "users", "--pprof", "127.0.0.1:6060"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:6060", sf.PprofAddr)
}

// The endpoint serves the profiler's handlers and says loudly that it is on.
func TestStartPprofServesAndWarns(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	srv, addr, err := startPprof("127.0.0.1:0", log)
	require.NoError(t, err)
	defer srv.Close()
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Contains(t, logs.String(), "PROFILING ENDPOINT ON")

	resp, err := http.Get("http://" + addr.String() + "/debug/pprof/cmdline")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.True(t, strings.Contains(string(body), "mailarray") || strings.Contains(string(body), ".test"), "cmdline: got %q", body)
}
