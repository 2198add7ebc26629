package pipeline

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smtpCode is the reply code the listener would send for err.
func smtpCode(err error) int {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func accept(name, reason string, headers ...string) Filter {
	return funcFilter{name, func(context.Context, *Message) (Verdict, error) {
		return Verdict{Action: Accept, Reason: reason, Headers: headers}, nil
	}}
}

func failing(name string, err error) Filter {
	return funcFilter{name, func(context.Context, *Message) (Verdict, error) { return Verdict{}, err }}
}

func TestPipelineOrderAndTrace(t *testing.T) {
	data := []byte(testReceived + "Subject: hi\r\n\r\nbody\r\n")
	var sawModified atomic.Bool
	modify := funcFilter{"rewrite", func(_ context.Context, m *Message) (Verdict, error) {
		return Verdict{Action: Modify, Data: bytes.Replace(m.Data, []byte("body"), []byte("BODY"), 1), Reason: "upper-cased"}, nil
	}}
	after := funcFilter{"after", func(_ context.Context, m *Message) (Verdict, error) {
		sawModified.Store(bytes.Contains(m.Data, []byte("BODY")) && !bytes.Contains(m.Data, []byte("X-First")))
		return Verdict{Action: Accept, Reason: "fine", Headers: []string{"X-Second: 2"}}, nil
	}}
	log, logs := testLogger()
	p := New(DefaultConfig(), log, accept("first", "ok", "X-First: 1"), modify, after)
	assert.Equal(t, []string{"first", "rewrite", "after"}, p.Filters())
	m := testMessage(data)
	res, err := p.Run(context.Background(), m)
	require.NoError(t, err)
	assert.True(t, sawModified.Load(), "a filter sees the previous Modify, not the pending headers")
	assert.Equal(t, testReceived+"X-First: 1\r\nX-Second: 2\r\nSubject: hi\r\n\r\nBODY\r\n", string(res.Data))
	assert.Equal(t, []string{"first: accept: ok", "rewrite: modify: upper-cased", "after: accept: fine"}, res.Trace)
	assert.False(t, res.Quarantine)
	assert.Nil(t, res.Reject)
	assert.Equal(t, testReceived+"Subject: hi\r\n\r\nbody\r\n", string(m.Data), "Run leaves the input alone")
	assert.Contains(t, logs.String(), `msg="pipeline: verdict" id=T1 filter=rewrite verdict=modify reason=upper-cased`)
}

func TestPipelineRejectAndQuarantine(t *testing.T) {
	var laterRan atomic.Bool
	later := funcFilter{"later", func(context.Context, *Message) (Verdict, error) {
		laterRan.Store(true)
		return Verdict{Action: Accept}, nil
	}}
	reply := &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "no"}
	reject := funcFilter{"deny", func(context.Context, *Message) (Verdict, error) {
		return Verdict{Action: Reject, Reject: reply, Reason: "bad\r\nsender"}, nil
	}}
	quarantine := funcFilter{"hold", func(context.Context, *Message) (Verdict, error) {
		return Verdict{Action: Quarantine, Reason: "suspicious", Headers: []string{"X-Held: yes"}}, nil
	}}
	data := []byte(testReceived + "\r\nbody")

	res, err := New(DefaultConfig(), nil, quarantine, reject, later).Run(context.Background(), testMessage(data))
	require.NoError(t, err)
	assert.Equal(t, Result{Reject: reply, Trace: []string{"hold: quarantine: suspicious", "deny: reject: bad  sender"}}, res)
	assert.False(t, laterRan.Load(), "reject stops the pipeline")

	res, err = New(DefaultConfig(), nil, quarantine, later).Run(context.Background(), testMessage(data))
	require.NoError(t, err)
	assert.True(t, res.Quarantine)
	assert.True(t, laterRan.Load(), "quarantine does not stop the pipeline")
	assert.Equal(t, testReceived+"X-Held: yes\r\n\r\nbody", string(res.Data))

	bare := funcFilter{"bare", func(context.Context, *Message) (Verdict, error) { return Verdict{Action: Reject}, nil }}
	res, err = New(DefaultConfig(), nil, bare).Run(context.Background(), testMessage(data))
	require.NoError(t, err)
	assert.Equal(t, 550, res.Reject.Code)
	assert.Equal(t, gosmtp.EnhancedCode{5, 7, 0}, res.Reject.EnhancedCode)
}

func TestPipelineFailures(t *testing.T) {
	data := []byte(testReceived + "Subject: x\r\n\r\nbody")
	boom := errors.New("scanner exploded")
	slow := funcFilter{"slow", func(ctx context.Context, _ *Message) (Verdict, error) {
		<-ctx.Done()
		return Verdict{}, ctx.Err()
	}}
	panicky := funcFilter{"panicky", func(context.Context, *Message) (Verdict, error) { panic("bug") }}
	invalid := func(v Verdict) Filter {
		return funcFilter{"invalid", func(context.Context, *Message) (Verdict, error) { return v, nil }}
	}
	tests := []struct {
		name    string
		filter  Filter
		wantErr string
		is      error
	}{
		{"error", failing("av", boom), "pipeline: filter av: scanner exploded", boom},
		{"timeout", slow, "pipeline: filter slow: timed out after 20ms: context deadline exceeded", context.DeadlineExceeded},
		{"panic", panicky, "pipeline: filter panicky: panic: bug", nil},
		{"modify without data", invalid(Verdict{Action: Modify}), "modify without data", errInvalidVerdict},
		{"header injection", invalid(Verdict{Action: Accept, Headers: []string{"X-A: 1\r\nBcc: x@y"}}), "line break that is not folding", errInvalidVerdict},
		{"reject with 250", invalid(Verdict{Action: Reject, Reject: &gosmtp.SMTPError{Code: 250}}), "reject with code 250", errInvalidVerdict},
		{"unknown action", invalid(Verdict{Action: Action(9)}), "unknown action 9", errInvalidVerdict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Timeout: 20 * time.Millisecond}
			// Fail-closed: an error that answers 451 and an empty result.
			res, err := New(cfg, nil, accept("first", "ok", "X-First: 1"), tt.filter).Run(context.Background(), testMessage(data))
			require.Error(t, err)
			assert.Equal(t, Result{}, res)
			assert.Contains(t, err.Error(), tt.wantErr)
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
			}
			assert.Equal(t, 451, smtpCode(err))
			var fe *FilterError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tt.filter.Name(), fe.Filter)
			require.Len(t, fe.Trace, 2)
			assert.True(t, strings.HasPrefix(fe.Trace[1], tt.filter.Name()+": error: "), fe.Trace[1])

			// Fail-open: the message passes, saying which filter failed.
			cfg.FailOpen = true
			res, err = New(cfg, nil, accept("first", "ok", "X-First: 1"), tt.filter, accept("last", "ok")).Run(context.Background(), testMessage(data))
			require.NoError(t, err)
			assert.Equal(t, testReceived+"X-First: 1\r\nX-Mailarray-Filter-Failed: "+tt.filter.Name()+"\r\nSubject: x\r\n\r\nbody", string(res.Data))
			require.Len(t, res.Trace, 3)
			assert.True(t, strings.HasPrefix(res.Trace[1], tt.filter.Name()+": fail-open: "), res.Trace[1])
			assert.Equal(t, "last: accept: ok", res.Trace[2])
		})
	}
}

func TestPipelineCallerCancelled(t *testing.T) {
	// The caller's own deadline fails the run even when failing open: the
	// transaction is over, there is nobody to accept for.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := funcFilter{"slow", func(ctx context.Context, _ *Message) (Verdict, error) {
		<-ctx.Done()
		return Verdict{}, ctx.Err()
	}}
	_, err := New(Config{FailOpen: true}, nil, slow).Run(ctx, testMessage([]byte("Subject: x\r\n\r\n")))
	assert.ErrorIs(t, err, context.Canceled)
	assert.NotContains(t, err.Error(), "timed out")
}

func TestPipelineConfig(t *testing.T) {
	cfg := Config{}
	require.NoError(t, cfg.Validate())
	assert.Equal(t, DefaultConfig(), cfg)
	bad := Config{Timeout: -time.Second}
	assert.Error(t, bad.Validate())
	assert.Panics(t, func() { New(bad, nil) })
	assert.Panics(t, func() { New(DefaultConfig(), nil, nil) })

	res, err := New(DefaultConfig(), nil).Run(context.Background(), testMessage([]byte("x")))
	require.NoError(t, err)
	assert.Equal(t, "x", string(res.Data), "no filters: the message as it came")
	assert.Empty(t, res.Trace)
}

func TestTraceLineBounded(t *testing.T) {
	long := strings.Repeat("\u00e9", MaxReasonBytes)
	line := traceLine("f", "accept", long)
	assert.LessOrEqual(t, len(line), len("f: accept: ")+MaxReasonBytes+3)
	assert.True(t, strings.HasSuffix(line, "\u00e9..."), "cut on a rune boundary")
}

// An accept is logged only at Debug (the trace keeps it with the message);
// a verdict that changes the message is logged at Info.
func TestPipelineVerdictLogLevels(t *testing.T) {
	modify := funcFilter{"rewrite", func(_ context.Context, m *Message) (Verdict, error) {
		return Verdict{Action: Modify, Data: bytes.ToUpper(m.Data), Reason: "upper-cased"}, nil
	}}
	tests := []struct {
		level      slog.Level
		wantAccept bool
	}{
		{slog.LevelInfo, false},
		{slog.LevelDebug, true},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			logs := &logBuffer{}
			log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: tt.level}))
			p := New(DefaultConfig(), log, accept("first", "ok"), modify)
			res, err := p.Run(context.Background(), testMessage([]byte(testReceived+"\r\nbody")))
			require.NoError(t, err)
			assert.Equal(t, []string{"first: accept: ok", "rewrite: modify: upper-cased"}, res.Trace, "the trace keeps every verdict")
			got := logs.String()
			assert.Contains(t, got, `msg="pipeline: verdict" id=T1 filter=rewrite verdict=modify`)
			if gotAccept := strings.Contains(got, "filter=first verdict=accept"); gotAccept != tt.wantAccept {
				t.Errorf("accept verdict logged at level %v: got %v, want %v\n%s", tt.level, gotAccept, tt.wantAccept, got)
			}
		})
	}
}
