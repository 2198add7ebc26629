package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mailarray/node/intern"
	"net"
	"runtime/debug"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// Action is what a filter decided about a message.
type Action int

const (
	// Accept lets the message through unchanged (Verdict.Headers may still
	// add header fields, which is how a filter flags without refusing).
	Accept Action = iota
	// Modify replaces the message with Verdict.Data.
	Modify
	// Quarantine holds the message in the quarantine queue instead of the
	// recipients' mailboxes. Later filters still run: one of them may
	// refuse the message outright.
	Quarantine
	// Reject refuses the message with Verdict.Reject; later filters do not
	// run.
	Reject
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Modify:
		return "modify"
	case Quarantine:
		return "quarantine"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Verdict is one filter's decision about one message.
type Verdict struct {
	Action Action
	// Data is the replacement message for Modify (CRLF line ends, our
	// Received header still first). Quarantine may carry one too (the
	// held copy is the modified message: the auth filter strips forged
	// fields from what it quarantines); it must be nil for Accept and
	// Reject.
	Data []byte
	// Headers are header fields to add, each "Name: value" without a line
	// end (a folded value uses CRLF followed by a space or tab). The
	// pipeline inserts them after our Received header, in filter order.
	Headers []string
	// Reject is the SMTP reply for Reject (a 4xx or 5xx code). Nil for
	// Reject means 550 5.7.0.
	Reject *gosmtp.SMTPError
	// Reason says why, for the log and the trace; one line.
	Reason string
}

// Message is one SMTP transaction after DATA, as the filters see it.
type Message struct {
	ID   string // transaction id
	From string // envelope sender (reverse path), "" for the null sender
	Helo string
	To   []string // accepted recipients, lower case
	// Remote is the SMTP client's address; nil when unknown.
	Remote net.Addr
	// Local says the array made the message itself (the fax and voicemail
	// gateway): it came in over HTTP, not from a sending MTA, so checks
	// of the sender's authenticity (Auth) do not apply.
	Local bool
	// Data is the message with CRLF line ends and our Received header first.
	Data []byte
}

// Filter is one check of the pipeline.
//
// Check may be called concurrently for different messages. It must not
// modify m or anything m refers to (m.Data included: Modify returns new
// bytes), must not keep m after it returns, and must return soon after ctx
// is done. An error means the check could not be made (a scanner down, a
// file unreadable); it is not a verdict.
type Filter interface {
	// Name identifies the filter in traces, logs and the fail-open header.
	Name() string
	Check(ctx context.Context, m *Message) (Verdict, error)
}

// Result is what the pipeline decided about a message.
type Result struct {
	// Data is the message to store: the last Modify's data (or the input)
	// with every filter's header fields inserted after our Received
	// header. Nil when Reject is set. When no filter changed or flagged
	// anything it is the input slice itself.
	Data []byte
	// Quarantine says the message goes to the quarantine queue.
	Quarantine bool
	// Reject, when set, is the reply that refuses the message.
	Reject *gosmtp.SMTPError
	// Trace has one "filter: verdict: reason" line per filter that ran,
	// in order; the node stores it in the catalog entry.
	Trace []string
}

// FilterFailedHeader is the header field a fail-open pipeline adds, with the
// failed filter's name as value, when a filter could not check a message.
const FilterFailedHeader = "X-Mailarray-Filter-Failed"

// Limits of the pipeline.
const (
	// MaxReasonBytes bounds one reason in a trace line and the log; a
	// filter could otherwise put a whole message into the catalog.
	MaxReasonBytes = 512
	// MaxHeaderFieldBytes bounds one added header field. RFC 5322 section
	// 2.1.1 limits a line to 998 characters; a longer field must be folded.
	MaxHeaderFieldBytes = 4096
)

// Config of a Pipeline.
type Config struct {
	// FailOpen: a filter that fails (error, timeout, panic, invalid
	// verdict) lets the message through with a FilterFailedHeader field
	// instead of failing the transaction with 451. Fail-closed (false) is
	// the default: the sender retries later and nothing unchecked is
	// stored.
	FailOpen bool
	// Timeout bounds each filter's Check (its context's deadline).
	Timeout time.Duration
}

// DefaultConfig returns fail-closed filtering with a 10 s limit per filter:
// the SMTP listener bounds the whole delivery to 30 s by default, and
// placement needs what the filters leave of it.
func DefaultConfig() Config {
	return Config{FailOpen: false, Timeout: 10 * time.Second}
}

// Validate fills defaults and rejects nonsense.
func (c *Config) Validate() error {
	if c.Timeout == 0 {
		c.Timeout = DefaultConfig().Timeout
	}
	if c.Timeout < 0 {
		return fmt.Errorf("pipeline: negative filter timeout %v", c.Timeout)
	}
	return nil
}

// FilterError is Run's error: the named filter could not check the message
// (or the caller's context ended). It unwraps to a 451 4.3.0 reply
// (*gosmtp.SMTPError) first and then to the cause, so the SMTP listener's
// usual mapping answers 451 and errors.Is still finds the cause
// (context.DeadlineExceeded for a timeout).
type FilterError struct {
	Filter string
	Err    error
	// Trace is the trace up to and including the failure, for the log.
	Trace []string
}

func (e *FilterError) Error() string {
	return fmt.Sprintf("pipeline: filter %s: %v", e.Filter, e.Err)
}

// Unwrap returns the temporary-failure reply and the cause.
func (e *FilterError) Unwrap() []error {
	// RFC 5321 section 4.2.2: 451 requested action aborted, local error in
	// processing; RFC 3463 X.3.0: other or undefined mail system status.
	reply := &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Content check failed, try again later"}
	return []error{reply, e.Err}
}

// errInvalidVerdict is wrapped by the errors for verdicts that break the
// Verdict contract (a bug in the filter).
var errInvalidVerdict = errors.New("invalid verdict")

// Pipeline runs an explicit ordered list of filters. It is safe for
// concurrent use: it holds no per-message state.
type Pipeline struct {
	cfg     Config
	log     *slog.Logger
	filters []Filter
}

// New returns a pipeline running filters in the order given. It panics if
// cfg does not validate or a filter is nil (programmer errors: the node
// validates its configuration before building the pipeline).
func New(cfg Config, log *slog.Logger, filters ...Filter) *Pipeline {
	if err := cfg.Validate(); err != nil {
		panic(err.Error())
	}
	for i, f := range filters {
		if f == nil {
			panic(fmt.Sprintf("pipeline: filter %d is nil", i))
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{cfg: cfg, log: log, filters: append([]Filter(nil), filters...)}
}

// Filters returns the filters' names in order.
func (p *Pipeline) Filters() []string {
	names := make([]string, len(p.filters))
	for i, f := range p.filters {
		names[i] = f.Name()
	}
	return names
}

// Run checks m with every filter in order and returns the outcome. Each
// filter sees the data as the previous Modify left it, without the header
// fields earlier filters asked for (they are inserted once, at the end).
// Reject stops the pipeline; Quarantine does not.
//
// An error (always a *FilterError) means the message must not be stored:
// answer 451. With Config.FailOpen a failed filter is instead recorded in
// the trace and a FilterFailedHeader field, and the pipeline goes on; the
// caller's own context ending is an error either way. m is not modified.
func (p *Pipeline) Run(ctx context.Context, m *Message) (Result, error) {
	data := m.Data
	var headers, trace []string
	quarantine := false
	for _, f := range p.filters {
		name := f.Name()
		work := *m
		work.Data = data
		v, err := p.check(ctx, f, &work)
		if err == nil {
			err = v.validate()
		}
		if err != nil {
			if ctx.Err() != nil || !p.cfg.FailOpen {
				trace = append(trace, traceLine(name, "error", err.Error()))
				p.log.Warn("pipeline: filter failed", "id", m.ID, "filter", name, "err", err.Error(), "fail_open", false)
				return Result{}, &FilterError{Filter: name, Err: err, Trace: trace}
			}
			trace = append(trace, traceLine(name, "fail-open", err.Error()))
			headers = append(headers, FilterFailedHeader+": "+name)
			p.log.Warn("pipeline: filter failed", "id", m.ID, "filter", name, "err", err.Error(), "fail_open", true)
			continue
		}
		trace = append(trace, traceLine(name, v.Action.String(), v.Reason))
		// A verdict that changes the message's fate or bytes is logged at
		// Info. A plain accept is the common case and only at Debug: the
		// trace above keeps it in every catalog entry of the message, and
		// at Info its lines were two of the three log lines written per
		// message, each a write(2) and a share of ingest's CPU
		// (docs/performance.md, "Ingest").
		level := slog.LevelInfo
		if v.Action == Accept {
			level = slog.LevelDebug
		}
		if p.log.Enabled(ctx, level) { // not even the arguments' boxing when off
			p.log.Log(ctx, level, "pipeline: verdict", "id", m.ID, "filter", name, "verdict", v.Action.String(), "reason", oneLine(v.Reason))
		}
		headers = append(headers, v.Headers...)
		switch v.Action {
		case Modify:
			data = v.Data
		case Quarantine:
			quarantine = true
			if v.Data != nil {
				data = v.Data
			}
		case Reject:
			r := v.Reject
			if r == nil {
				// RFC 3463 X.7.0: other or undefined security status.
				r = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0}, Message: "Message refused by content policy"}
			}
			return Result{Reject: r, Trace: trace}, nil
		}
	}
	return Result{Data: InsertHeaders(data, headers), Quarantine: quarantine, Trace: trace}, nil
}

// check runs one filter under its timeout, turning a panic into an error so
// that a filter bug fails one transaction (451) rather than the node.
func (p *Pipeline) check(ctx context.Context, f Filter, m *Message) (v Verdict, err error) {
	fctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("pipeline: filter panicked", "id", m.ID, "filter", f.Name(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			v, err = Verdict{}, fmt.Errorf("panic: %v", r)
		}
	}()
	v, err = f.Check(fctx, m)
	if err != nil && ctx.Err() == nil && errors.Is(fctx.Err(), context.DeadlineExceeded) {
		// The filter ran out of its own time, not the caller's.
		err = fmt.Errorf("timed out after %v: %w", p.cfg.Timeout, err)
	}
	return v, err
}

// validate checks the Verdict contract.
func (v *Verdict) validate() error {
	switch v.Action {
	case Quarantine:
	case Accept:
		if v.Data != nil {
			return fmt.Errorf("%w: data with %s", errInvalidVerdict, v.Action)
		}
	case Modify:
		if v.Data == nil {
			return fmt.Errorf("%w: modify without data", errInvalidVerdict)
		}
	case Reject:
		if v.Data != nil {
			return fmt.Errorf("%w: data with reject", errInvalidVerdict)
		}
		if v.Reject != nil && (v.Reject.Code < 400 || v.Reject.Code > 599) {
			return fmt.Errorf("%w: reject with code %d", errInvalidVerdict, v.Reject.Code)
		}
	default:
		return fmt.Errorf("%w: unknown action %d", errInvalidVerdict, int(v.Action))
	}
	for _, h := range v.Headers {
		if reason := checkHeaderField(h); reason != "" {
			return fmt.Errorf("%w: header %.40q: %s", errInvalidVerdict, h, reason)
		}
	}
	return nil
}

func traceLine(filter, verdict, reason string) string {
	// Catalog entries keep their trace for good, and most lines are
	// the same for every message: share one copy of each.
	return intern.String(filter + ": " + verdict + ": " + oneLine(reason))
}

// oneLine makes reason a single bounded line.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > MaxReasonBytes {
		cut := MaxReasonBytes
		for cut > 0 && s[cut]&0xc0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
