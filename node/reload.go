package node

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"mailarray/node/pipeline"
	"mailarray/node/smtp"
)

// ReloadStatus is the last configuration reload, as Status reports it.
type ReloadStatus struct {
	// At is when the last reload was asked (zero: never); Result is "ok"
	// or "error", Error the reason of a refusal.
	At     time.Time `json:"at,omitzero"`
	Result string    `json:"result,omitempty"`
	Error  string    `json:"error,omitempty"`
	// Applied are the keys the last reload changed live; Restart the
	// keys it found changed that keep their running value until a restart.
	Applied []string `json:"applied,omitempty"`
	Restart []string `json:"restart,omitempty"`
	Count   int      `json:"count"`
}

// reloader serializes reloads and remembers the last one.
type reloader struct {
	mu   sync.Mutex // one reload at a time
	last ReloadStatus
}

// ErrReloadRefused wraps a reload's reason for refusing a configuration.
var ErrReloadRefused = errors.New("config reload refused")

// Reload makes next the running configuration as far as it can change
// live (configKeys): next is validated whole, and a bad one is refused
// with the running configuration untouched. Live keys that changed take
// their new value (readers see the old or the new configuration whole,
// never a mix: Node.conf swaps one pointer); restart-only keys that
// changed keep their running value and are logged as needing a restart.
// A live key whose part refuses the value (a TLS certificate that does
// not load) refuses the whole reload. `mailarray serve` calls it on SIGHUP.
func (n *Node) Reload(next Config) (ReloadStatus, error) {
	n.reload.mu.Lock()
	defer n.reload.mu.Unlock()
	st, err := n.reloadLocked(next)
	return n.recordReload(st, err)
}

// RefuseReload records a reload whose configuration could not even be
// read (a YAML error, a placeholder secret): logged, counted and shown in
// Status like a refused one.
func (n *Node) RefuseReload(err error) ReloadStatus {
	n.reload.mu.Lock()
	defer n.reload.mu.Unlock()
	st, _ := n.recordReload(ReloadStatus{}, fmt.Errorf("%w: %w", ErrReloadRefused, err))
	return st
}

func (n *Node) recordReload(st ReloadStatus, err error) (ReloadStatus, error) {
	st.At, st.Count = time.Now(), n.reload.last.Count+1
	st.Result = "ok"
	if err != nil {
		st.Result, st.Error = "error", err.Error()
		n.log.Error("config: reload refused; the running configuration stays", "err", err)
	}
	n.metrics.reloads.WithLabelValues(st.Result).Inc()
	n.reload.last = st
	return st, err
}

func (n *Node) reloadLocked(next Config) (ReloadStatus, error) {
	var st ReloadStatus
	if err := next.Validate(); err != nil {
		return st, fmt.Errorf("%w: %w", ErrReloadRefused, err)
	}
	cur := n.conf()
	merged := *cur
	vm, vn := reflect.ValueOf(&merged).Elem(), reflect.ValueOf(&next).Elem()
	for _, f := range diffConfig(cur, &next) {
		c := configKeys[f.key]
		why := c.why
		if c.how == KeyLive && c.restartIf != nil {
			if r := c.restartIf(cur, &next); r != "" {
				c.how, why = KeyRestart, r
			}
		}
		if c.how != KeyLive {
			st.Restart = append(st.Restart, f.key)
			n.log.Warn("config: key changed but needs a restart; keeping the running value", "key", f.key, "why", why)
			continue
		}
		vm.FieldByIndex(f.index).Set(vn.FieldByIndex(f.index))
		st.Applied = append(st.Applied, f.key)
	}
	// The parts that copied a live key at start take the new values;
	// a part that refuses one refuses the reload, before the swap.
	if err := n.applyLive(cur, &merged); err != nil {
		return ReloadStatus{}, fmt.Errorf("%w: %w", ErrReloadRefused, err)
	}
	n.cfg.Store(&merged)
	n.log.Info("config: reloaded", "changed", st.Applied, "needs_restart", st.Restart)
	return st, nil
}

// applyLive hands the live keys to the parts that copied them at start.
// Each setter validates before it changes anything. The steps that read
// outside input come first: the new pipeline is built (its signature and
// spam files loaded) and the new zone files read, neither in use yet, so
// a failure leaves everything as it runs; then the TLS files are loaded;
// only then are the pipeline and zones swapped in.
func (n *Node) applyLive(old, c *Config) error {
	var in *inbound
	if filtersChanged(old.Pipeline, c.Pipeline) {
		var err error
		if in, err = newInbound(n, c.Pipeline); err != nil {
			return fmt.Errorf("config: pipeline: %w", err)
		}
	}
	lz, zonesChanged, err := n.prepareZones(old, c)
	if err != nil {
		return fmt.Errorf("config: zone-file: %w", err)
	}
	gateway := old.Pipeline.SMSGateway != c.Pipeline.SMSGateway
	if gateway {
		nc := pipeline.NotifyConfig{SMSGateway: c.Pipeline.SMSGateway}
		if err := nc.Validate(); err != nil {
			return fmt.Errorf("config: pipeline.sms-gateway: %w", err)
		}
	}
	if n.tls != nil && (old.TLSCert != c.TLSCert || old.TLSKey != c.TLSKey) {
		if err := n.tls.SetFiles(c.TLSCert, c.TLSKey); err != nil {
			return fmt.Errorf("config: tls-cert: %w", err)
		}
	}
	if in != nil {
		n.mu.Lock()
		ctx := n.ctx // nil before Start, which starts the watchers
		if n.closed {
			ctx = nil // nothing to watch for any more
		}
		n.mu.Unlock()
		n.swapInbound(ctx, in)
		n.log.Info("config: pipeline rebuilt", "filters", in.pipe.Filters())
	}
	if zonesChanged {
		n.useZones(n.dns, zoneFiles(c), lz)
	}
	// Validate checked every value, so the setters' own checks (which
	// guard their packages' invariants) do not fail here in practice.
	var errs []error
	if gateway {
		errs = append(errs, n.notifier.SetSMSGateway(c.Pipeline.SMSGateway))
	}
	if n.smtp != nil {
		errs = append(errs, n.smtp.SetLimits(smtp.Limits{
			MaxSessions: c.SMTPMaxSessions, MaxSessionsPerIP: c.SMTPMaxSessionsPerIP, RatePerIP: c.SMTPRatePerIP,
			UnknownRcptTarpitAfter: c.SMTPRcptTarpitAfter, UnknownRcptDelay: c.SMTPRcptTarpitDelay,
			MaxUnknownRcpts: c.SMTPMaxUnknownRcpts, MaxUnknownRcptsPerIP: c.SMTPMaxUnknownRcptsPerIP,
		}))
	}
	if n.pop3 != nil {
		errs = append(errs, n.pop3.SetSessionLimits(c.POP3MaxSessions, c.POP3MaxSessionsPerIP))
	}
	if n.imap != nil {
		errs = append(errs, n.imap.SetSessionLimits(c.IMAPMaxSessions, c.IMAPMaxSessionsPerIP))
	}
	if n.dns != nil {
		errs = append(errs, n.dns.SetTTL(c.DNSTTL))
	}
	n.repl.SetTuning(replicaTuning(c.Tuning))
	return errors.Join(errs...)
}

// LastReload is the last configuration reload (zero: none yet).
func (n *Node) LastReload() ReloadStatus {
	n.reload.mu.Lock()
	defer n.reload.mu.Unlock()
	return n.reload.last
}
