package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"mailarray/node/catalog"
	"mailarray/node/env"
	"mailarray/node/fault"
	"mailarray/node/pipeline"
	"mailarray/node/smtp"
)

// quarantinePrefix marks the catalog mailbox of a quarantined copy: it is
// stored and replicated like mail, but outside the recipient's mailbox.
const quarantinePrefix = "quarantine:"

// inbound holds the node's pipeline and notifier.
type inbound struct {
	pipe     *pipeline.Pipeline
	av       *pipeline.Antivirus
	spam     *pipeline.Spam
	notifier *pipeline.Notifier
}

func newInbound(n *Node) (*inbound, error) {
	pc := n.conf().Pipeline
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
	auth, err := n.newAuthFilter()
	if err != nil {
		return nil, err
	}
	cfg := pipeline.DefaultConfig()
	cfg.FailOpen = pc.FailOpen
	nc := pipeline.DefaultNotifyConfig()
	nc.SMSGateway = pc.SMSGateway
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
	return &inbound{
		pipe:     pipeline.New(cfg, n.log, filters...),
		av:       a,
		spam:     sp,
		notifier: pipeline.NewNotifier(nc, n.env.Net, env.NewRand(n.env.Rand.Uint64()), n.log),
	}, nil
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
func (n *Node) filter(ctx context.Context, m *smtp.Message) (pipeline.Result, error) {
	res, err := n.in.pipe.Run(ctx, &pipeline.Message{ID: m.ID, From: m.From, Helo: m.Helo, To: m.To, Remote: m.Remote, Data: m.Data, Local: localOrigin(ctx)})
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
		if !n.in.notifier.Notify(e.Mailbox, mb.Options.Notify, ev) {
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
