package main

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The shared scripts (../shared/bench, outside the repository) print
// human-readable lines; these parsers read exactly those lines and fail,
// naming the line they wanted, when the format changes, rather than
// report a figure they misread.

// ingestResult is one run of ingest_compare.py: msgs/s per round of each
// side and the per-round ratios' median, min and max as the script
// computed them.
type ingestResult struct {
	Nodes     int       `json:"nodes"`
	Postfix   []float64 `json:"postfix_msgs_per_s"`
	Mailarray []float64 `json:"mailarray_msgs_per_s"`
	RatioMed  float64   `json:"ratio_median"`
	RatioMin  float64   `json:"ratio_min"`
	RatioMax  float64   `json:"ratio_max"`
}

var (
	ingestRatesRE = regexp.MustCompile(`(?m)^postfix msgs/s \[([^\]]*)\]; mailarray\((\d+) nodes\) msgs/s \[([^\]]*)\]\s*$`)
	ingestRatioRE = regexp.MustCompile(`(?m)^ingest ratio mailarray/postfix median ([0-9.]+) \(min ([0-9.]+) max ([0-9.]+)\)\s*$`)
)

func parseIngest(out string) (ingestResult, error) {
	var r ingestResult
	m := ingestRatesRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("ingest: no line %q in the script's output", "postfix msgs/s [...]; mailarray(N nodes) msgs/s [...]")
	}
	var err error
	if r.Postfix, err = parseList(m[1]); err != nil {
		return r, fmt.Errorf("ingest: postfix figures: %w", err)
	}
	if r.Nodes, err = strconv.Atoi(m[2]); err != nil {
		return r, fmt.Errorf("ingest: nodes: %w", err)
	}
	if r.Mailarray, err = parseList(m[3]); err != nil {
		return r, fmt.Errorf("ingest: mailarray figures: %w", err)
	}
	if len(r.Postfix) == 0 || len(r.Postfix) != len(r.Mailarray) {
		return r, fmt.Errorf("ingest: %d postfix rounds and %d mailarray rounds", len(r.Postfix), len(r.Mailarray))
	}
	m = ingestRatioRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("ingest: no line %q in the script's output", "ingest ratio mailarray/postfix median X (min Y max Z)")
	}
	r.RatioMed, _ = strconv.ParseFloat(m[1], 64) // the pattern admits numbers only
	r.RatioMin, _ = strconv.ParseFloat(m[2], 64)
	r.RatioMax, _ = strconv.ParseFloat(m[3], 64)
	return r, nil
}

// accessResult is one run of access_compare.py: msgs/s per round of each
// series ("dovecot imap", "mailarray pop3 pipelined", ...) and the ratios
// of the medians the script printed.
type accessResult struct {
	Series        map[string][]float64 `json:"msgs_per_s"`
	RatioPOP3     float64              `json:"ratio_pop3"`
	RatioPipeline float64              `json:"ratio_pop3_pipelined"`
	RatioIMAP     float64              `json:"ratio_imap"`
}

// accessSeries are the series access_compare.py prints, in its order.
var accessSeries = []string{"dovecot pop3", "mailarray pop3", "dovecot pop3 pipelined", "mailarray pop3 pipelined", "dovecot imap", "mailarray imap"}

var (
	accessLineRE  = regexp.MustCompile(`(?m)^((?:dovecot|mailarray) (?:pop3 pipelined|pop3|imap))\s+msgs/s \[([^\]]*)\]\s*$`)
	accessRatioRE = regexp.MustCompile(`(?m)^retrieval ratio mailarray/dovecot \(medians\): POP3 ([0-9.]+), POP3 pipelined ([0-9.]+), IMAP ([0-9.]+)\s*$`)
)

func parseAccess(out string) (accessResult, error) {
	r := accessResult{Series: map[string][]float64{}}
	for _, m := range accessLineRE.FindAllStringSubmatch(out, -1) {
		xs, err := parseList(m[2])
		if err != nil {
			return r, fmt.Errorf("access: %s: %w", m[1], err)
		}
		r.Series[m[1]] = xs
	}
	for _, s := range accessSeries {
		if len(r.Series[s]) == 0 {
			return r, fmt.Errorf("access: no figures for %q in the script's output", s)
		}
	}
	m := accessRatioRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("access: no line %q in the script's output", "retrieval ratio mailarray/dovecot (medians): POP3 X, POP3 pipelined Y, IMAP Z")
	}
	r.RatioPOP3, _ = strconv.ParseFloat(m[1], 64)
	r.RatioPipeline, _ = strconv.ParseFloat(m[2], 64)
	r.RatioIMAP, _ = strconv.ParseFloat(m[3], 64)
	return r, nil
}

// simResult is BenchmarkSimThreeNodeR2's line: messages (b.N), and the
// metrics it reports.
type simResult struct {
	Msgs          int     `json:"msgs"`
	WallS         float64 `json:"wall_s"`
	MsgsPerWallS  float64 `json:"msgs_per_wall_s"`
	AllocKiBPerMs float64 `json:"alloc_kib_per_msg"`
}

var simLineRE = regexp.MustCompile(`(?m)^BenchmarkSimThreeNodeR2(?:-\d+)?\s+(\d+)\s+(.*)$`)

func parseSim(out string) (simResult, error) {
	var r simResult
	m := simLineRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("sim: no BenchmarkSimThreeNodeR2 result line in go test's output")
	}
	r.Msgs, _ = strconv.Atoi(m[1])
	// The rest is "value unit" pairs: 123 ns/op  1679 msgs/wall-s ...
	f := strings.Fields(m[2])
	metrics := map[string]float64{}
	for i := 0; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return r, fmt.Errorf("sim: metric %q: %w", f[i]+" "+f[i+1], err)
		}
		metrics[f[i+1]] = v
	}
	var ok bool
	if r.WallS, ok = metrics["wall-s"]; !ok {
		return r, fmt.Errorf("sim: no wall-s metric in %q", m[0])
	}
	if r.MsgsPerWallS, ok = metrics["msgs/wall-s"]; !ok {
		return r, fmt.Errorf("sim: no msgs/wall-s metric in %q", m[0])
	}
	r.AllocKiBPerMs = metrics["alloc-KiB/msg"]
	return r, nil
}

// parseList reads the scripts' Python lists of rounded numbers: "1112, 1330".
func parseList(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// median is the scripts' median: the upper middle of the sorted figures.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
