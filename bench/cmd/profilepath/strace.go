package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Syscall counts come from `strace -c -f -p PID`, one strace per node,
// attached for a window of load and detached with SIGINT (strace then
// prints its summary). strace slows the traced process a great deal: the
// counts per message are what this pass is for, never its throughput,
// and it runs apart from the CPU-profile pass.

type syscallCount struct {
	Name    string
	Calls   int64
	Seconds float64
}

type straceSummary struct {
	Calls []syscallCount // most calls first
	Total int64
}

// parseStrace reads strace -c's table.
func parseStrace(r io.Reader) (straceSummary, error) {
	var s straceSummary
	sc := bufio.NewScanner(r)
	header := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[0] == "%" {
			header = true
			continue
		}
		if !header || len(f) < 5 || strings.HasPrefix(f[0], "---") {
			continue
		}
		// % time, seconds, usecs/call, calls, [errors], syscall
		name := f[len(f)-1]
		secs, err1 := strconv.ParseFloat(f[1], 64)
		calls, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			return s, fmt.Errorf("strace: unexpected line %q", sc.Text())
		}
		if name == "total" {
			s.Total = calls
			continue
		}
		s.Calls = append(s.Calls, syscallCount{name, calls, secs})
	}
	if !header {
		return s, fmt.Errorf("strace: no summary table (was the process traced?)")
	}
	sort.Slice(s.Calls, func(i, j int) bool {
		if s.Calls[i].Calls != s.Calls[j].Calls {
			return s.Calls[i].Calls > s.Calls[j].Calls
		}
		return s.Calls[i].Name < s.Calls[j].Name
	})
	return s, sc.Err()
}

// tracer is one strace attached to one node.
type tracer struct {
	node string
	out  string
	cmd  *exec.Cmd
}

func startStrace(n *procNode, dir string) (*tracer, error) {
	t := &tracer{node: n.name, out: dir + "/" + n.name + ".strace"}
	t.cmd = exec.Command("strace", "-c", "-f", "-o", t.out, "-p", strconv.Itoa(n.cmd.Process.Pid))
	t.cmd.Stderr = io.Discard // "Process N attached" per thread
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("strace %s: %w (is strace installed, and ptrace allowed?)", n.name, err)
	}
	return t, nil
}

// stop detaches strace and reads its summary.
func (t *tracer) stop() (straceSummary, error) {
	_ = t.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- t.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = t.cmd.Process.Kill()
		<-done
	}
	f, err := os.Open(t.out)
	if err != nil {
		return straceSummary{}, err
	}
	defer f.Close()
	return parseStrace(f)
}

func formatStrace(w io.Writer, s straceSummary, msgs int64, top int) {
	fmt.Fprintf(w, "  %-20s %10s %10s %10s\n", "syscall", "calls", "calls/msg", "sys-s")
	for i, c := range s.Calls {
		if i == top {
			break
		}
		fmt.Fprintf(w, "  %-20s %10d %10.2f %10.3f\n", c.Name, c.Calls, float64(c.Calls)/float64(max(msgs, 1)), c.Seconds)
	}
	fmt.Fprintf(w, "  %-20s %10d %10.2f\n", "total", s.Total, float64(s.Total)/float64(max(msgs, 1)))
}
