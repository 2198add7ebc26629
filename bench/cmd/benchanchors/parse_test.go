package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The outputs below are the shared scripts' lines as they print them
// (ingest_compare.py, access_compare.py, go test -bench).

const ingestOut = `Postfix is running with backwards-compatible default settings
postfix msgs/s [701, 671, 715]; mailarray(3 nodes) msgs/s [1112, 1330, 1201]
ingest ratio mailarray/postfix median 1.73 (min 1.55 max 1.92)
`

const accessOut = `dovecot pop3              msgs/s [4109, 6854]
mailarray pop3            msgs/s [2393, 6396]
dovecot pop3 pipelined    msgs/s [24990, 38781]
mailarray pop3 pipelined  msgs/s [17217, 22253]
dovecot imap              msgs/s [25551, 49427]
mailarray imap            msgs/s [17407, 22087]
retrieval ratio mailarray/dovecot (medians): POP3 0.91, POP3 pipelined 0.83, IMAP 0.44
`

const simOut = `goos: linux
goarch: amd64
pkg: mailarray/sim
BenchmarkSimThreeNodeR2-2   	  100000	    596000 ns/op	         1.000 accepted	   146.2 alloc-KiB/msg	  59.1 cpu-s	  12.00 events/msg	  3.2 p99-ms	  1.000 syncs/msg	  1679 msgs/wall-s	  59.60 wall-s
PASS
ok  	mailarray/sim	61.2s
`

func TestParseIngest(t *testing.T) {
	got, err := parseIngest(ingestOut)
	require.NoError(t, err)
	want := ingestResult{Nodes: 3, Postfix: []float64{701, 671, 715}, Mailarray: []float64{1112, 1330, 1201}, RatioMed: 1.73, RatioMin: 1.55, RatioMax: 1.92}
	assert.Equal(t, want, got)
}

func TestParseAccess(t *testing.T) {
	got, err := parseAccess(accessOut)
	require.NoError(t, err)
	assert.Equal(t, []float64{17217, 22253}, got.Series["mailarray pop3 pipelined"], "pipelined is not confused with plain pop3")
	assert.Equal(t, []float64{2393, 6396}, got.Series["mailarray pop3"])
	assert.Equal(t, []float64{25551, 49427}, got.Series["dovecot imap"])
	assert.Equal(t, [3]float64{0.91, 0.83, 0.44}, [3]float64{got.RatioPOP3, got.RatioPipeline, got.RatioIMAP})
}

func TestParseSim(t *testing.T) {
	got, err := parseSim(simOut)
	require.NoError(t, err)
	assert.Equal(t, simResult{Msgs: 100000, WallS: 59.6, MsgsPerWallS: 1679, AllocKiBPerMs: 146.2}, got)
}

// A changed or failed script is an error naming what was missing, never
// a table of zeros.
func TestParseRefusesWhatItDoesNotKnow(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"ingest without its ratio", func() error { _, err := parseIngest(strings.SplitN(ingestOut, "ingest ratio", 2)[0]); return err }(), "ingest ratio"},
		{"ingest failed", func() error { _, err := parseIngest("smtp-source failed [1]\n"); return err }(), "postfix msgs/s"},
		{"ingest rounds differ", func() error {
			_, err := parseIngest("postfix msgs/s [1, 2]; mailarray(3 nodes) msgs/s [3]\ningest ratio mailarray/postfix median 1.00 (min 1.00 max 1.00)\n")
			return err
		}(), "2 postfix rounds and 1 mailarray"},
		{"access without imap", func() error {
			_, err := parseAccess(strings.ReplaceAll(accessOut, "mailarray imap", "mailarray imap4"))
			return err
		}(), `"mailarray imap"`},
		{"access without ratios", func() error { _, err := parseAccess(strings.SplitN(accessOut, "retrieval", 2)[0]); return err }(), "retrieval ratio"},
		{"sim without wall-s", func() error { _, err := parseSim(strings.ReplaceAll(simOut, "wall-s", "wall")); return err }(), "wall-s"},
		{"sim failed", func() error { _, err := parseSim("--- FAIL: BenchmarkSimThreeNodeR2\n"); return err }(), "no BenchmarkSimThreeNodeR2"},
	} {
		if assert.Error(t, tt.err, tt.name) {
			assert.Contains(t, tt.err.Error(), tt.want, tt.name)
		}
	}
}

// The page holds one row per path with the figure, the anchor, the ratio
// and whether the goal is met.
func TestMarkdownTable(t *testing.T) {
	r := report{Config: config{Rounds: 3, IngestMsgs: 6000, AccessMsgs: 1000, SimMsgs: 100000}, Machine: machine{NProc: 2, CPU: "Test CPU", Kernel: "6.1", Disk: "/tmp: /dev/vda1 (ext4)"}}
	var err error
	r.Ingest3, err = parseIngest(ingestOut)
	require.NoError(t, err)
	r.Ingest1 = ingestResult{Nodes: 1, Postfix: []float64{600}, Mailarray: []float64{4500}, RatioMed: 7.5, RatioMin: 7.5, RatioMax: 7.5}
	r.Access, err = parseAccess(accessOut)
	require.NoError(t, err)
	r.Sim, err = parseSim(simOut)
	require.NoError(t, err)
	md := r.markdown()
	for _, want := range []string{
		"| 1201 (1112-1330) | Postfix, one copy: 701 (671-715) | 1.73 (1.55-1.92) | >= 3.0 | **missed** |",
		"| 4500 | Postfix, one copy: 600 | 7.50 (7.50-7.50) | >= 7.0 | met |",
		"| 22087 (17407-22087) | Dovecot: 49427 (25551-49427) | 0.44 | >= 1.0 | **missed** |",
		"| 59.6 s wall, 1679 msgs/wall-s | the real array's 3-node ingest above: 1201 msgs/s | 1.40x real | 100000 in <= 20 s (>= 4x real) | **missed** |",
		"2 CPUs (nproc), Test CPU, kernel 6.1",
	} {
		assert.Contains(t, md, want)
	}
}
