package pipeline

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"mailarray/node/env"
)

// Limits of the notifier.
const (
	// MaxSMSTextRunes bounds an SMS notice to one GSM segment.
	MaxSMSTextRunes = 160
	// MaxSubjectBytes bounds the subject carried in an Event.
	MaxSubjectBytes = 256
	// maxNotifyResponseBytes bounds what is read of a response body (read
	// only so the connection can be reused).
	maxNotifyResponseBytes = 4 << 10
)

// NotifyConfig configures a Notifier.
type NotifyConfig struct {
	// SMSGateway is the http(s) URL that sends SMS: it gets a POST with
	// the JSON object {"to": "+E164", "text": "..."}. "" disables sms:
	// targets (Notify refuses them).
	SMSGateway string
	// QueueMax bounds the notices waiting or being retried; Notify drops
	// what does not fit.
	QueueMax int
	// MaxAttempts bounds the tries of one notice, the first included.
	MaxAttempts int
	// BackoffMin is the wait before the first retry; each retry doubles
	// it, up to BackoffMax, plus up to half again of random jitter.
	BackoffMin, BackoffMax time.Duration
	// Timeout bounds one attempt (connect, send, response headers).
	Timeout time.Duration
}

// DefaultNotifyConfig returns a notifier that queues 1000 notices and tries
// each 5 times over about a minute: a notice is useful while the mail is
// new, and a webhook that is down for longer is better served by a poll.
func DefaultNotifyConfig() NotifyConfig {
	return NotifyConfig{QueueMax: 1000, MaxAttempts: 5, BackoffMin: 2 * time.Second, BackoffMax: time.Minute, Timeout: 10 * time.Second}
}

// Validate fills defaults and rejects nonsense.
func (c *NotifyConfig) Validate() error {
	d := DefaultNotifyConfig()
	if c.QueueMax == 0 {
		c.QueueMax = d.QueueMax
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = d.BackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = max(d.BackoffMax, c.BackoffMin)
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	switch {
	case c.QueueMax < 1:
		return fmt.Errorf("pipeline: notify: queue max %d < 1", c.QueueMax)
	case c.MaxAttempts < 1:
		return fmt.Errorf("pipeline: notify: max attempts %d < 1", c.MaxAttempts)
	case c.BackoffMin < 0 || c.BackoffMax < c.BackoffMin:
		return fmt.Errorf("pipeline: notify: backoff %v..%v", c.BackoffMin, c.BackoffMax)
	case c.Timeout < 0:
		return fmt.Errorf("pipeline: notify: negative timeout %v", c.Timeout)
	}
	if c.SMSGateway != "" {
		if u, err := url.Parse(c.SMSGateway); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("pipeline: notify: SMS gateway %q is not an http(s) URL", c.SMSGateway)
		}
	}
	return nil
}

// Event is a new message as a notice describes it. Webhooks get it as JSON.
type Event struct {
	ID      string `json:"id"`
	Mailbox string `json:"mailbox"`
	From    string `json:"from"`
	Subject string `json:"subject"`
	Size    int64  `json:"size"`
}

// NewEvent describes a stored message: its transaction id, the mailbox it
// went to, the envelope sender, the Subject field (RFC 2047 words decoded,
// at most MaxSubjectBytes) and the size of data.
func NewEvent(id, mailbox, from string, data []byte) Event {
	subject := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, decodeWords(messageHeader(data).Get("Subject")))
	return Event{ID: id, Mailbox: mailbox, From: from, Subject: truncateUTF8(subject, MaxSubjectBytes), Size: int64(len(data))}
}

func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}

// NotifyStats counts the notifier's outcomes since it started.
type NotifyStats struct {
	Queued    uint64 // accepted by Notify
	Sent      uint64 // delivered (2xx)
	Retried   uint64 // attempts that failed and were rescheduled
	Failed    uint64 // given up: attempts exhausted or a permanent refusal
	Dropped   uint64 // refused by Notify: queue full or closed
	Invalid   uint64 // refused by Notify: bad target, or sms: without a gateway
	Abandoned uint64 // still queued or in flight at Close
	Pending   int    // queued now, retries included
}

// Notifier sends new-mail notices to webhooks and an SMS gateway from a
// bounded queue, retrying with backoff. Notify never blocks, so a notice
// never delays or fails a delivery. Run is the worker loop; it may run in
// several goroutines at once (each one a worker), all owned by the caller
// and all returned once Close returns.
type Notifier struct {
	cfg       NotifyConfig
	rand      *env.Rand
	log       *slog.Logger
	client    *http.Client
	transport *http.Transport
	ctx       context.Context // canceled by Close: stops workers and requests
	cancel    context.CancelFunc
	wake      chan struct{} // a token: something became due
	workers   sync.WaitGroup

	mu      sync.Mutex
	queue   jobQueue
	pending int // queued + in flight
	seq     uint64
	closed  bool

	queued, sent, retried, failed, dropped, invalid, abandoned atomic.Uint64
}

// NewNotifier returns a notifier whose HTTP goes through n (no default
// client or transport) and whose jitter comes from r. It panics if cfg
// does not validate: call cfg.Validate first when it comes from an
// operator.
func NewNotifier(cfg NotifyConfig, n env.Net, r *env.Rand, log *slog.Logger) *Notifier {
	if err := cfg.Validate(); err != nil {
		panic(err.Error())
	}
	if n == nil || r == nil {
		panic("pipeline: notify: nil network or rand")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		DialContext:            n.DialContext,
		MaxIdleConns:           16,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    cfg.Timeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Notifier{
		cfg:       cfg,
		rand:      r,
		log:       log,
		transport: tr,
		client: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			// A webhook that redirects is misconfigured; following it
			// would turn the POST into a GET somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
	}
}

// target is where one notice goes.
type target struct {
	sms    bool
	url    string // webhook URL, or the SMS gateway
	number string // sms: the E.164 number
	logAs  string // for logs: URL without password, number masked
}

func (n *Notifier) parseTarget(t string) (target, error) {
	if num, ok := cutPrefixFold(t, "sms:"); ok {
		if !validE164(num) {
			return target{}, errors.New("want sms:+ and an E.164 number of 7 to 15 digits")
		}
		n.mu.Lock()
		gw := n.cfg.SMSGateway
		n.mu.Unlock()
		if gw == "" {
			return target{}, errors.New("sms target without an SMS gateway configured")
		}
		// A phone number is personal data: the log shows its last digits.
		return target{sms: true, url: gw, number: num, logAs: "sms:..." + num[len(num)-4:]}, nil
	}
	u, err := url.Parse(t)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return target{}, errors.New("want an http(s) URL or sms:+E164")
	}
	return target{url: t, logAs: u.Redacted()}, nil
}

// SetSMSGateway changes the SMS gateway (NotifyConfig.SMSGateway; ""
// disables sms: targets) for the notices queued from now on: those
// already queued keep the gateway they were queued with, so a
// configuration reload loses no notice. A bad URL changes nothing.
func (n *Notifier) SetSMSGateway(gateway string) error {
	n.mu.Lock()
	c := n.cfg
	n.mu.Unlock()
	c.SMSGateway = gateway
	if err := c.Validate(); err != nil {
		return err
	}
	n.mu.Lock()
	n.cfg.SMSGateway = gateway
	n.mu.Unlock()
	return nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// validE164 accepts '+', a country code not starting with 0 and 7 to 15
// digits in all (ITU-T E.164 section 6).
func validE164(num string) bool {
	if len(num) < 8 || len(num) > 16 || num[0] != '+' || num[1] == '0' {
		return false
	}
	for i := 1; i < len(num); i++ {
		if num[i] < '0' || num[i] > '9' {
			return false
		}
	}
	return true
}

// Notify queues a notice of ev for mailbox to target (a directory
// Options.Notify value: an http(s) webhook URL or sms:+E164) and returns at
// once. It returns false, counting and logging why, when the target is
// invalid, the queue is full or the notifier is closed.
func (n *Notifier) Notify(mailbox, target string, ev Event) bool {
	t, err := n.parseTarget(target)
	if err != nil {
		n.invalid.Add(1)
		n.log.Warn("notify: invalid target", "mailbox", mailbox, "err", err.Error())
		return false
	}
	ev.Mailbox = mailbox
	n.mu.Lock()
	if n.closed || n.pending >= n.cfg.QueueMax {
		closed := n.closed
		n.mu.Unlock()
		n.dropped.Add(1)
		n.log.Warn("notify: notice dropped", "mailbox", mailbox, "id", ev.ID, "target", t.logAs, "queue_full", !closed, "closed", closed)
		return false
	}
	n.seq++
	heap.Push(&n.queue, &job{target: t, ev: ev, due: time.Now(), seq: n.seq})
	n.pending++
	n.mu.Unlock()
	n.queued.Add(1)
	n.signal()
	return true
}

func (n *Notifier) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Run sends notices until ctx is done or Close is called. Call it in a
// goroutine (or several); each call is one worker.
func (n *Notifier) Run(ctx context.Context) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.workers.Add(1)
	n.mu.Unlock()
	defer n.workers.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		j, wait := n.next()
		if j != nil {
			n.attempt(ctx, j)
			continue
		}
		var due <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			due = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		case <-due:
		}
		timer.Stop()
	}
}

// next pops a due job, or says how long until the first one is due (0:
// none queued).
func (n *Notifier) next() (*job, time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || len(n.queue) == 0 {
		return nil, 0
	}
	if wait := time.Until(n.queue[0].due); wait > 0 {
		return nil, wait
	}
	return heap.Pop(&n.queue).(*job), 0
}

// attempt sends j once and settles it: done, given up or rescheduled.
func (n *Notifier) attempt(ctx context.Context, j *job) {
	j.attempt++
	retry, err := n.send(ctx, j)
	switch {
	case err == nil:
		// Logged before counted: whoever sees the count sees the line.
		n.log.Info("notify: sent", "mailbox", j.ev.Mailbox, "id", j.ev.ID, "target", j.target.logAs, "attempt", j.attempt)
		n.sent.Add(1)
	case ctx.Err() != nil:
		n.log.Info("notify: abandoned at close", "mailbox", j.ev.Mailbox, "id", j.ev.ID, "target", j.target.logAs)
		n.abandoned.Add(1)
	case !retry || j.attempt >= n.cfg.MaxAttempts:
		n.log.Warn("notify: failed", "mailbox", j.ev.Mailbox, "id", j.ev.ID, "target", j.target.logAs, "attempt", j.attempt, "err", err.Error())
		n.failed.Add(1)
	default:
		delay := n.backoff(j.attempt)
		n.log.Info("notify: retrying", "mailbox", j.ev.Mailbox, "id", j.ev.ID, "target", j.target.logAs, "attempt", j.attempt, "in_ms", delay.Milliseconds(), "err", err.Error())
		n.retried.Add(1)
		n.mu.Lock()
		if !n.closed {
			j.due = time.Now().Add(delay)
			heap.Push(&n.queue, j)
			n.mu.Unlock()
			n.signal() // another worker may be sleeping past the new due time
			return
		}
		n.mu.Unlock()
		n.abandoned.Add(1)
	}
	n.mu.Lock()
	n.pending--
	n.mu.Unlock()
}

// backoff returns the wait after the given failed attempt: BackoffMin
// doubled per earlier failure, capped at BackoffMax, plus up to half of it
// in jitter so that notices failing together do not retry together.
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.cfg.BackoffMin
	for i := 1; i < attempt && d < n.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, n.cfg.BackoffMax)
	return n.rand.Jitter(d, 0.5)
}

// send makes one attempt. retry says whether a failure is worth another
// attempt: network errors, 408, 429 and 5xx are; other refusals are not.
func (n *Notifier) send(ctx context.Context, j *job) (retry bool, err error) {
	var body []byte
	if j.target.sms {
		text := fmt.Sprintf("New mail for %s from %s: %s", j.ev.Mailbox, orNone(j.ev.From), j.ev.Subject)
		if utf8.RuneCountInString(text) > MaxSMSTextRunes {
			text = string([]rune(text)[:MaxSMSTextRunes-3]) + "..."
		}
		body, err = json.Marshal(struct {
			To   string `json:"to"`
			Text string `json:"text"`
		}{j.target.number, text})
	} else {
		body, err = json.Marshal(j.ev)
	}
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.target.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mailarray-notify")
	resp, err := n.client.Do(req)
	if err != nil {
		return true, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxNotifyResponseBytes))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return true, fmt.Errorf("status %s", resp.Status)
	default:
		return false, fmt.Errorf("status %s", resp.Status)
	}
}

func orNone(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

// Close stops the workers, abandoning what is queued and cancelling
// requests in flight, and waits until every Run has returned. Notify
// returns false afterwards.
func (n *Notifier) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	left := len(n.queue)
	n.queue = nil
	n.pending -= left
	n.mu.Unlock()
	n.abandoned.Add(uint64(left))
	if left > 0 {
		n.log.Warn("notify: closing with notices queued", "abandoned", left)
	}
	n.cancel()
	n.workers.Wait()
	n.transport.CloseIdleConnections()
	return nil
}

// Stats returns the counters.
func (n *Notifier) Stats() NotifyStats {
	n.mu.Lock()
	pending := n.pending
	n.mu.Unlock()
	return NotifyStats{
		Queued: n.queued.Load(), Sent: n.sent.Load(), Retried: n.retried.Load(), Failed: n.failed.Load(),
		Dropped: n.dropped.Load(), Invalid: n.invalid.Load(), Abandoned: n.abandoned.Load(), Pending: pending,
	}
}

// job is one notice in the queue.
type job struct {
	target  target
	ev      Event
	attempt int
	due     time.Time
	seq     uint64 // first come, first served among equal due times
}

// jobQueue is a min-heap of jobs by due time.
type jobQueue []*job

func (q jobQueue) Len() int { return len(q) }
func (q jobQueue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}
func (q jobQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *jobQueue) Push(x any)   { *q = append(*q, x.(*job)) }
func (q *jobQueue) Pop() any {
	old := *q
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return j
}
