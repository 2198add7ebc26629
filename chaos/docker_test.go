package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node"
)

// getStatus is a node's GET /v1/status.
func getStatus(httpAddr string) (node.Status, error) {
	var st node.Status
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// composeNode is one node of the Compose cluster as the host reaches it.
type composeNode struct {
	name, smtp, pop3, http string
}

var composeNodes = []composeNode{
	{"n1", "127.0.0.1:12525", "127.0.0.1:11110", "127.0.0.1:18080"},
	{"n2", "127.0.0.1:12526", "127.0.0.1:11111", "127.0.0.1:18081"},
	{"n3", "127.0.0.1:12527", "127.0.0.1:11112", "127.0.0.1:18082"},
}

// sender delivers numbered messages round-robin over the live listeners,
// retrying each on another node until it is acknowledged, as an MTA
// would. It records every acknowledged subject.
type sender struct {
	mu      sync.Mutex
	acked   map[string]int // subject -> 250s received (must end at 1)
	unknown map[string]int // subject -> attempts that got no reply to their data
	tries   int
	lastErr map[string]string
}

func (s *sender) run(t *testing.T, from, to int, stop <-chan struct{}) {
	for i := from; i < to; i++ {
		subject := fmt.Sprintf("chaos %05d", i)
		for attempt := 0; ; attempt++ {
			select {
			case <-stop:
				return
			default:
			}
			n := composeNodes[(i+attempt)%len(composeNodes)]
			s.mu.Lock()
			s.tries++
			s.mu.Unlock()
			err := sendVia(n.smtp, "alice@example.com", subject)
			if errors.Is(err, errNoReply) {
				s.mu.Lock()
				s.unknown[subject]++
				s.mu.Unlock()
			}
			if err == nil || errors.Is(err, errQuitAfterAck) {
				s.mu.Lock()
				s.acked[subject]++
				s.mu.Unlock()
				break
			}
			s.mu.Lock()
			s.lastErr[n.name] = err.Error()
			s.mu.Unlock()
			time.Sleep(100 * time.Millisecond) // an MTA's retry pause
		}
	}
}

// TestComposeChaos runs the three-node cluster under load while a node is
// killed and restarted, another frozen and thawed, and a third cut off the
// network and reconnected; then it checks docs/design.md's invariants: every
// acknowledged message is readable exactly once from every node, catalogs
// agree, and every message has R copies again.
func TestComposeChaos(t *testing.T) {
	compose := requireDocker(t)
	if os.Getenv("CHAOS_DOCKER") == "0" {
		t.Skip("CHAOS_DOCKER=0")
	}
	root := repoRoot(t)
	run(t, root, "go", "build", "-trimpath", "-o", "bin/mailarray", "./cmd/mailarray")
	run(t, root, "docker", "build", "-q", "-t", "mailarray:dev", ".")
	project := fmt.Sprintf("mailarraychaos%d", os.Getpid())
	s := &sender{acked: map[string]int{}, unknown: map[string]int{}, lastErr: map[string]string{}}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command(compose, "-p", project, "logs", "--no-color").CombinedOutput()
			f := filepathJoin(os.TempDir(), project+".log") // kept after the test
			if dir := os.Getenv("CHAOS_LOG_DIR"); dir != "" {
				f = filepathJoin(dir, "compose-chaos.log")
			}
			os.WriteFile(f, out, 0o644)
			lines := strings.Split(string(out), "\n")
			t.Logf("container logs (all in %s), last lines:\n%s", f, strings.Join(lines[max(0, len(lines)-60):], "\n"))
			s.mu.Lock()
			t.Logf("sender: %d acknowledged, %d attempts, last errors by node: %v", len(s.acked), s.tries, s.lastErr)
			s.mu.Unlock()
		}
		c := exec.Command(compose, "-p", project, "down", "-v", "-t", "2")
		c.Dir = root
		c.Run()
	})
	run(t, root, compose, "-p", project, "up", "-d", "--no-build")
	container := func(n string) string { return project + "_" + n + "_1" }
	network := project + "_array"

	require.Eventually(t, func() bool {
		for _, n := range composeNodes {
			st, err := getStatus(n.http)
			if err != nil {
				return false
			}
			alive := 0
			for _, m := range st.Members {
				if m.Status == "alive" {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	}, 60*time.Second, 250*time.Millisecond, "three members alive on every node")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	const perSender, senders = 60, 4
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			s.run(t, g*perSender, (g+1)*perSender, stop)
		}(g)
	}
	waitAcked := func(k int) {
		require.Eventually(t, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.acked) >= k
		}, 90*time.Second, 50*time.Millisecond, "load progresses to %d acknowledged", k)
	}
	total := perSender * senders
	// Faults under load, one after another.
	waitAcked(total / 6)
	run(t, root, "docker", "kill", container("n1")) // crash
	waitAcked(total / 3)
	run(t, root, "docker", "start", container("n1")) // restart with its data
	waitAcked(total / 2)
	run(t, root, "docker", "pause", container("n2")) // a hung node
	waitAcked(2 * total / 3)
	run(t, root, "docker", "unpause", container("n2"))
	run(t, root, "docker", "network", "disconnect", network, container("n3")) // cut off
	waitAcked(5 * total / 6)
	run(t, root, "docker", "network", "connect", "--ip", "172.28.0.13", network, container("n3"))
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		close(stop)
		t.Fatal("load did not finish within 3 minutes after the faults")
	}

	s.mu.Lock()
	for subj, k := range s.acked {
		assert.Equal(t, 1, k, "%s acknowledged once", subj)
	}
	want := len(s.acked)
	t.Logf("acknowledged %d messages in %d attempts", want, s.tries)
	s.mu.Unlock()
	require.Equal(t, total, want)

	// Quiescence: every node alive, catalogs agree, nothing under-replicated.
	var digests map[string]string
	require.Eventually(t, func() bool {
		digests = map[string]string{}
		for _, n := range composeNodes {
			st, err := getStatus(n.http)
			if err != nil || st.UnderReplicated != 0 || st.Entries["pending"] != 0 {
				return false
			}
			digests[n.name] = st.CatalogDigest
		}
		return digests["n1"] == digests["n2"] && digests["n2"] == digests["n3"]
	}, 120*time.Second, 500*time.Millisecond, "catalogs converge and every message has R copies (last digests %v)", digests)

	// Every acknowledged message readable exactly once, from every node.
	for _, n := range composeNodes {
		var subs []string
		require.Eventually(t, func() bool {
			var err error
			subs, err = subjects(n.pop3, "alice@example.com", "secret")
			return err == nil
		}, 30*time.Second, 250*time.Millisecond, "POP3 on %s", n.name)
		sort.Strings(subs)
		seen := map[string]int{}
		for _, x := range subs {
			seen[x]++
		}
		// A message may appear once more per attempt that got no reply to
		// its data (the sender could not know it was stored, and retried);
		// never more.
		lost, dup, retried := 0, 0, 0
		for subj := range s.acked {
			switch k := seen[subj]; {
			case k == 0:
				lost++
			case k > 1+s.unknown[subj]:
				dup++
			default:
				retried += k - 1
			}
		}
		assert.Zero(t, lost, "lost messages read via %s", n.name)
		assert.Zero(t, dup, "duplicated messages read via %s (beyond retries after no reply: %v)", n.name, s.unknown)
		assert.Len(t, subs, want+retried, "no extra messages via %s: %s", n.name, strings.Join(subs[:min(3, len(subs))], ","))
	}
}

func filepathJoin(a, b string) string { return a + string(os.PathSeparator) + b }
