package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"mailarray/node"
	"mailarray/node/env"
	"mailarray/sim"
)

// ClusterConfig describes a scenario's array as `mailarray serve`
// processes on loopback (bench-real).
type ClusterConfig struct {
	// Bin is the mailarray binary (make build: bin/mailarray).
	Bin string
	// Dir holds the users file, one data directory and one log per node.
	// It is wiped at the start.
	Dir string
	// Scenario gives the nodes, R, W, strategies, weights, domain and
	// mailboxes. Its modeled costs cannot be imposed on real hardware.
	Scenario sim.Scenario
	// ReadyTimeout bounds the wait for the initial nodes to be ready (HTTP
	// /readyz and every initial node alive in each one's membership).
	ReadyTimeout time.Duration
	// StopGrace bounds a node's shutdown after SIGTERM; then SIGKILL.
	StopGrace time.Duration
	// LogLevel of the nodes (their logs go to Dir/<name>.log).
	LogLevel string
	// ExtraArgs are appended to every node's command line, after the
	// cluster's own flags (which they override): a --config file of tuning
	// knobs, a --peer-key (the real-process soak, chaos/realsoak).
	ExtraArgs []string
}

// DefaultClusterConfig returns the settings bench-real uses.
func DefaultClusterConfig(bin, dir string, sc sim.Scenario) ClusterConfig {
	return ClusterConfig{Bin: bin, Dir: dir, Scenario: sc, ReadyTimeout: 60 * time.Second, StopGrace: 20 * time.Second, LogLevel: "warn"}
}

// Validate reports nonsensical values.
func (c ClusterConfig) Validate() error {
	var errs []error
	if c.Bin == "" {
		errs = append(errs, errors.New("bench: cluster: Bin is empty"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("bench: cluster: Dir is empty"))
	}
	if c.ReadyTimeout <= 0 || c.StopGrace <= 0 {
		errs = append(errs, errors.New("bench: cluster: ReadyTimeout and StopGrace must be > 0"))
	}
	if len(c.Scenario.Nodes) == 0 {
		errs = append(errs, errors.New("bench: cluster: the scenario has no nodes"))
	}
	return errors.Join(errs...)
}

// Limits of the real cluster.
const (
	// statusTimeout bounds one HTTP request to a node.
	statusTimeout = 5 * time.Second
	// lostCheckWorkers bounds the parallel copy lookups of the lost check.
	lostCheckWorkers = 16
	// sessionsPerIPSlack: every load client is 127.0.0.1, so the per-IP
	// session limit is raised to the client pool plus this.
	sessionsPerIPSlack = 64
	// startTimeout bounds the wait for a node started by a fault (add,
	// restart) to answer /healthz.
	startTimeout = 15 * time.Second
)

// Cluster is a scenario's nodes running as processes on loopback.
type Cluster struct {
	cfg    ClusterConfig
	net    env.Net
	client *http.Client
	users  string
	nodes  []*RealNode

	mu sync.Mutex // guards the nodes' processes and states
}

// RealNode is one node's addresses and process.
type RealNode struct {
	Spec                                sim.NodeSpec
	SMTP, POP3, DNS, HTTP, Peer, Gossip string
	// State is alive, crashed, removed or spare, as in the simulator.
	State string
	// Paused: the process is stopped (SIGSTOP) and State is still alive.
	Paused bool

	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
	// cpu is the CPU time of the incarnations that have exited.
	cpu time.Duration
}

// StartCluster allocates ports, writes the users file and starts the
// scenario's initial nodes, then waits until they are ready and see each
// other alive. On error every started process is stopped.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.Bin); err != nil {
		return nil, fmt.Errorf("bench: cluster: %w (run make build)", err)
	}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, fmt.Errorf("bench: cluster: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: cluster: %w", err)
	}
	c := &Cluster{cfg: cfg, net: &env.RealNet{}, client: &http.Client{Timeout: statusTimeout}, users: filepath.Join(cfg.Dir, "users")}
	sc := cfg.Scenario
	lines := "# mailboxes of scenario " + sc.Name + " (bench-real)\n" + strings.Join(sim.MailboxLines(sc.Mailboxes, sc.Domain), "\n") + "\n"
	if err := os.WriteFile(c.users, []byte(lines), 0o600); err != nil {
		return nil, fmt.Errorf("bench: cluster: %w", err)
	}
	ports, err := freePorts(c.net, 6*len(sc.Nodes))
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])) }
	for i, spec := range sc.Nodes {
		b := 6 * i
		c.nodes = append(c.nodes, &RealNode{Spec: spec, State: "spare",
			SMTP: addr(b), POP3: addr(b + 1), DNS: addr(b + 2), HTTP: addr(b + 3), Peer: addr(b + 4), Gossip: addr(b + 5)})
	}
	for _, n := range c.nodes {
		if n.Spec.Spare {
			continue
		}
		if err := c.start(n); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.waitReady(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// freePorts finds n distinct loopback ports free for both TCP and UDP
// (DNS and gossip use both). The listeners are held until all are found.
func freePorts(n env.Net, count int) ([]int, error) {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < count; tries++ {
		if tries > 10*count {
			return nil, errors.New("bench: cluster: no free loopback ports")
		}
		l, err := n.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("bench: cluster: %w", err)
		}
		closers = append(closers, l)
		p := l.Addr().(*net.TCPAddr).Port
		u, err := n.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		closers = append(closers, u)
		ports = append(ports, p)
	}
	return ports, nil
}

// Node returns the node called name, or nil.
func (c *Cluster) Node(name string) *RealNode {
	for _, n := range c.nodes {
		if n.Spec.Name == name {
			return n
		}
	}
	return nil
}

// args is node n's command line.
func (c *Cluster) args(n *RealNode) []string {
	sc := c.cfg.Scenario
	a := []string{"serve",
		"--name", n.Spec.Name,
		"--data", filepath.Join(c.cfg.Dir, n.Spec.Name),
		"--domain", sc.Domain,
		"--users", c.users,
		"--smtp", n.SMTP, "--pop3", n.POP3, "--dns", n.DNS, "--http", n.HTTP, "--peer", n.Peer,
		"--gossip", n.Gossip, "--gossip-profile", "local",
		"--replicas", strconv.Itoa(sc.Replicas), "--write-quorum", strconv.Itoa(sc.WriteQuorum),
		"--dns-strategy", sc.DNSStrategy, "--placement-strategy", sc.PlacementStrategy,
		"--dns-ttl", sc.DNSTTL.D().String(),
		"--weight", strconv.Itoa(n.Spec.Weight),
		"--max-message-bytes", strconv.FormatInt(max(int64(64<<20), 2*int64(sc.Load.Size.MaxBytes)), 10),
		"--smtp-max-sessions-per-ip", strconv.Itoa(sc.Load.Senders + sc.Load.Readers + sessionsPerIPSlack),
		"--log-level", c.cfg.LogLevel,
	}
	a = append(a, c.cfg.ExtraArgs...)
	// Join every other node that runs (none for the first to start).
	for _, o := range c.nodes {
		if o != n && o.State == "alive" {
			a = append(a, "--join", o.Gossip)
		}
	}
	return a
}

// start starts a new process for n. The caller holds no lock.
func (c *Cluster) start(n *RealNode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(c.cfg.Dir, n.Spec.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("bench: cluster: %w", err)
	}
	cmd := exec.Command(c.cfg.Bin, c.args(n)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C reaches only benchreal, which then
	// stops the nodes in order. Where the OS can, the node is also killed
	// when this process dies without stopping it (kill -9, a panic).
	cmd.SysProcAttr = nodeProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("bench: cluster: start %s: %w", n.Spec.Name, err)
	}
	done := make(chan struct{})
	n.cmd, n.done, n.State, n.Paused = cmd, done, "alive", false
	go func() {
		cmd.Wait()
		logf.Close()
		c.mu.Lock()
		if cmd.ProcessState != nil {
			n.cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		c.mu.Unlock()
		close(done)
	}()
	return nil
}

// getJSON fetches url into v.
func (c *Cluster) getJSON(ctx context.Context, url string, v any) error {
	return getJSON(ctx, c.client, url, v)
}

func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// waitReady waits until every alive node answers /readyz and sees every
// alive node alive.
func (c *Cluster) waitReady(ctx context.Context) error {
	notReady := fmt.Errorf("bench: cluster: not ready after %v (logs in %s)", c.cfg.ReadyTimeout, c.cfg.Dir)
	return pollReady(ctx, c.cfg.ReadyTimeout, 200*time.Millisecond, notReady, func(ctx context.Context) (bool, error) {
		alive := c.alive()
		for _, n := range alive {
			select {
			case <-n.done:
				return false, fmt.Errorf("bench: cluster: %s exited during startup; see %s", n.Spec.Name, filepath.Join(c.cfg.Dir, n.Spec.Name+".log"))
			default:
			}
			if !seesAlive(ctx, c.client, "http://"+n.HTTP+"/v1/status", len(alive)) || !answersOK(ctx, c.client, "http://"+n.HTTP+"/readyz") {
				return false, nil
			}
		}
		return true, nil
	})
}

// Target is the array as the real-time load generator reaches it: the DNS
// listeners of the nodes running now, and every node's SMTP and POP3.
func (c *Cluster) Target() sim.RealTarget {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := sim.RealTarget{Net: c.net, SMTP: map[string]string{}, POP3: map[string]string{}}
	for _, n := range c.nodes {
		if n.State == "alive" {
			t.DNS = append(t.DNS, n.DNS)
		}
		t.SMTP[n.Spec.Name], t.POP3[n.Spec.Name] = n.SMTP, n.POP3
	}
	return t
}

// ErrFaultUnsupported is returned by Fault for faults that real sockets
// cannot express (partition, heal, slow_disk, lossy_link, the disk faults).
var ErrFaultUnsupported = errors.New("not supported on real sockets: skipped")

// Fault applies one scenario fault to the processes: crash is SIGKILL,
// restart and add_node start the node (on its data directory), and
// remove_node is SIGTERM (graceful: drain, leave).
func (c *Cluster) Fault(f sim.FaultSpec) error {
	n := c.Node(f.Node)
	c.mu.Lock()
	state := ""
	if n != nil {
		state = n.State
	}
	c.mu.Unlock()
	switch f.Action {
	case sim.FaultCrash:
		if state != "alive" {
			return fmt.Errorf("bench: crash %s: node is %s", f.Node, state)
		}
		c.mu.Lock()
		n.State = "crashed"
		err := n.cmd.Process.Signal(syscall.SIGKILL)
		c.mu.Unlock()
		<-n.done
		return err
	case sim.FaultRestart, sim.FaultAddNode:
		if f.Disk != sim.DiskKeep {
			return ErrFaultUnsupported // restarting from a backup or an empty disk is the simulator's
		}
		if (f.Action == sim.FaultRestart && state != "crashed") || (f.Action == sim.FaultAddNode && state != "spare" && state != "removed") {
			return fmt.Errorf("bench: %s %s: node is %s", f.Action, f.Node, state)
		}
		if err := c.start(n); err != nil {
			return err
		}
		return c.waitHealthy(n)
	case sim.FaultRemoveNode:
		if state != "alive" {
			return fmt.Errorf("bench: remove %s: node is %s", f.Node, state)
		}
		c.stop(n, "removed")
		return nil
	default:
		return ErrFaultUnsupported
	}
}

// Pause freezes node name's process with SIGSTOP: it keeps its sockets
// and files but answers nothing, as a stalled VM or a debugger would; its
// peers declare it failed after the detection time. Resume thaws it.
func (c *Cluster) Pause(name string) error {
	return c.freeze(name, true)
}

// Resume thaws a node Pause froze (SIGCONT).
func (c *Cluster) Resume(name string) error {
	return c.freeze(name, false)
}

func (c *Cluster) freeze(name string, pause bool) error {
	n := c.Node(name)
	if n == nil {
		return fmt.Errorf("bench: pause %s: no such node", name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.State != "alive" || n.cmd == nil || n.Paused == pause {
		return fmt.Errorf("bench: pause=%v %s: node is %s (paused %v)", pause, name, n.State, n.Paused)
	}
	sig := syscall.SIGCONT
	if pause {
		sig = syscall.SIGSTOP
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("bench: pause=%v %s: %w", pause, name, err)
	}
	n.Paused = pause
	return nil
}

// DataDir is node name's data directory (its node.db and serf snapshot).
func (c *Cluster) DataDir(name string) string {
	return filepath.Join(c.cfg.Dir, name)
}

// WaitReady waits, up to ReadyTimeout, until every running node answers
// /readyz and sees every running node alive (after a restart, say).
func (c *Cluster) WaitReady(ctx context.Context) error {
	return c.waitReady(ctx)
}

// waitHealthy waits for a started node's /healthz.
func (c *Cluster) waitHealthy(n *RealNode) error {
	notHealthy := fmt.Errorf("bench: %s not healthy after %v", n.Spec.Name, startTimeout)
	return pollReady(context.Background(), startTimeout, 100*time.Millisecond, notHealthy, func(ctx context.Context) (bool, error) {
		if answersOK(ctx, c.client, "http://"+n.HTTP+"/healthz") {
			return true, nil
		}
		select {
		case <-n.done:
			return false, fmt.Errorf("bench: %s exited at start; see its log", n.Spec.Name)
		default:
			return false, nil
		}
	})
}

// stop sends SIGTERM, waits StopGrace, then SIGKILL.
func (c *Cluster) stop(n *RealNode, state string) {
	c.mu.Lock()
	cmd, done, paused := n.cmd, n.done, n.Paused
	if n.State == "alive" {
		n.State = state
	}
	n.Paused = false
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if paused {
		// A stopped process keeps the SIGTERM pending until it runs again.
		cmd.Process.Signal(syscall.SIGCONT)
	}
	select {
	case <-done:
	case <-time.After(c.cfg.StopGrace):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// UnderReplicated sums the live nodes' under-replicated entries (their
// last maintenance scan, from the peer API's cheap /v1/load).
func (c *Cluster) UnderReplicated() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	var sum int64
	for _, n := range c.alive() {
		var l struct {
			UnderReplicated int64 `json:"under_replicated"`
		}
		if err := c.getJSON(ctx, "http://"+n.Peer+"/v1/load", &l); err == nil {
			sum += l.UnderReplicated
		}
	}
	return sum
}

func (c *Cluster) alive() []*RealNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*RealNode
	for _, n := range c.nodes {
		if n.State == "alive" {
			out = append(out, n)
		}
	}
	return out
}

// Fill completes a real run's report with what only the nodes know: each
// node's copies, catalog and rebuild counters (GET /v1/status), its CPU
// time (/proc), the imbalance, and the lost check: every accepted message
// no reader deleted must have a copy on some live node (HEAD
// /v1/copies/<id> on the peer API). wall is the run's wall time.
func (c *Cluster) Fill(ctx context.Context, rep *sim.Report, wall time.Duration) error {
	smtpBy := acceptedBy(rep)
	var totalCopies int
	var totalBytes int64
	var liveCopies, liveBytes, liveSMTP []float64
	rep.Nodes = nil
	rep.Rebuild.Copies, rep.Rebuild.Bytes = 0, 0
	cores := float64(runtime.NumCPU())
	for _, n := range c.nodes {
		c.mu.Lock()
		state := n.State
		c.mu.Unlock()
		nr := sim.NodeReport{Name: n.Spec.Name, IP: "127.0.0.1", State: state, SMTPAccepted: smtpBy[n.Spec.Name]}
		if state == "alive" {
			var st node.Status
			if err := c.getJSON(ctx, "http://"+n.HTTP+"/v1/status", &st); err != nil {
				return fmt.Errorf("bench: status of %s: %w", n.Spec.Name, err)
			}
			nr.Copies, nr.CopyBytes = st.Copies, st.CopyBytes
			for _, v := range st.Entries {
				nr.CatalogEntries += v
			}
			nr.RebuiltCopies, nr.RebuiltBytes = st.Rebuild.RebuiltCopies, st.Rebuild.RebuiltBytes
			totalCopies += nr.Copies
			totalBytes += nr.CopyBytes
			liveCopies = append(liveCopies, float64(nr.Copies))
			liveBytes = append(liveBytes, float64(nr.CopyBytes))
			liveSMTP = append(liveSMTP, float64(nr.SMTPAccepted))
		}
		cpu := c.cpuTime(n)
		nr.CPUBusySeconds = round(cpu.Seconds(), 3)
		if wall > 0 {
			nr.CPUUtilization = round(cpu.Seconds()/(cores*wall.Seconds()), 4)
		}
		rep.Rebuild.Copies += nr.RebuiltCopies
		rep.Rebuild.Bytes += nr.RebuiltBytes
		rep.Nodes = append(rep.Nodes, nr)
	}
	for i := range rep.Nodes {
		nr := &rep.Nodes[i]
		if nr.State != "alive" {
			continue
		}
		if totalCopies > 0 {
			nr.ShareCopies = round(float64(nr.Copies)/float64(totalCopies), 4)
		}
		if totalBytes > 0 {
			nr.ShareBytes = round(float64(nr.CopyBytes)/float64(totalBytes), 4)
		}
	}
	rep.Imbalance = sim.NewImbalance(liveCopies, liveBytes, liveSMTP)
	return c.checkLost(ctx, rep)
}

// CPUTime is the CPU time (user + system) of every node's processes so
// far, running and exited: what make calibrate divides by the messages.
func (c *Cluster) CPUTime() time.Duration {
	var sum time.Duration
	for _, n := range c.nodes {
		sum += c.cpuTime(n)
	}
	return sum
}

// cpuTime is n's CPU time: exited incarnations plus the running one's
// (/proc/<pid>/stat utime + stime).
func (c *Cluster) cpuTime(n *RealNode) time.Duration {
	c.mu.Lock()
	cpu, cmd, state := n.cpu, n.cmd, n.State
	c.mu.Unlock()
	if state != "alive" || cmd == nil || cmd.Process == nil {
		return cpu
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return cpu
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3; utime and stime are fields 14 and 15.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return cpu
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return cpu + time.Duration(ut+st)*time.Second/clockTicks
}

// checkLost asks the live nodes for a copy of every accepted message no
// reader deleted.
func (c *Cluster) checkLost(ctx context.Context, rep *sim.Report) error {
	var peers []string
	for _, n := range c.alive() {
		peers = append(peers, n.Peer)
	}
	return CheckLost(ctx, c.client, peers, rep)
}

// CheckLost asks the peer APIs (host:port) for a copy of every accepted
// message of rep no reader deleted, and sets rep.Lost and rep.LostIDs:
// the lost check of bench-real and of the truth run's containers.
func CheckLost(ctx context.Context, client *http.Client, peers []string, rep *sim.Report) error {
	var ids []string
	for i := range rep.Records {
		r := &rep.Records[i]
		if r.Outcome == sim.Accepted && !r.Deleted && !r.MaybeDeleted && r.ID != "" {
			ids = append(ids, r.CopyID())
		}
	}
	work := make(chan string)
	var mu sync.Mutex
	var lost []string
	var firstErr error
	var wg sync.WaitGroup
	for range lostCheckWorkers {
		wg.Go(func() {
			for id := range work {
				found, err := hasCopy(ctx, client, peers, id)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if !found && err == nil {
					lost = append(lost, id)
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("bench: lost check: %w", firstErr)
	}
	rep.Lost = len(lost)
	rep.LostIDs = []string{}
	for _, id := range lost {
		if len(rep.LostIDs) < 20 {
			rep.LostIDs = append(rep.LostIDs, id)
		}
	}
	return nil
}

// hasCopy reports whether some peer holds copy id; an error only when no
// peer answered at all.
func hasCopy(ctx context.Context, client *http.Client, peers []string, id string) (bool, error) {
	var lastErr error
	answered := 0
	for _, p := range peers {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+p+"/v1/copies/"+id, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		resp.Body.Close()
		answered++
		if resp.StatusCode == http.StatusOK {
			return true, nil
		}
	}
	if answered == 0 && lastErr != nil {
		return false, lastErr
	}
	return false, nil
}

// Close stops every node (SIGTERM, then SIGKILL after StopGrace); a
// paused node is thawed first.
func (c *Cluster) Close() error {
	var wg sync.WaitGroup
	for _, n := range c.alive() {
		wg.Go(func() { c.stop(n, "alive") })
	}
	wg.Wait()
	return nil
}
