package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"mailarray/node"
	"mailarray/node/directory"
)

// user hash [PASSWORD]: without an argument the password is read from the
// terminal without echo, or from the first line of standard input.
func user(args []string) error {
	if len(args) == 0 || args[0] != "hash" {
		return errors.New("usage: mailarray user hash [PASSWORD]")
	}
	fs := flag.NewFlagSet("user hash", flag.ContinueOnError)
	cost := fs.Int("cost", 10, "bcrypt cost")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var pw string
	switch {
	case fs.NArg() > 0:
		pw = fs.Arg(0)
	case term.IsTerminal(int(os.Stdin.Fd())):
		fmt.Fprint(os.Stderr, "password: ")
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return err
		}
		pw = string(b)
	default:
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		return errors.New("user hash: empty password")
	}
	h, err := directory.HashPassword(pw, *cost)
	if err != nil {
		return err
	}
	fmt.Println(h)
	return nil
}

// fetchStatus gets a node's status from its --http or --peer address.
func fetchStatus(ctx context.Context, addr, key string) (node.Status, error) {
	var st node.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/status", nil)
	if err != nil {
		return st, err
	}
	if key != "" {
		req.Header.Set("X-Mailarray-Key", key)
	}
	setAdminToken(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return st, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "a node's --http (or --peer) address")
	key := fs.String("peer-key", "", "peer key, when asking a --peer address")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := fetchStatus(ctx, *addr, *key)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(os.Stdout, st)
	return nil
}

func printStatus(w io.Writer, st node.Status) {
	fmt.Fprintf(w, "node %s  roles %s  R=%d W=%d  catalog %s\n", st.Node, strings.Join(st.Roles, ","), st.Replicas, st.WriteQuorum, st.CatalogDigest)
	fmt.Fprintf(w, "peer api: %s\n", st.PeerAPI)
	if st.PeerAPI == node.PeerAPIOpenInsecure || st.PeerAPI == node.PeerAPIOpenLoopback {
		fmt.Fprintln(w, "WARNING: the peer API needs no credentials: whoever reaches it can read, inject and delete mail (set peer-key or peer-ca)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "version %s (commit %s, %s)\n", st.Build.Version, st.Build.Commit, st.Build.GoVersion)
	if st.Ready.Ready {
		fmt.Fprintf(w, "ready: %d storage nodes answer, W=%d\n\n", st.Ready.Reachable, st.Ready.WriteQuorum)
	} else {
		fmt.Fprintf(w, "NOT READY (%s): %s\n", st.Ready.Reason, st.Ready.Detail)
		for _, d := range st.Ready.NotAnswering {
			fmt.Fprintf(w, "  not answering: %s\n", d)
		}
		fmt.Fprintln(w)
	}
	if d := st.Drain; d != nil {
		if d.Done {
			fmt.Fprintf(w, "DRAINED: left the array (%s): stop the service\n\n", drainProgress(*d))
		} else {
			fmt.Fprintf(w, "DRAINING: %s\n\n", drainProgress(*d))
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSTATUS\tADDR\tROLES\tPEER\tMIRRORS")
	for _, m := range st.Members {
		status := m.Status
		if m.Draining {
			status += ",draining"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, status, m.Addr, m.Roles, m.Peer, strings.Join(st.MirrorPairs[m.Name], ","))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nmirroring table version %016x, ring %s\n", st.Mirror.Version, strings.Join(st.Mirror.Ring, " -> "))
	states := make([]string, 0, len(st.Entries))
	for s, c := range st.Entries {
		states = append(states, fmt.Sprintf("%s %d", s, c))
	}
	sort.Strings(states)
	fmt.Fprintf(w, "catalog entries: %s\n", strings.Join(states, ", "))
	fmt.Fprintf(w, "copies held: %d (%d bytes)\n", st.Copies, st.CopyBytes)
	fmt.Fprintf(w, "under-replicated messages: %d\n", st.UnderReplicated)
	fmt.Fprintf(w, "rebuild: %d copies rebuilt (%d bytes), %d moved by rebalance, %d extra copies trimmed, %d rebalances after a return\n", st.Rebuild.RebuiltCopies, st.Rebuild.RebuiltBytes, st.Rebuild.MovedCopies, st.Rebuild.TrimmedCopies, st.Rebuild.AutoRebalances)
	fmt.Fprintf(w, "anti-entropy: %d rounds, %d entries repaired; pushes dropped %d\n", st.Rebuild.AntiEntropyRounds, st.Rebuild.AntiEntropyFixed, st.Rebuild.PushDropped)
	fmt.Fprintf(w, "store verify: %d copies checked, %d missing (unlisted for rebuild), %d lost\n", st.Verify.Checked, st.Verify.Missing, st.Verify.Lost)
	fmt.Fprintf(w, "load: %d SMTP sessions, %d accepted\n", st.Load.SMTPSessions, st.Load.AcceptedTotal)
}

// rebalance asks every live node, through one node's --http address, to
// move copies to their balanced placement (new nodes take their share).
func rebalance(args []string) error {
	fs := flag.NewFlagSet("rebalance", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "a node's --http address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := httpDo(http.MethodPost, *addr, "/v1/rebalance")
	if err != nil {
		return fmt.Errorf("rebalance: %w", err)
	}
	var res map[string]string
	if err := json.Unmarshal(b, &res); err != nil {
		return err
	}
	names := make([]string, 0, len(res))
	for k := range res {
		names = append(names, k)
	}
	sort.Strings(names)
	var errs []error
	for _, k := range names {
		fmt.Printf("%s: %s\n", k, res[k])
		if res[k] != "ok" {
			errs = append(errs, fmt.Errorf("%s: %s", k, res[k]))
		}
	}
	return errors.Join(errs...)
}

// drain NODE asks, through one node's --http address, that NODE be
// drained (node/drain.go): it stops taking mail and copies, the others
// take R copies of every message it holds, then it leaves the array. It
// prints progress until the node has left. Asking again resumes.
func drain(args []string) error {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "a node's --http address (the drained node's or another's)")
	every := fs.Duration("every", 2*time.Second, "how often to print progress")
	timeout := fs.Duration("timeout", 0, "give up waiting after this long (0: wait until done; the drain goes on either way)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: mailarray drain [--addr HOST:PORT] NODE")
	}
	name := fs.Arg(0)
	path := "/v1/drain/" + url.PathEscape(name)
	b, err := httpDo(http.MethodPost, *addr, path)
	if err != nil {
		return fmt.Errorf("drain %s: %w", name, err)
	}
	var deadline time.Time
	if *timeout > 0 {
		deadline = time.Now().Add(*timeout)
	}
	last := ""
	for {
		var st node.DrainStatus
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("drain %s: %w", name, err)
		}
		if st.Done {
			fmt.Printf("%s has left the array: stop its service now (docs/deploy.md, Removing a node)\n", name)
			return nil
		}
		if line := fmt.Sprintf("%s: %s: %s", name, st.State, drainProgress(st)); line != last {
			fmt.Println(line)
			last = line
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return fmt.Errorf("drain %s: not done after %s (it goes on; run the command again to follow it)", name, *timeout)
		}
		time.Sleep(*every)
		if b, err = httpDo(http.MethodGet, *addr, path); err != nil {
			// The node asked may be restarting: say so and keep asking.
			fmt.Fprintf(os.Stderr, "drain %s: %v (retrying)\n", name, err)
			b = nil
			for err != nil && (deadline.IsZero() || time.Now().Before(deadline)) {
				time.Sleep(*every)
				b, err = httpDo(http.MethodGet, *addr, path)
			}
			if err != nil {
				return fmt.Errorf("drain %s: %w", name, err)
			}
		}
	}
}

func drainProgress(st node.DrainStatus) string {
	s := fmt.Sprintf("%d messages moved, %d left", st.Moved, st.Left)
	if st.Detail != "" {
		s += " (" + st.Detail + ")"
	}
	return s
}
