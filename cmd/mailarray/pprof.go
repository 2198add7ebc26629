package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// The profiling endpoint (serve --pprof ADDR) exists for the performance
// work of docs/performance.md: scripts and people take CPU profiles of a
// node under real load with `go tool pprof http://ADDR/debug/pprof/profile`.
// It is off unless the flag is given, it listens on its own loopback-only
// listener (never on --http, which operators expose and which carries the
// admin token's endpoints), and the node logs a warning when it is on: a
// profile shows function names and timings, and the endpoint has no
// authentication.

// checkPprofAddr refuses any address but a loopback one, so that the
// unauthenticated profiler is never reachable from another host.
func checkPprofAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("pprof: %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("pprof: %q is not a loopback address (127.0.0.1:PORT or [::1]:PORT): the profiler has no authentication", addr)
}

// startPprof serves net/http/pprof's handlers on addr, which
// checkPprofAddr accepted, on a mux of its own (importing net/http/pprof
// also registers them on http.DefaultServeMux, which no listener of the
// node serves). It returns the server, to Close when serve ends, and the
// bound address (addr may name port 0).
func startPprof(addr string, log *slog.Logger) (*http.Server, net.Addr, error) {
	if err := checkPprofAddr(addr); err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("pprof: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// No WriteTimeout: a CPU profile or trace request holds its response
	// for the seconds it asks for.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("mailarray: pprof listener stopped", "err", err)
		}
	}()
	log.Warn("mailarray: PROFILING ENDPOINT ON (--pprof): net/http/pprof without authentication; for performance work only, not for production",
		"addr", l.Addr().String())
	return srv, l.Addr(), nil
}
