package realsoak

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"mailarray/bench"
	"mailarray/chaos"
	"mailarray/sim"
)

// RunResult is one run of the soak.
type RunResult struct {
	Plan  Plan     `json:"plan"`
	Fault FaultLog `json:"fault"`
	// Err is set when the run could not be carried out (the array did not
	// start, a fault could not be applied, the files could not be read):
	// the run counts as failed, its checks may be missing.
	Err string `json:"error,omitempty"`

	Offered   int `json:"offered"`
	Accepted  int `json:"accepted"`
	Rejected  int `json:"rejected"`
	Failed    int `json:"failed"`
	Dropped   int `json:"dropped"`
	Cut       int `json:"cut"` // still unanswered when the load ended: counted as failed
	ReaderDel int `json:"reader_deleted"`
	// ReaderErrors are the load's POP3 readers' errors by kind ("login
	// IN-USE" is a mailbox lock still held).
	ReaderErrors map[string]int `json:"reader_errors,omitempty"`

	// NotQuiet says why the array was not quiescent within QuiesceTimeout
	// ("" when it was); QuietAfter is how long quiescence took.
	NotQuiet   string        `json:"not_quiet,omitempty"`
	QuietAfter time.Duration `json:"quiet_after"`
	Read       *ReadResult   `json:"read,omitempty"`
	// PhantomHolders are catalog locations whose node lacks the copy,
	// asked over the peer API after quiescence and before the POP3 reads
	// (which repair missing copies); FilePhantomHolders the same from the
	// files at the end, checksums included.
	PhantomHolders     Finding       `json:"phantom_holders"`
	FilePhantomHolders Finding       `json:"file_phantom_holders"`
	Check              *chaos.Result `json:"check,omitempty"`

	Wall   time.Duration            `json:"wall"`
	Phases map[string]time.Duration `json:"phases"`
}

// Violations lists every broken rule of the run; empty means it passed.
func (r *RunResult) Violations() []string {
	var out []string
	if r.Err != "" {
		out = append(out, "run error: "+r.Err)
	}
	if r.NotQuiet != "" {
		out = append(out, "not quiescent: "+r.NotQuiet)
	}
	add := func(what string, f Finding) {
		if f.Count > 0 {
			out = append(out, fmt.Sprintf("%s: %d (%v)", what, f.Count, f.IDs))
		}
	}
	if rd := r.Read; rd != nil {
		add("POP3: acknowledged message unreadable from a node", rd.Unreadable)
		add("POP3: duplicated", rd.Duplicated)
		add("POP3: refused transaction visible", rd.Phantom)
		add("POP3: deleted message visible", rd.Resurrected)
		add("POP3: wrong content", rd.Corrupt)
		add("POP3: wrong mailbox", rd.WrongMailbox)
		add("POP3: mailbox unreadable", rd.Sessionless)
	}
	add("phantom holder (listed location lacks the copy, before the reads)", r.PhantomHolders)
	add("phantom holder in the files (after the reads)", r.FilePhantomHolders)
	if r.Check != nil {
		for _, v := range r.Check.Violations() {
			out = append(out, "files: "+v)
		}
	}
	return out
}

// Lost is how many acknowledged messages no live node holds (the files'
// check) or, without it, that some node cannot serve.
func (r *RunResult) Lost() int {
	if r.Check != nil {
		return r.Check.Lost.Count
	}
	if r.Read != nil {
		return r.Read.Unreadable.Count
	}
	return 0
}

// Run carries out seed's run under cfg.Dir/run-<seed>. Progress lines go
// to out (may be nil). It stops every process it started before it
// returns, also on error or when ctx ends.
func Run(ctx context.Context, cfg Config, seed uint64, out io.Writer) *RunResult {
	if out == nil {
		out = io.Discard
	}
	res := &RunResult{Plan: NewPlan(seed, cfg.LoadDuration), Phases: map[string]time.Duration{}}
	t0 := time.Now()
	defer func() { res.Wall = time.Since(t0).Round(time.Millisecond) }()
	if err := run(ctx, cfg, seed, out, res); err != nil {
		res.Err = err.Error()
	}
	return res
}

// RunDir is seed's run directory under dir.
func RunDir(dir string, seed uint64) string {
	return filepath.Join(dir, "run-"+strconv.FormatUint(seed, 10))
}

func run(ctx context.Context, cfg Config, seed uint64, out io.Writer, res *RunResult) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.RunTimeout)
	defer cancel()
	dir := RunDir(cfg.Dir, seed)
	phase := func(name string, since time.Time) { res.Phases[name] = time.Since(since).Round(time.Millisecond) }
	sc, err := scenario(cfg, seed)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("realsoak: %w", err)
	}
	tuning := filepath.Join(cfg.Dir, fmt.Sprintf("tuning-%d.yaml", seed))
	if err := os.WriteFile(tuning, []byte(tuningYAML(cfg)), 0o600); err != nil {
		return fmt.Errorf("realsoak: %w", err)
	}
	defer os.Remove(tuning)
	key := make([]byte, 16)
	rand.Read(key) // crypto/rand.Read does not fail
	peerKey := hex.EncodeToString(key)
	ccfg := bench.DefaultClusterConfig(cfg.Bin, dir, sc)
	ccfg.ReadyTimeout = cfg.ReadyTimeout
	ccfg.ExtraArgs = []string{"--config", tuning, "--peer-key", peerKey}

	t := time.Now()
	fmt.Fprintf(out, "seed %d: %s; starting 3 nodes in %s\n", seed, res.Plan, dir)
	cl, err := bench.StartCluster(ctx, ccfg)
	phase("start", t)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			cl.Close()
		}
	}()

	// The load and the fault, side by side.
	t = time.Now()
	f := &faulter{cfg: cfg, dir: dir, cl: cl, plan: res.Plan, start: t, log: &res.Fault, out: out}
	faultDone := make(chan error, 1)
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	go func() { faultDone <- f.apply(fctx) }()
	rep, lerr := sim.RunReal(ctx, sc, cl.Target(), sim.RealOptions{})
	if lerr != nil {
		fcancel()
	}
	ferr := <-faultDone
	phase("load", t)
	if lerr != nil {
		return lerr
	}
	if ferr != nil {
		res.Fault.Err = ferr.Error()
		return fmt.Errorf("realsoak: fault: %w", ferr)
	}
	tally(res, rep)
	fmt.Fprintf(out, "seed %d: load done: %d offered, %d acknowledged, %d refused, %d failed, %d cut\n",
		seed, res.Offered, res.Accepted, res.Rejected, res.Failed, res.Cut)

	t = time.Now()
	if err := cl.WaitReady(ctx); err != nil {
		return err
	}
	res.QuietAfter, res.NotQuiet = quiesce(ctx, cl, cfg)
	phase("quiesce", t)
	if err := ctx.Err(); err != nil {
		return err
	}

	t = time.Now()
	if res.PhantomHolders, err = liveHolders(ctx, cl, peerKey); err != nil {
		return err
	}
	phase("holders", t)

	t = time.Now()
	res.Read = readAll(ctx, cl, cfg, rep)
	phase("read", t)
	if err := ctx.Err(); err != nil {
		return err
	}

	t = time.Now()
	cl.Close()
	closed = true
	if res.FilePhantomHolders, err = phantomHolders(dir); err != nil {
		return err
	}
	for _, name := range nodeNames {
		rep.Nodes = append(rep.Nodes, sim.NodeReport{Name: name, State: "alive"})
	}
	if res.Check, err = chaos.Check(rep, dir); err != nil {
		return err
	}
	phase("check", t)
	return nil
}

// tally counts the load's outcomes into res. A message still unanswered
// when the load ended counts as failed: its client got no reply.
func tally(res *RunResult, rep *sim.Report) {
	for i := range rep.Records {
		rec := &rep.Records[i]
		if rec.Outcome == sim.Unsent {
			rec.Outcome, rec.Reason = sim.Failed, "cut"
			res.Cut++
		}
		res.Offered++
		switch rec.Outcome {
		case sim.Accepted:
			res.Accepted++
			if rec.Deleted {
				res.ReaderDel++
			}
		case sim.Rejected:
			res.Rejected++
		case sim.Failed:
			res.Failed++
		case sim.Dropped:
			res.Dropped++
		}
	}
	if len(rep.Readers.ErrorsBy) > 0 {
		res.ReaderErrors = rep.Readers.ErrorsBy
	}
}

// scenario is the run's load as a simulator scenario (sim.RunReal's
// input): three nodes, R=2 W=2, no scenario faults (the soak applies its
// own).
func scenario(cfg Config, seed uint64) (sim.Scenario, error) {
	sc := sim.Scenario{
		Name: "soak-real", Seed: seed,
		Duration: sim.Duration(cfg.LoadDuration), Drain: sim.Duration(cfg.Drain),
		Mailboxes: cfg.Mailboxes, Replicas: 2, WriteQuorum: 2,
		DNSTTL: sim.Duration(time.Second),
		Load: sim.LoadSpec{
			Senders: cfg.Senders, Arrival: sim.ArrivalPoisson, RatePerSec: cfg.RatePerSec,
			MessagesPerConnection: 5, SMTPTimeout: sim.Duration(cfg.SMTPTimeout),
			Size:    sim.SizeSpec{Dist: sim.SizeLognormal, MedianBytes: cfg.MessageBytes, Sigma: 0.5, MinBytes: 512, MaxBytes: 16 * cfg.MessageBytes},
			ZipfS:   -1, // uniform: every mailbox gets mail
			Readers: cfg.Readers, ReadInterval: sim.Duration(2 * time.Second), ReadMax: 5,
		},
	}
	for _, n := range nodeNames {
		sc.Nodes = append(sc.Nodes, sim.NodeSpec{Name: n})
	}
	if err := sc.Validate(); err != nil {
		return sc, errors.Join(errors.New("realsoak: scenario"), err)
	}
	return sc, nil
}

// tuningYAML is the nodes' --config file: the tuning knobs only (the
// flags give the rest).
func tuningYAML(cfg Config) string {
	return fmt.Sprintf("tuning:\n  anti-entropy-every: %v\n  maintain-every: %v\n  pending-timeout: %v\n  orphan-grace: %v\n  rebuild-per-scan: %d\n",
		cfg.AntiEntropyEvery, cfg.MaintainEvery, cfg.PendingTimeout, cfg.OrphanGrace, cfg.RebuildPerScan)
}
