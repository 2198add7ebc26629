// Command benchanchors runs the side-by-side comparisons of issue 21 on
// this machine and writes the table of ratios (make bench-anchors):
//
//	benchanchors -shared ../shared/bench -out results/anchors.md
//
// It calls the shared scripts, which live outside the repository
// (ingest_compare.py: Postfix's smtp-source against a private Postfix and
// a 3-node R=2 W=2 array, then against one node; access_compare.py: POP3
// and IMAP reads against Dovecot), and the simulator's benchmark
// BenchmarkSimThreeNodeR2, passes their output through to the terminal,
// parses it (parse.go), and renders one table: this project's figure,
// the anchor's, the ratio and the goal per path, with the machine, the
// commit, the date, the exact commands and the run's duration. The last
// line it prints is the same figures as one JSON object ("anchors-json:").
//
// Nothing here changes how the array runs: the scripts start it with R=2
// W=2 (R=1 for one node), fsync on, the shipped pipeline.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchanchors:", err)
		os.Exit(1)
	}
}

// config is the run's shape; flags override the environment's
// ANCHOR_* variables (the Makefile's knobs), which override the issue's
// method.
type config struct {
	Shared      string // directory of the shared scripts
	Out         string // markdown page to write
	Rounds      int    // alternating rounds per comparison
	IngestMsgs  int    // messages per ingest round
	AccessMsgs  int    // messages in the read mailbox
	SimMsgs     int    // messages of the simulator run
	StepTimeout time.Duration
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func run(args []string) error {
	fs := flag.NewFlagSet("benchanchors", flag.ContinueOnError)
	var c config
	// ANCHOR_MSGS sets both message counts (a smoke run's one knob);
	// ANCHOR_INGEST_MSGS and ANCHOR_ACCESS_MSGS set one each.
	msgs := envInt("ANCHOR_MSGS", 0)
	ingestDef, accessDef := 6000, 1000
	if msgs > 0 {
		ingestDef, accessDef = msgs, msgs
	}
	fs.StringVar(&c.Shared, "shared", os.Getenv("SHARED_BENCH"), "directory of the shared scripts (ingest_compare.py, access_compare.py)")
	fs.StringVar(&c.Out, "out", "results/anchors.md", "markdown page to write")
	fs.IntVar(&c.Rounds, "rounds", envInt("ANCHOR_ROUNDS", 3), "alternating rounds per comparison (ANCHOR_ROUNDS)")
	fs.IntVar(&c.IngestMsgs, "ingest-msgs", envInt("ANCHOR_INGEST_MSGS", ingestDef), "messages per ingest round (ANCHOR_INGEST_MSGS, or ANCHOR_MSGS)")
	fs.IntVar(&c.AccessMsgs, "access-msgs", envInt("ANCHOR_ACCESS_MSGS", accessDef), "messages in the mailbox read (ANCHOR_ACCESS_MSGS, or ANCHOR_MSGS)")
	fs.IntVar(&c.SimMsgs, "sim-msgs", envInt("ANCHOR_SIM_MSGS", 100000), "messages of the simulator run (ANCHOR_SIM_MSGS)")
	fs.DurationVar(&c.StepTimeout, "step-timeout", 60*time.Minute, "longest any one comparison may take")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Shared == "" {
		c.Shared = "../shared/bench"
	}
	for _, s := range []string{"ingest_compare.py", "access_compare.py", "mailbar.py", "postfix-anchor.sh"} {
		if _, err := os.Stat(filepath.Join(c.Shared, s)); err != nil {
			return fmt.Errorf("the shared side-by-side scripts are missing: no %s in %s (they live outside the repository, beside the checkout; set SHARED_BENCH=/path/to/shared/bench)", s, c.Shared)
		}
	}
	if _, err := os.Stat("Makefile"); err != nil {
		return errors.New("run from the repository's root (the shared scripts build bin/mailarray there with make build)")
	}

	rep := report{Config: c, Start: time.Now().UTC(), Machine: readMachine()}
	rep.Commit = gitCommit()
	ctx := context.Background()
	py := func(script string, n int) []string {
		return []string{"python3", filepath.Join(c.Shared, script), strconv.Itoa(c.Rounds), strconv.Itoa(n)}
	}
	steps := []struct {
		name string
		env  []string
		argv []string
		use  func(out string) error
	}{
		{"ingest, 3 nodes R=2 W=2 vs Postfix", []string{"NODES=3"}, py("ingest_compare.py", c.IngestMsgs), func(out string) (err error) {
			rep.Ingest3, err = parseIngest(out)
			return err
		}},
		{"ingest, one node R=1 vs Postfix", []string{"NODES=1"}, py("ingest_compare.py", c.IngestMsgs), func(out string) (err error) {
			rep.Ingest1, err = parseIngest(out)
			return err
		}},
		{"IMAP and POP3 reads vs Dovecot", nil, py("access_compare.py", c.AccessMsgs), func(out string) (err error) {
			rep.Access, err = parseAccess(out)
			return err
		}},
		{"simulator, 3 nodes R=2", nil, []string{"go", "test", "./sim", "-run", "^$", "-bench", "^BenchmarkSimThreeNodeR2$",
			"-benchtime", strconv.Itoa(c.SimMsgs) + "x", "-count", "1", "-timeout", "60m"}, func(out string) (err error) {
			rep.Sim, err = parseSim(out)
			return err
		}},
	}
	for _, s := range steps {
		fmt.Printf("benchanchors: %s: %s\n", s.name, shellLine(s.env, s.argv))
		t0 := time.Now()
		out, err := runStep(ctx, c.StepTimeout, s.env, s.argv)
		rep.Steps = append(rep.Steps, step{Name: s.name, Command: shellLine(s.env, s.argv), Seconds: time.Since(t0).Seconds(), Output: out})
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if err := s.use(out); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	rep.Duration = time.Since(rep.Start)
	if err := os.MkdirAll(filepath.Dir(c.Out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(c.Out, []byte(rep.markdown()), 0o644); err != nil {
		return err
	}
	j, err := json.Marshal(rep.summary())
	if err != nil {
		return err
	}
	fmt.Printf("benchanchors: wrote %s in %s\nanchors-json: %s\n", c.Out, rep.Duration.Round(time.Second), j)
	return nil
}

// runStep runs one comparison with its output passed through to the
// terminal as it comes (the scripts take minutes) and kept for parsing.
func runStep(ctx context.Context, timeout time.Duration, env, argv []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(os.Stdout, &buf)
	cmd.Stderr = io.MultiWriter(os.Stderr, &buf)
	err := cmd.Run()
	if err != nil {
		return buf.String(), fmt.Errorf("%s: %w", shellLine(env, argv), err)
	}
	return buf.String(), nil
}

// shellLine is the command as one would type it.
func shellLine(env, argv []string) string {
	var parts []string
	parts = append(parts, env...)
	for _, a := range argv {
		if strings.ContainsAny(a, " ^$*'\"") {
			a = "'" + a + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}
