package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/fault"
	"mailarray/node/pipeline"
	"mailarray/node/smtp"
)

// quarantinePrefix marks the catalog mailbox of a quarantined copy: it is
// stored and replicated like mail, but outside the recipient's mailbox.
const quarantinePrefix = "quarantine:"

// inbound is one build of the pipeline: its filters, from one version of
// the pipeline configuration, and the loops that reload their files. A
// reload that changes the configuration builds a new one and swaps it in
// (swapInbound); each delivery takes one (useInbound) and keeps it to
// the end, so a message is never filtered by a mix of two versions.
type inbound struct {
	conf PipelineConfig // what it was built from
	pipe *pipeline.Pipeline
	av   *pipeline.Antivirus
	spam *pipeline.Spam

	loops loopGroup      // the file watchers
	users sync.WaitGroup // deliveries running on it (Node.inMu)
}

func newInbound(n *Node, pc PipelineConfig) (*inbound, error) {
	av := pipeline.DefaultAVConfig()
	av.SignatureFile = pc.AVSignatures
	av.DefaultPolicy = pc.AVPolicy
	av.Policy = pc.AVDomainPolicy
	av.Clamd = pc.Clamd
	av.Net = n.env.Net
	a, err := pipeline.NewAntivirus(av, n.log)
	if err != nil {
		return nil, err
	}
	sc := pipeline.DefaultSpamConfig()
	sc.DBFile = pc.SpamDB
	sc.DNSBL, sc.IPBL, sc.DNSServer = pc.DNSBL, pc.IPBL, pc.DNSBLServer
	sc.Net = n.env.Net
	sc.Reject = pc.SpamReject
	sp, err := pipeline.NewSpam(sc, n.log)
	if err != nil {
		return nil, err
	}
	auth, err := n.newAuthFilter(pc.Auth)
	if err != nil {
		return nil, err
	}
	cfg := pipeline.DefaultConfig()
	cfg.FailOpen = pc.FailOpen
	// The explicit, ordered list of filters (STYLE.md rule 11). The fault
	// filter exists only where faults are injected (a fault hook: the
	// simulator's tests; or a chaos build): a production node would log
	// its "no fault" verdict for every message.
	var filters []pipeline.Filter
	if n.env.Fault != nil || chaosBuild {
		filters = append(filters, &faultFilter{n: n})
	}
	if auth != nil {
		filters = append(filters, auth)
	}
	filters = append(filters, a, sp)
	return &inbound{conf: pc, pipe: pipeline.New(cfg, n.log, filters...), av: a, spam: sp}, nil
}

// newNotifier builds the node's notifier. It outlives pipeline rebuilds:
// a reload changes its SMS gateway in place, so no queued notice is lost.
func newNotifier(n *Node) (*pipeline.Notifier, error) {
	nc := pipeline.DefaultNotifyConfig()
	nc.SMSGateway = n.conf().Pipeline.SMSGateway
	if err := nc.Validate(); err != nil {
		return nil, err
	}
	return pipeline.NewNotifier(nc, n.env.Net, env.NewRand(n.env.Rand.Uint64()), n.log), nil
}

// start runs the watchers of the antivirus signatures and the spam
// database under ctx, polling every interval.
func (in *inbound) start(ctx context.Context, interval time.Duration) {
	in.loops.start(ctx)
	if in.conf.AVSignatures != "" {
		in.loops.goLoop(func(ctx context.Context) { in.av.Watch(ctx, interval) })
	}
	if in.conf.SpamDB != "" {
		in.loops.goLoop(func(ctx context.Context) { in.spam.Watch(ctx, interval) })
	}
}

// filtersChanged reports whether a and b build different filters (the
// SMS gateway is the notifier's, changed in place).
func filtersChanged(a, b PipelineConfig) bool {
	a.SMSGateway, b.SMSGateway = "", ""
	return !reflect.DeepEqual(a, b)
}

// useInbound returns the pipeline in use and a release to call once the
// delivery is done with it (stored and notified).
func (n *Node) useInbound() (*inbound, func()) {
	n.inMu.RLock()
	in := n.in
	in.users.Add(1) // under inMu: swapInbound's Wait sees every user
	n.inMu.RUnlock()
	return in, in.users.Done
}

// swapInbound makes next the pipeline of the deliveries that start from
// now on, waits for those running on the old one to finish, then stops
// the old one's watchers. next's watchers run under ctx when the node has
// started (nil: Start starts them).
func (n *Node) swapInbound(ctx context.Context, next *inbound) {
	if ctx != nil {
		next.start(ctx, n.conf().UsersReload)
	}
	n.inMu.Lock()
	old := n.in
	n.in = next
	n.inMu.Unlock()
	old.users.Wait()
	old.loops.stop()
}

// faultFilter is the chaos suites' failpoint on the pipeline: it fails the
// message when the fault hook says so, and accepts it otherwise.
type faultFilter struct{ n *Node }

func (f *faultFilter) Name() string { return "fault" }

func (f *faultFilter) Check(ctx context.Context, m *pipeline.Message) (pipeline.Verdict, error) {
	if err := f.n.env.Inject(fault.PipelineFilter, f.n.conf().Name); err != nil {
		return pipeline.Verdict{}, err
	}
	return pipeline.Verdict{Action: pipeline.Accept, Reason: "no fault"}, nil
}

// filter runs the pipeline on m and returns what to store: the data, the
// trace, whether it is quarantined; or the reply that refuses it.
func (n *Node) filter(ctx context.Context, in *inbound, m *smtp.Message) (pipeline.Result, error) {
	res, err := in.pipe.Run(ctx, &pipeline.Message{ID: m.ID, From: m.From, Helo: m.Helo, To: m.To, Remote: m.Remote, Data: m.Data, Local: localOrigin(ctx)})
	if err != nil {
		return res, err // unwraps to 451 4.3.0
	}
	if res.Reject != nil {
		return res, res.Reject
	}
	return res, nil
}

// notify queues notices for the mailboxes that asked for them, after the
// message is durable. A full queue drops the notice, never the mail.
func (n *Node) notify(m *smtp.Message, data []byte, entries []catalog.Entry) {
	for _, e := range entries {
		mb, ok := n.dir.Lookup(e.Mailbox)
		if !ok || mb.Options.Notify == "" || strings.HasPrefix(e.Mailbox, quarantinePrefix) {
			continue
		}
		ev := pipeline.NewEvent(e.ID, e.Mailbox, m.From, data)
		if !n.notifier.Notify(e.Mailbox, mb.Options.Notify, ev) {
			n.log.Warn("node: notification queue full; notice dropped", "mailbox", e.Mailbox, "id", e.ID)
		}
	}
}

// Quarantined lists the quarantined messages.
func (n *Node) Quarantined() []catalog.Entry {
	var out []catalog.Entry
	n.cat.ForEach(func(e *catalog.Entry) bool {
		if e.Live() && strings.HasPrefix(e.Mailbox, quarantinePrefix) {
			out = append(out, *e)
		}
		return true
	})
	sortEntries(out)
	return out
}

// errNotQuarantined is returned by Release for ids that are not held.
var errNotQuarantined = errors.New("node: not in quarantine")

// Release moves a quarantined message into its recipient's mailbox: a new
// version of its entry with the real mailbox, pushed everywhere.
func (n *Node) Release(ctx context.Context, id string) error {
	e, ok := n.cat.Get(id)
	if !ok || !e.Live() || !strings.HasPrefix(e.Mailbox, quarantinePrefix) {
		return fmt.Errorf("%w: %s", errNotQuarantined, id)
	}
	e.Mailbox = strings.TrimPrefix(e.Mailbox, quarantinePrefix)
	e.Version = n.cat.Now()
	e.Trace = append(append([]string(nil), e.Trace...), "quarantine: released by the operator")
	if _, err := n.cat.Apply(e); err != nil {
		return err
	}
	return n.repl.BroadcastSync(ctx, []catalog.Entry{e})
}

// DeleteQuarantined deletes a quarantined message everywhere.
func (n *Node) DeleteQuarantined(ctx context.Context, id string) error {
	e, ok := n.cat.Get(id)
	if !ok || !e.Live() || !strings.HasPrefix(e.Mailbox, quarantinePrefix) {
		return fmt.Errorf("%w: %s", errNotQuarantined, id)
	}
	return n.deleteMessages(ctx, []string{id})
}

// Trace returns the entries of a transaction (its id, or one copy's id).
func (n *Node) Trace(id string) []catalog.Entry {
	var out []catalog.Entry
	n.cat.ForEach(func(e *catalog.Entry) bool {
		if e.ID == id || strings.HasPrefix(e.ID, id+".") {
			out = append(out, *e)
		}
		return true
	})
	sortEntries(out)
	return out
}

func sortEntries(es []catalog.Entry) {
	slices.SortFunc(es, func(a, b catalog.Entry) int { return strings.Compare(a.ID, b.ID) })
}
