package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailarray/node"
	"mailarray/node/env"
	"mailarray/sim"
)

// ContainerConfig describes a scenario's array as `mailarray serve`
// containers (the chaos suite's image: FROM scratch around the static
// binary, make image) on a private bridge network, each with its CPU
// quota (docker --cpus, from the node's cpu_quota) and, for an emulated
// slow disk, a delay at its store's sync point (--test-fault). The host
// reaches the containers at their bridge addresses: no port is published.
type ContainerConfig struct {
	// Image is the node image (make image: mailarray:dev).
	Image string
	// Dir holds the users file and, after Close, each node's log. Wiped at
	// the start.
	Dir string
	// Scenario gives the nodes (name, cpu_quota, weight), R, W, the
	// strategies, the domain and the mailboxes.
	Scenario sim.Scenario
	// SyncDelay is each node's emulated slow disk: the wait at its store's
	// sync point (fault.StoreSync), on top of the host disk's own sync.
	SyncDelay map[string]time.Duration
	// Subnet is the bridge network's /24 (a.b.c.0/24): node i gets a.b.c.(11+i).
	Subnet string
	// Label marks the containers and the network (docker --label), so that
	// a run killed before it could clean up is cleaned by the next.
	Label string
	// ReadyTimeout bounds the wait for every node to be ready and see the
	// others alive; StopGrace a node's shutdown (docker stop -t).
	ReadyTimeout time.Duration
	StopGrace    time.Duration
	// LogLevel of the nodes.
	LogLevel string
}

// DefaultContainerConfig returns the truth run's settings.
func DefaultContainerConfig(dir string, sc sim.Scenario, delays map[string]time.Duration) ContainerConfig {
	return ContainerConfig{Image: "mailarray:dev", Dir: dir, Scenario: sc, SyncDelay: delays,
		Subnet: "172.30.77.0/24", Label: "mailarray.truth", ReadyTimeout: 90 * time.Second, StopGrace: 10 * time.Second, LogLevel: "warn"}
}

// Validate reports nonsensical values.
func (c ContainerConfig) Validate() error {
	var errs []error
	if c.Image == "" || c.Dir == "" || c.Label == "" {
		errs = append(errs, errors.New("bench: containers: Image, Dir and Label are required"))
	}
	if _, n, err := net.ParseCIDR(c.Subnet); err != nil || n.IP.To4() == nil || !strings.HasSuffix(c.Subnet, ".0/24") {
		errs = append(errs, fmt.Errorf("bench: containers: Subnet %q must be an IPv4 a.b.c.0/24", c.Subnet))
	}
	if c.ReadyTimeout <= 0 || c.StopGrace <= 0 {
		errs = append(errs, errors.New("bench: containers: ReadyTimeout and StopGrace must be > 0"))
	}
	if len(c.Scenario.Nodes) == 0 || len(c.Scenario.Nodes) > 200 {
		errs = append(errs, errors.New("bench: containers: the scenario needs 1..200 nodes"))
	}
	for _, n := range c.Scenario.Nodes {
		if n.Spare {
			errs = append(errs, fmt.Errorf("bench: containers: %s: spare nodes are not supported", n.Name))
		}
	}
	return errors.Join(errs...)
}

// Ports every container listens on (its own address: no clash between
// nodes). Above 1024: the image runs as a non-root user.
const (
	ctrSMTP   = 2525
	ctrPOP3   = 1110
	ctrDNS    = 5353
	ctrHTTP   = 8080
	ctrPeer   = 7000
	ctrGossip = 7946
)

// ContainerArray is a scenario's nodes running as containers.
type ContainerArray struct {
	cfg     ContainerConfig
	network string
	client  *http.Client
	key     string // the peer key (the lost check asks the peer API)
	nodes   []*containerNode
}

// peerKeyTransport sends the array's peer key with every request, as the
// nodes do to each other (node/peer: X-Mailarray-Key).
type peerKeyTransport struct{ key string }

func (t *peerKeyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Mailarray-Key", t.key)
	return http.DefaultTransport.RoundTrip(r)
}

type containerNode struct {
	spec sim.NodeSpec
	ip   string
	name string // the container's
	id   string
}

func (n *containerNode) addr(port int) string { return net.JoinHostPort(n.ip, strconv.Itoa(port)) }

// docker runs one docker command and returns its trimmed output.
func docker(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("bench: docker %s: %w: %s", strings.Join(args[:min(2, len(args))], " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// RemoveLabelled removes every container and network carrying label: a
// previous run's leftovers, if it was killed before its cleanup.
func RemoveLabelled(ctx context.Context, label string) error {
	ids, err := docker(ctx, "ps", "-aq", "--filter", "label="+label)
	if err != nil {
		return err
	}
	if ids != "" {
		if _, err := docker(ctx, append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...); err != nil {
			return err
		}
	}
	nets, err := docker(ctx, "network", "ls", "-q", "--filter", "label="+label)
	if err != nil {
		return err
	}
	for _, id := range strings.Fields(nets) {
		if _, err := docker(ctx, "network", "rm", id); err != nil {
			return err
		}
	}
	return nil
}

// StartContainers creates the network, starts one container per node and
// waits until every node is ready and sees the others alive. On error
// everything it created is removed.
func StartContainers(ctx context.Context, cfg ContainerConfig, peerKey string) (*ContainerArray, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(peerKey) < 16 {
		return nil, errors.New("bench: containers: a peer key of at least 16 characters is required (the peer API listens beyond loopback)")
	}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, fmt.Errorf("bench: containers: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: containers: %w", err)
	}
	sc := cfg.Scenario
	users, err := filepath.Abs(filepath.Join(cfg.Dir, "users"))
	if err != nil {
		return nil, err
	}
	// Readable by the image's user (65532): test mailboxes of a private
	// network, whose passwords are in the scenario anyway.
	lines := "# mailboxes of scenario " + sc.Name + " (make truth)\n" + strings.Join(sim.MailboxLines(sc.Mailboxes, sc.Domain), "\n") + "\n"
	if err := os.WriteFile(users, []byte(lines), 0o644); err != nil {
		return nil, fmt.Errorf("bench: containers: %w", err)
	}
	a := &ContainerArray{cfg: cfg, network: fmt.Sprintf("mailarray-truth-%d", os.Getpid()), client: &http.Client{Timeout: statusTimeout}, key: peerKey}
	prefix := strings.TrimSuffix(cfg.Subnet, "0/24")
	for i, spec := range sc.Nodes {
		a.nodes = append(a.nodes, &containerNode{spec: spec, ip: prefix + strconv.Itoa(11+i), name: a.network + "-" + spec.Name})
	}
	if _, err := docker(ctx, "network", "create", "--label", cfg.Label, "--subnet", cfg.Subnet, a.network); err != nil {
		return nil, err
	}
	for _, n := range a.nodes {
		args := a.runArgs(n, users, peerKey)
		id, err := docker(ctx, args...)
		if err != nil {
			a.Close()
			return nil, err
		}
		n.id = id
	}
	if err := a.waitReady(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// runArgs is node n's docker run command line.
func (a *ContainerArray) runArgs(n *containerNode, users, peerKey string) []string {
	sc := a.cfg.Scenario
	args := []string{"run", "-d", "--name", n.name, "--hostname", n.spec.Name, "--label", a.cfg.Label,
		"--network", a.network, "--ip", n.ip,
		"-v", users + ":/etc/mailarray/users:ro"}
	if q := n.spec.CPUQuota; q > 0 {
		args = append(args, "--cpus", strconv.FormatFloat(q, 'f', -1, 64))
	}
	args = append(args, a.cfg.Image,
		"serve", "--name", n.spec.Name, "--data", "/data", "--domain", sc.Domain, "--users", "/etc/mailarray/users",
		"--smtp", fmt.Sprintf("0.0.0.0:%d", ctrSMTP), "--pop3", fmt.Sprintf("0.0.0.0:%d", ctrPOP3), "--imap", "",
		"--dns", fmt.Sprintf("0.0.0.0:%d", ctrDNS), "--http", fmt.Sprintf("0.0.0.0:%d", ctrHTTP),
		"--peer", fmt.Sprintf("0.0.0.0:%d", ctrPeer), "--peer-key", peerKey,
		"--gossip", n.addr(ctrGossip), "--advertise", n.ip, "--gossip-profile", "local",
		"--replicas", strconv.Itoa(sc.Replicas), "--write-quorum", strconv.Itoa(sc.WriteQuorum),
		"--dns-strategy", sc.DNSStrategy, "--placement-strategy", sc.PlacementStrategy,
		"--dns-ttl", sc.DNSTTL.D().String(),
		"--weight", strconv.Itoa(n.spec.Weight),
		"--max-message-bytes", strconv.FormatInt(max(int64(64<<20), 2*int64(sc.Load.Size.MaxBytes)), 10),
		"--smtp-max-sessions", strconv.Itoa(maxProbeSenders+sc.Load.Readers+sessionsPerIPSlack),
		"--smtp-max-sessions-per-ip", strconv.Itoa(maxProbeSenders+sc.Load.Readers+sessionsPerIPSlack),
		"--log-level", a.cfg.LogLevel)
	if d := a.cfg.SyncDelay[n.spec.Name]; d > 0 {
		args = append(args, "--test-faults-allowed", "--test-fault", "store.sync="+d.String())
	}
	for _, o := range a.nodes {
		if o != n {
			args = append(args, "--join", o.addr(ctrGossip))
		}
	}
	return args
}

// waitReady waits until every node answers its status and sees every node
// alive.
func (a *ContainerArray) waitReady(ctx context.Context) error {
	notReady := fmt.Errorf("bench: containers: not ready after %v (docker logs %s-n1)", a.cfg.ReadyTimeout, a.network)
	return pollReady(ctx, a.cfg.ReadyTimeout, 250*time.Millisecond, notReady, func(ctx context.Context) (bool, error) {
		for _, n := range a.nodes {
			if !seesAlive(ctx, a.client, "http://"+n.addr(ctrHTTP)+"/v1/status", len(a.nodes)) {
				return false, nil
			}
		}
		return true, nil
	})
}

func (a *ContainerArray) getJSON(ctx context.Context, url string, v any) error {
	return getJSON(ctx, a.client, url, v)
}

// Target is the array as the load generator reaches it.
func (a *ContainerArray) Target() sim.RealTarget {
	t := sim.RealTarget{Net: &env.RealNet{}, SMTP: map[string]string{}, POP3: map[string]string{}}
	for _, n := range a.nodes {
		t.DNS = append(t.DNS, n.addr(ctrDNS))
		t.SMTP[n.spec.Name], t.POP3[n.spec.Name] = n.addr(ctrSMTP), n.addr(ctrPOP3)
	}
	return t
}

// SetCPUQuota sets every node's CPU quota (docker update --cpus) while it
// runs. Go's runtime follows the new limit (GOMAXPROCS = max(2,
// ceil(quota)), re-read as the cgroup changes).
func (a *ContainerArray) SetCPUQuota(ctx context.Context, cpus float64) error {
	for _, n := range a.nodes {
		if _, err := docker(ctx, "update", "--cpus", strconv.FormatFloat(cpus, 'f', -1, 64), n.id); err != nil {
			return err
		}
	}
	return nil
}

// CPUSeconds is each node's CPU time so far (its container's cgroup).
func (a *ContainerArray) CPUSeconds() map[string]float64 {
	out := map[string]float64{}
	for _, n := range a.nodes {
		out[n.spec.Name] = containerCPU(n.id)
	}
	return out
}

// containerCPU reads a container's CPU time from its cgroup: cgroup v1's
// cpuacct.usage (ns) or v2's cpu.stat usage_usec; 0 when neither exists.
func containerCPU(id string) float64 {
	for _, p := range []string{
		"/sys/fs/cgroup/cpuacct/docker/" + id + "/cpuacct.usage",
		"/sys/fs/cgroup/cpu,cpuacct/docker/" + id + "/cpuacct.usage",
	} {
		if b, err := os.ReadFile(p); err == nil {
			ns, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return float64(ns) / 1e9
		}
	}
	for _, p := range []string{
		"/sys/fs/cgroup/system.slice/docker-" + id + ".scope/cpu.stat",
		"/sys/fs/cgroup/docker/" + id + "/cpu.stat",
	} {
		if b, err := os.ReadFile(p); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
					us, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					return float64(us) / 1e6
				}
			}
		}
	}
	return 0
}

// Copies is each node's copy count now (GET /v1/status).
func (a *ContainerArray) Copies(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	for _, n := range a.nodes {
		var st node.Status
		if err := a.getJSON(ctx, "http://"+n.addr(ctrHTTP)+"/v1/status", &st); err != nil {
			return nil, fmt.Errorf("bench: status of %s: %w", n.spec.Name, err)
		}
		out[n.spec.Name] = st.Copies
	}
	return out, nil
}

// Fill completes a run's report as Cluster.Fill does, for the copies
// stored since before (Copies taken before the run; nil: all): each
// node's copies and share, its CPU time since cpu0 (CPUSeconds taken
// before the run) over wall, and the lost check.
func (a *ContainerArray) Fill(ctx context.Context, rep *sim.Report, before map[string]int, cpu0 map[string]float64, wall time.Duration) error {
	now, err := a.Copies(ctx)
	if err != nil {
		return err
	}
	cpu1 := a.CPUSeconds()
	smtpBy := acceptedBy(rep)
	total := 0
	for _, n := range a.nodes {
		total += now[n.spec.Name] - before[n.spec.Name]
	}
	rep.Nodes = nil
	var copies, smtp []float64
	for _, n := range a.nodes {
		name := n.spec.Name
		nr := sim.NodeReport{Name: name, IP: n.ip, State: "alive", SMTPAccepted: smtpBy[name], Copies: now[name] - before[name]}
		if total > 0 {
			nr.ShareCopies = round(float64(nr.Copies)/float64(total), 4)
		}
		busy := cpu1[name] - cpu0[name]
		nr.CPUBusySeconds = round(busy, 3)
		if wall > 0 {
			nr.CPUUtilization = round(busy/(n.spec.CPUCapacity()*wall.Seconds()), 4)
		}
		rep.Nodes = append(rep.Nodes, nr)
		copies = append(copies, float64(nr.Copies))
		smtp = append(smtp, float64(nr.SMTPAccepted))
	}
	rep.Imbalance = sim.NewImbalance(copies, copies, smtp)
	var peers []string
	for _, n := range a.nodes {
		peers = append(peers, n.addr(ctrPeer))
	}
	return CheckLost(ctx, &http.Client{Timeout: statusTimeout, Transport: &peerKeyTransport{key: a.key}}, peers, rep)
}

// Close saves each node's log to Dir/<name>.log and removes the
// containers (with their data volumes) and the network. It runs with its
// own deadline: it must clean up after an interrupt too.
func (a *ContainerArray) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range a.nodes {
		if n.id == "" {
			continue
		}
		wg.Go(func() {
			docker(ctx, "stop", "-t", strconv.Itoa(int(a.cfg.StopGrace.Seconds())), n.id)
			if out, err := exec.CommandContext(ctx, "docker", "logs", n.id).CombinedOutput(); err == nil {
				os.WriteFile(filepath.Join(a.cfg.Dir, n.spec.Name+".log"), out, 0o644)
			}
		})
	}
	wg.Wait()
	var errs []error
	for _, n := range a.nodes {
		if _, err := docker(ctx, "rm", "-f", "-v", n.name); err != nil && !strings.Contains(err.Error(), "No such container") {
			errs = append(errs, err)
		}
	}
	if _, err := docker(ctx, "network", "rm", a.network); err != nil && !strings.Contains(err.Error(), "not found") {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
