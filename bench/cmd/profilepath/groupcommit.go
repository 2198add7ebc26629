package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Group commit, from each node's /metrics around the CPU window: the
// store's transactions (one fsync each) and the writes they carried, and
// the messages the node's SMTP listener accepted, exactly (the window's
// own count is exact only to one batch).

// nodeCounters are one node's counters at one instant. hasStore is false
// for a binary older than the store's counters (the messages still count).
type nodeCounters struct {
	accepted, commits, writes float64
	hasStore                  bool
}

// scrapeCounters reads every node's counters; ok is false if a node did
// not answer (an older binary, say).
func scrapeCounters(ctx context.Context, c *cluster) (out []nodeCounters, ok bool) {
	for _, n := range c.nodes {
		b := get(ctx, "http://"+n.addr("http")+"/metrics")
		if b == nil {
			return nil, false
		}
		nc, found := parseCounters(b)
		if !found {
			return nil, false
		}
		out = append(out, nc)
	}
	return out, true
}

// parseCounters picks the three counters out of a Prometheus text page;
// found is false without the accepted count.
func parseCounters(page []byte) (nc nodeCounters, found bool) {
	s := bufio.NewScanner(bytes.NewReader(page))
	s.Buffer(nil, 1<<20)
	var seen int
	for s.Scan() {
		found = found || strings.HasPrefix(s.Text(), "mailarray_smtp_messages_total")
		line := s.Text()
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		switch name := line[:sp]; {
		case strings.HasPrefix(name, "mailarray_smtp_messages_total{") && strings.Contains(name, `result="accepted"`):
			nc.accepted += v
		case name == "mailarray_store_commits_total":
			nc.commits, seen = v, seen+1
		case name == "mailarray_store_writes_total":
			nc.writes, seen = v, seen+1
		}
	}
	nc.hasStore = seen == 2
	return nc, found
}

// formatGroupCommit prints each node's commits and writes over the window
// and returns the messages the array accepted in it (0 if unknown).
func formatGroupCommit(w io.Writer, c *cluster, before, after []nodeCounters) float64 {
	var accepted float64
	for i := range after {
		accepted += after[i].accepted - before[i].accepted
	}
	fmt.Fprintf(w, "\n== group commit (the nodes' /metrics over the window): %.0f messages accepted by the array\n", accepted)
	fmt.Fprintf(w, "  %-6s %9s %9s %13s %11s\n", "node", "commits", "writes", "writes/commit", "commits/msg")
	for i := range after {
		if !after[i].hasStore {
			fmt.Fprintf(w, "  %-6s (no store counters: a binary older than mailarray_store_commits_total)\n", c.nodes[i].name)
			continue
		}
		commits, writes := after[i].commits-before[i].commits, after[i].writes-before[i].writes
		perCommit, perMsg := 0.0, 0.0
		if commits > 0 {
			perCommit = writes / commits
		}
		if accepted > 0 {
			perMsg = commits / accepted
		}
		fmt.Fprintf(w, "  %-6s %9.0f %9.0f %13.2f %11.3f\n", c.nodes[i].name, commits, writes, perCommit, perMsg)
	}
	return accepted
}
