// Command soakreport writes the report of a chaos soak (make chaos-soak,
// chaos/soak.sh) from the JSON its processes wrote (chaos.SoakShard):
//
//	soakreport -out results/chaos-soak.md -commit abc1234 -wall 3600 shard-0.json shard-1.json
//
// It exits 1 when a run broke an invariant, did not finish, or missed a
// targeted failpoint, after writing the report.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"mailarray/chaos"
)

func main() {
	bad, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "soakreport:", err)
		os.Exit(2)
	}
	if bad > 0 {
		fmt.Fprintf(os.Stderr, "soakreport: %d runs failed (see the report's Failures)\n", bad)
		os.Exit(1)
	}
}

func run(args []string) (int, error) {
	fs := flag.NewFlagSet("soakreport", flag.ContinueOnError)
	out := fs.String("out", "results/chaos-soak.md", "report to write")
	commit := fs.String("commit", "unknown", "commit the soak ran")
	wall := fs.Float64("wall", 0, "wall time of the whole soak, seconds")
	if err := fs.Parse(args); err != nil {
		return 0, err
	}
	if fs.NArg() == 0 {
		return 0, errors.New("no shard files")
	}
	var shards []chaos.SoakShard
	bad := 0
	for _, f := range fs.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		var sh chaos.SoakShard
		if err := json.Unmarshal(b, &sh); err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		for _, r := range sh.Runs {
			if r.Err != "" || len(r.NotFired) > 0 || (r.Check != nil && len(r.Check.Violations()) > 0) {
				bad++
			}
		}
		shards = append(shards, sh)
	}
	md := chaos.SoakMarkdown(shards, *commit, time.Duration(*wall*float64(time.Second)))
	if err := os.WriteFile(*out, md, 0o644); err != nil {
		return 0, err
	}
	return bad, nil
}
