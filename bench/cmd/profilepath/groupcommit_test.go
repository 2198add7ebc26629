package main

import (
	"testing"
)

func TestParseCounters(t *testing.T) {
	page := `# HELP mailarray_smtp_messages_total SMTP outcomes.
# TYPE mailarray_smtp_messages_total counter
mailarray_smtp_messages_total{reason="",result="accepted"} 1200
mailarray_smtp_messages_total{reason="5.1.1",result="rejected"} 7
mailarray_store_commits_total 480
mailarray_store_commits_totalx 1
mailarray_store_writes_total 1.5e+03
`
	tests := []struct {
		name      string
		page      string
		want      nodeCounters
		wantFound bool
	}{
		{"every counter", page, nodeCounters{accepted: 1200, commits: 480, writes: 1500, hasStore: true}, true},
		{"a binary without the store counters", "mailarray_smtp_messages_total{result=\"accepted\"} 3\n", nodeCounters{accepted: 3}, true},
		{"no SMTP counter yet", "mailarray_store_commits_total 1\nmailarray_store_writes_total 1\n", nodeCounters{commits: 1, writes: 1, hasStore: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := parseCounters([]byte(tt.page))
			if got != tt.want || found != tt.wantFound {
				t.Errorf("parseCounters: got %+v, %v; want %+v, %v", got, found, tt.want, tt.wantFound)
			}
		})
	}
}
