package realsoak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"mailarray/bench"
	"mailarray/chaos"
	"mailarray/node"
	"mailarray/node/catalog"
	"mailarray/node/pop3"
	"mailarray/node/store"
	"mailarray/sim"
)

// Limits of the checks.
const (
	// httpTimeout bounds one status request.
	httpTimeout = 5 * time.Second
	// pop3Timeout bounds one POP3 command of the read check.
	pop3Timeout = 30 * time.Second
	// pop3Retries is how many times a read session that fails for another
	// reason than [IN-USE] is tried again before the mailbox counts as
	// unreadable from that node.
	pop3Retries = 3
	// retryEvery spaces retries and status polls.
	retryEvery = 500 * time.Millisecond
	// storeOpenTimeout bounds the wait for a node.db lock after the
	// processes exited.
	storeOpenTimeout = 10 * time.Second
)

// Finding is one kind of violation: how many, and the first few; the
// files' checker's own (chaos.Check), whose results the soak reports beside
// its own.
type Finding = chaos.Finding

// nodeStatus is a node's GET /v1/status.
type nodeStatus = node.Status

// memberStatus is how st's node sees member name: its status, or "absent".
func memberStatus(st *nodeStatus, name string) string {
	for _, m := range st.Members {
		if m.Name == name {
			return m.Status
		}
	}
	return "absent"
}

var statusClient = &http.Client{Timeout: httpTimeout}

func getStatus(ctx context.Context, httpAddr string) (*nodeStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("realsoak: GET %s/v1/status: %s", httpAddr, resp.Status)
	}
	var st nodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("realsoak: status of %s: %w", httpAddr, err)
	}
	return &st, nil
}

// quiet says why the array is not quiescent, or "" when it is: every node
// sees every node alive, holds no pending entry, finds nothing
// under-replicated, has an empty push queue, and all catalog digests are
// equal.
func quiet(sts []*nodeStatus) string {
	var why []string
	for _, st := range sts {
		for _, name := range nodeNames {
			if s := memberStatus(st, name); s != "alive" {
				why = append(why, fmt.Sprintf("%s sees %s %s", st.Node, name, s))
			}
		}
		if p := st.Entries[catalog.Pending.String()]; p > 0 {
			why = append(why, fmt.Sprintf("%s: %d pending", st.Node, p))
		}
		if st.UnderReplicated > 0 {
			why = append(why, fmt.Sprintf("%s: %d under-replicated", st.Node, st.UnderReplicated))
		}
		if st.Load.PushQueue > 0 {
			why = append(why, fmt.Sprintf("%s: push queue %d", st.Node, st.Load.PushQueue))
		}
		if st.CatalogDigest != sts[0].CatalogDigest {
			why = append(why, fmt.Sprintf("digests differ (%s %s, %s %s)", sts[0].Node, sts[0].CatalogDigest, st.Node, st.CatalogDigest))
		}
	}
	return strings.Join(why, "; ")
}

// quiesce polls every node's status until the array is quiet on two polls
// in a row at least two maintenance intervals apart, or timeout. It
// returns how long that took and, on timeout, why it is not quiet.
func quiesce(ctx context.Context, cl *bench.Cluster, cfg Config) (time.Duration, string) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.QuiesceTimeout)
	defer cancel()
	gap := max(2*cfg.MaintainEvery, time.Second)
	var quietSince time.Time
	why := "no status yet"
	for {
		var sts []*nodeStatus
		why = ""
		for _, name := range nodeNames {
			st, err := getStatus(ctx, cl.Node(name).HTTP)
			if err != nil {
				why = fmt.Sprintf("%s: %v", name, err)
				break
			}
			sts = append(sts, st)
		}
		if why == "" {
			why = quiet(sts)
		}
		switch {
		case why != "":
			quietSince = time.Time{}
		case quietSince.IsZero():
			quietSince = time.Now()
		case time.Since(quietSince) >= gap:
			return time.Since(t0), ""
		}
		if bench.Sleep(ctx, retryEvery) != nil {
			return time.Since(t0), why
		}
	}
}

// ReadResult is what reading every mailbox from every node found.
type ReadResult struct {
	Sessions  int `json:"sessions"`
	Retrieved int `json:"retrieved"`
	Unacked   int `json:"unacked"` // visible, its transaction got no reply: allowed
	// InUseWaits counts logins answered -ERR [IN-USE]; InUseMax is the
	// longest wait until a login went through.
	InUseWaits int           `json:"in_use_waits"`
	InUseMax   time.Duration `json:"in_use_max"`

	Unreadable   Finding `json:"unreadable"`    // acknowledged, not deleted, absent from a node's mailbox
	Duplicated   Finding `json:"duplicated"`    // shown twice, or under another transaction's id
	Phantom      Finding `json:"phantom"`       // refused or never sent, yet visible
	Resurrected  Finding `json:"resurrected"`   // a reader's acknowledged DELE, visible again
	Corrupt      Finding `json:"corrupt"`       // other bytes than were sent
	WrongMailbox Finding `json:"wrong_mailbox"` // visible in another mailbox
	Sessionless  Finding `json:"sessionless"`   // a mailbox that could not be read from a node
}

// readAll reads every mailbox from every node by POP3 (no DELE) and
// compares with the load's records.
func readAll(ctx context.Context, cl *bench.Cluster, cfg Config, rep *sim.Report) *ReadResult {
	res := &ReadResult{}
	seen := map[string]map[int]int{} // node -> seq -> times shown
	for _, name := range nodeNames {
		seen[name] = map[int]int{}
		addr := cl.Node(name).POP3
		for box := range rep.Config.Mailboxes {
			user, pass := mailbox(box, rep.Config.Domain)
			msgs, err := readMailbox(ctx, addr, user, pass, cfg, res)
			if err != nil {
				res.Sessionless.Add(fmt.Sprintf("%s@%s: %v", user, name, err))
				continue
			}
			for _, m := range msgs {
				res.Retrieved++
				judge(res, rep, name, user, m, seen[name])
			}
		}
	}
	tallySeen(res, rep, seen)
	return res
}

// tallySeen finds, from how many times each node showed each message,
// the duplicated and the unreadable ones.
func tallySeen(res *ReadResult, rep *sim.Report, seen map[string]map[int]int) {
	for i := range rep.Records {
		rec := &rep.Records[i]
		for _, name := range nodeNames {
			switch n := seen[name][rec.Seq]; {
			case n > 1:
				res.Duplicated.Add(fmt.Sprintf("message %d %dx on %s", rec.Seq, n, name))
			case n == 0 && rec.Outcome == sim.Accepted && !rec.Deleted && !rec.MaybeDeleted:
				res.Unreadable.Add(fmt.Sprintf("%s@%s (message %d to %s by %s at %.2fs)", rec.CopyID(), name, rec.Seq, rec.Mailbox, rec.Node, rec.Done.Seconds()))
			}
		}
	}
}

// popMessage is one message a POP3 session served.
type popMessage struct {
	uid  string
	data []byte
}

// judge checks one served message against the records.
func judge(res *ReadResult, rep *sim.Report, node, box string, m popMessage, seen map[int]int) {
	seq, ok := sim.MessageSeq(m.data, rep.Seed)
	if !ok || seq >= len(rep.Records) {
		res.Phantom.Add(fmt.Sprintf("%s@%s (not a message of the load)", m.uid, node))
		return
	}
	seen[seq]++
	rec := &rep.Records[seq]
	switch rec.Outcome {
	case sim.Accepted:
		switch {
		case rec.Deleted:
			res.Resurrected.Add(fmt.Sprintf("%s@%s (message %d)", rec.CopyID(), node, seq))
		case rec.Mailbox != box:
			res.WrongMailbox.Add(fmt.Sprintf("message %d for %s in %s on %s", seq, rec.Mailbox, box, node))
		case !strings.HasPrefix(m.uid, rec.ID):
			res.Duplicated.Add(fmt.Sprintf("message %d as %s on %s, acknowledged as %s", seq, m.uid, node, rec.ID))
		case !sameContent(m.data, sim.LoadMessage(rec, rep.Seed)):
			res.Corrupt.Add(fmt.Sprintf("%s@%s (message %d)", rec.CopyID(), node, seq))
		}
	case sim.Failed:
		res.Unacked++ // no reply: the client cannot know; an MTA retries
	default:
		res.Phantom.Add(fmt.Sprintf("%s@%s (message %d %s %d)", m.uid, node, seq, rec.Outcome, rec.Code))
	}
}

// sameContent reports whether served ends with sent, the bytes the load
// wrote (the server prepends its Received header). Carriage returns are
// ignored: a body cut between CR and LF ends in a bare CR, which the SMTP
// server stores as a line end of its own (RFC 5321 section 2.3.8 forbids
// bare CRs; the load generator sends them, the array is not at fault).
func sameContent(served, sent []byte) bool {
	cr := []byte{'\r'}
	return bytes.HasSuffix(bytes.ReplaceAll(served, cr, nil), bytes.ReplaceAll(sent, cr, nil))
}

// readMailbox logs in (waiting out -ERR [IN-USE] up to InUseTimeout),
// retrieves every message and quits without deleting.
func readMailbox(ctx context.Context, addr, user, pass string, cfg Config, res *ReadResult) ([]popMessage, error) {
	var lastErr error
	t0 := time.Now()
	inUse := false
	for tries := 0; tries < pop3Retries; {
		msgs, err := readOnce(ctx, addr, user, pass)
		res.Sessions++
		if err == nil {
			if inUse {
				res.InUseMax = max(res.InUseMax, time.Since(t0).Round(time.Millisecond))
			}
			return msgs, nil
		}
		lastErr = err
		if pop3.ErrorCode(err) == "IN-USE" && time.Since(t0) < cfg.InUseTimeout {
			if !inUse {
				res.InUseWaits++
			}
			inUse = true
		} else {
			tries++
		}
		if bench.Sleep(ctx, retryEvery) != nil {
			break
		}
	}
	if inUse {
		res.InUseMax = max(res.InUseMax, time.Since(t0).Round(time.Millisecond))
	}
	return nil, lastErr
}

func readOnce(ctx context.Context, addr, user, pass string) ([]popMessage, error) {
	d := net.Dialer{Timeout: pop3Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, err := pop3.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer c.Close()
	c.SetTimeout(pop3Timeout)
	if err := c.Login(user, pass); err != nil {
		return nil, err
	}
	uids, err := c.Uidl()
	if err != nil {
		return nil, err
	}
	var out []popMessage
	for _, u := range uids {
		data, err := c.Retr(u.Num)
		if err != nil {
			return nil, err
		}
		out = append(out, popMessage{uid: u.ID, data: data})
	}
	return out, c.Quit()
}

// mailbox is box's address and password (sim.MailboxLines).
func mailbox(box int, domain string) (user, pass string) {
	line := sim.MailboxLines(box+1, domain)[box]
	user, pass, _ = strings.Cut(line, ":{PLAIN}")
	return user, pass
}

// phantomHolders opens every node's node.db (the processes have exited)
// and lists the catalog locations whose store lacks a valid copy: a
// holder the array counts but that would not serve the message.
func phantomHolders(dir string) (Finding, error) {
	var f Finding
	stores := map[string]*store.Store{}
	defer func() {
		for _, st := range stores {
			st.Close()
		}
	}()
	sums := map[loc][32]byte{}
	for _, name := range nodeNames {
		st, err := store.Open(store.Options{Path: filepath.Join(dir, name, storeFile), OpenTimeout: storeOpenTimeout})
		if err != nil {
			return f, fmt.Errorf("realsoak: %s: %w", name, err)
		}
		stores[name] = st
		cat, err := catalog.Open(st, slog.New(slog.DiscardHandler))
		if err != nil {
			return f, fmt.Errorf("realsoak: %s: %w", name, err)
		}
		cat.ForEach(func(e *catalog.Entry) bool {
			if e.State == catalog.Committed {
				for _, l := range e.Locations {
					sums[loc{e.ID, l}] = e.Sum
				}
			}
			return true
		})
	}
	for _, k := range sortedLocs(sums) {
		st := stores[k.node]
		if st == nil {
			f.Add(k.id + "@" + k.node + " (not a node of the array)")
			continue
		}
		data, err := st.Get(k.id)
		if err != nil || store.Checksum(data) != sums[k] {
			f.Add(k.id + "@" + k.node)
		}
	}
	return f, nil
}
