package realsoak

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mailarray/bench"
	"mailarray/sim"
)

// nodeNames are the array's nodes.
var nodeNames = []string{"n1", "n2", "n3"}

// storeFile is a node's state under its data directory (docs/deploy.md 7).
const storeFile = "node.db"

// Plan is a run's fault, drawn from its seed. Times are since the load
// started.
type Plan struct {
	Seed uint64 `json:"seed"`
	Kind Kind   `json:"kind"`
	Node string `json:"node"`
	// At is when the fault starts: the SIGKILL, the SIGSTOP, or the stop
	// that puts the backup back.
	At time.Duration `json:"at"`
	// Down: kill, how long the node stays dead before its restart; pause,
	// how long it stays stopped after the others declared it failed.
	Down time.Duration `json:"down"`
	// BackupAt (restore) is when the backup is taken.
	BackupAt time.Duration `json:"backup_at,omitempty"`
	// Crash (restore): the node is stopped for the restore by SIGKILL and
	// restarted at once, before the others notice (a crashed node whose
	// disk was replaced by an older copy), rather than by SIGTERM as
	// docs/deploy.md says (the others see it leave and rebuild at once).
	Crash bool `json:"crash,omitempty"`
}

func (p Plan) String() string {
	switch p.Kind {
	case KindKill:
		return fmt.Sprintf("kill %s at %v, restart %v later", p.Node, p.At, p.Down)
	case KindPause:
		return fmt.Sprintf("pause %s at %v until declared failed, then %v more", p.Node, p.At, p.Down)
	case KindRestore:
		how := "SIGTERM"
		if p.Crash {
			how = "SIGKILL"
		}
		return fmt.Sprintf("backup %s at %v, restore it at %v (%s)", p.Node, p.BackupAt, p.At, how)
	}
	return string(p.Kind)
}

// NewPlan draws seed's fault for a load of loadDuration (>= 5s). The kind
// cycles with the seed, so consecutive seeds cover every kind.
func NewPlan(seed uint64, loadDuration time.Duration) Plan {
	r := rand.New(rand.NewPCG(seed, 0x5eed50a6))
	between := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(r.Int64N(int64(hi-lo)+1)).Round(time.Millisecond)
	}
	p := Plan{Seed: seed, Kind: Kinds[seed%uint64(len(Kinds))], Node: nodeNames[r.IntN(len(nodeNames))]}
	switch p.Kind {
	case KindKill:
		// Down from "back before anyone noticed" to "declared failed and
		// rebuilt from".
		p.At = between(time.Second, loadDuration-2*time.Second)
		p.Down = between(200*time.Millisecond, 8*time.Second)
	case KindPause:
		p.At = between(time.Second, loadDuration-2*time.Second)
		p.Down = between(500*time.Millisecond, 5*time.Second)
	case KindRestore:
		// The backup early, the restore once mail the backup lacks exists.
		p.BackupAt = between(500*time.Millisecond, 2*time.Second)
		p.At = between(p.BackupAt+3*time.Second, loadDuration-time.Second)
		p.Crash = r.IntN(2) == 0
	}
	return p
}

// FaultLog is what applying a plan did, for the report.
type FaultLog struct {
	Steps []string `json:"steps"`
	// Detect is how long the others took to declare a paused node failed.
	Detect time.Duration `json:"detect,omitempty"`
	Err    string        `json:"error,omitempty"`
}

// faulter applies a plan to a running cluster.
type faulter struct {
	cfg   Config
	dir   string // the run's directory, where the backup goes
	cl    *bench.Cluster
	plan  Plan
	start time.Time
	log   *FaultLog
	out   io.Writer
}

func (f *faulter) step(format string, a ...any) {
	s := fmt.Sprintf("%6.2fs ", time.Since(f.start).Seconds()) + fmt.Sprintf(format, a...)
	f.log.Steps = append(f.log.Steps, s)
	if f.out != nil {
		fmt.Fprintf(f.out, "  seed %d: %s\n", f.plan.Seed, s)
	}
}

// sleepUntil waits until at since the load started.
func (f *faulter) sleepUntil(ctx context.Context, at time.Duration) error {
	d := at - time.Since(f.start)
	if d <= 0 {
		return ctx.Err()
	}
	return bench.Sleep(ctx, d)
}

// apply runs the plan; it returns when every node runs again (not
// necessarily ready).
func (f *faulter) apply(ctx context.Context) error {
	p := f.plan
	switch p.Kind {
	case KindKill:
		if err := f.sleepUntil(ctx, p.At); err != nil {
			return err
		}
		f.step("SIGKILL %s", p.Node)
		if err := f.cl.Fault(sim.FaultSpec{Action: sim.FaultCrash, Node: p.Node}); err != nil {
			return err
		}
		if err := f.sleepUntil(ctx, p.At+p.Down); err != nil {
			return err
		}
		return f.startNode(ctx, sim.FaultRestart)
	case KindPause:
		if err := f.sleepUntil(ctx, p.At); err != nil {
			return err
		}
		f.step("SIGSTOP %s", p.Node)
		if err := f.cl.Pause(p.Node); err != nil {
			return err
		}
		t0 := time.Now()
		derr := f.waitDeclaredFailed(ctx)
		f.log.Detect = time.Since(t0).Round(time.Millisecond)
		if derr != nil {
			f.step("%s not declared failed: %v", p.Node, derr)
		} else {
			f.step("%s declared failed by the others after %v", p.Node, f.log.Detect)
			t := time.NewTimer(p.Down)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		f.step("SIGCONT %s", p.Node)
		if err := f.cl.Resume(p.Node); err != nil {
			return err
		}
		return derr
	case KindRestore:
		if err := f.sleepUntil(ctx, p.BackupAt); err != nil {
			return err
		}
		backup := filepath.Join(f.dir, p.Node+"-backup.db")
		db := filepath.Join(f.cl.DataDir(p.Node), storeFile)
		// docs/deploy.md section 7: stop, copy node.db, start.
		f.step("stop %s (SIGTERM) for its backup", p.Node)
		if err := f.cl.Fault(sim.FaultSpec{Action: sim.FaultRemoveNode, Node: p.Node}); err != nil {
			return err
		}
		if err := copyFile(db, backup); err != nil {
			return err
		}
		f.step("copied %s to %s", db, filepath.Base(backup))
		if err := f.startNode(ctx, sim.FaultAddNode); err != nil {
			return err
		}
		if err := f.cl.WaitReady(ctx); err != nil {
			return err
		}
		f.step("%s ready again", p.Node)
		if err := f.sleepUntil(ctx, p.At); err != nil {
			return err
		}
		// To restore: stop, put the file back as node.db, start.
		stop, start := sim.FaultRemoveNode, sim.FaultAddNode
		if p.Crash {
			stop, start = sim.FaultCrash, sim.FaultRestart
		}
		f.step("stop %s (%s) to restore its backup", p.Node, map[bool]string{false: "SIGTERM", true: "SIGKILL"}[p.Crash])
		if err := f.cl.Fault(sim.FaultSpec{Action: stop, Node: p.Node}); err != nil {
			return err
		}
		if err := copyFile(backup, db); err != nil {
			return err
		}
		f.step("restored %s from %s", db, filepath.Base(backup))
		return f.startNode(ctx, start)
	}
	return fmt.Errorf("realsoak: unknown fault kind %q", p.Kind)
}

// startRetries bounds the restarts of a node that could not bind its
// ports: a port the harness chose from the ephemeral range may have been
// taken meanwhile, as the source port of some connection on the machine.
const startRetries = 10

// startNode starts the plan's node again (action restart after a crash,
// add_node after a stop). The cluster's own health wait is short; a node
// that is running but slow to answer is left to the caller's readiness
// wait rather than failing the run. A start that fails because a port is
// taken is tried again (a fault of the harness, not of the array).
func (f *faulter) startNode(ctx context.Context, action string) error {
	name := f.plan.Node
	for attempt := 0; ; attempt++ {
		f.step("start %s", name)
		err := f.cl.Fault(sim.FaultSpec{Action: action, Node: name})
		if err == nil {
			return nil
		}
		if f.cl.Node(name).State == "alive" && strings.Contains(err.Error(), "not healthy") {
			f.step("%s slow to start (%v): waiting for readiness", name, err)
			return nil
		}
		if attempt >= startRetries || !strings.Contains(err.Error(), "exited at start") || !f.portTaken() {
			return err
		}
		f.step("%s could not bind a port (taken meanwhile by another socket): starting it again", name)
		// The exited process is marked crashed so that it can be restarted.
		f.cl.Fault(sim.FaultSpec{Action: sim.FaultCrash, Node: name})
		action = sim.FaultRestart
		if err := bench.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

// portTaken reports whether the plan's node last exited because a listen
// address was in use (the end of its log).
func (f *faulter) portTaken() bool {
	b, err := os.ReadFile(filepath.Join(f.dir, f.plan.Node+".log"))
	if err != nil {
		return false
	}
	return strings.Contains(string(b[max(0, len(b)-2048):]), "address already in use")
}

// waitDeclaredFailed polls the other nodes until each sees the paused node
// other than alive.
func (f *faulter) waitDeclaredFailed(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.DetectTimeout)
	defer cancel()
	for {
		declared := 0
		for _, name := range nodeNames {
			if name == f.plan.Node {
				continue
			}
			st, err := getStatus(ctx, f.cl.Node(name).HTTP)
			if err == nil && memberStatus(st, f.plan.Node) != "alive" {
				declared++
			}
		}
		if declared == len(nodeNames)-1 {
			return nil
		}
		if err := bench.Sleep(ctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("realsoak: %s not declared failed within %v", f.plan.Node, f.cfg.DetectTimeout)
		}
	}
}

// copyFile copies src to dst durably (the backup must survive what the
// node does next).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("realsoak: backup: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("realsoak: backup: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("realsoak: backup: %w", err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("realsoak: backup: %w", err)
	}
	return out.Close()
}
