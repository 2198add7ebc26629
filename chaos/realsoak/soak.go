package realsoak

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// Summary is a whole soak: every run, in seed order.
type Summary struct {
	FirstSeed uint64        `json:"first_seed"`
	Runs      []*RunResult  `json:"runs"`
	Wall      time.Duration `json:"wall"`
	// Interrupted: the soak stopped before its last run (Ctrl-C).
	Interrupted bool `json:"interrupted,omitempty"`
}

// Failed lists the runs with a violation or an error.
func (s *Summary) Failed() []*RunResult {
	var out []*RunResult
	for _, r := range s.Runs {
		if len(r.Violations()) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// Soak runs seeds first .. first+runs-1 in turn, one array at a time (the
// machine is small). A passing run's directory is removed unless
// cfg.KeepPassing; a failing run's stays, with the node logs and files.
// after, if set, is called after every run (to rewrite the report, so an
// interrupted soak still leaves one).
func Soak(ctx context.Context, cfg Config, first uint64, runs int, out io.Writer, after func(*Summary)) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.Bin); err != nil {
		return nil, fmt.Errorf("realsoak: %w (run make build)", err)
	}
	s := &Summary{FirstSeed: first}
	t0 := time.Now()
	defer func() { s.Wall = time.Since(t0).Round(time.Second) }()
	for i := range runs {
		if ctx.Err() != nil {
			s.Interrupted = true
			break
		}
		seed := first + uint64(i)
		r := Run(ctx, cfg, seed, out)
		if ctx.Err() != nil && r.Err != "" {
			// Cut short by the interrupt: not a finding.
			s.Interrupted = true
			break
		}
		s.Runs = append(s.Runs, r)
		v := r.Violations()
		verdict := "ok"
		if len(v) > 0 {
			verdict = fmt.Sprintf("FAIL (%d)", len(v))
		}
		fmt.Fprintf(out, "seed %d: %s: %s in %v; %d acknowledged, %d lost\n", seed, r.Plan.Kind, verdict, r.Wall, r.Accepted, r.Lost())
		for _, x := range v {
			fmt.Fprintf(out, "seed %d:   %s\n", seed, x)
		}
		if len(v) == 0 && !cfg.KeepPassing {
			os.RemoveAll(RunDir(cfg.Dir, seed))
		}
		if after != nil {
			s.Wall = time.Since(t0).Round(time.Second)
			after(s)
		}
	}
	return s, nil
}
