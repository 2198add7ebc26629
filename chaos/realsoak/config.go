package realsoak

import (
	"errors"
	"fmt"
	"time"
)

// Kind is a fault kind of the soak.
type Kind string

// The fault kinds, in the order seeds cycle through them.
const (
	// KindKill is SIGKILL of a node, then a restart on its data directory.
	KindKill Kind = "kill"
	// KindPause is SIGSTOP of a node past failure detection, then SIGCONT.
	KindPause Kind = "pause"
	// KindRestore restarts a node from a backup of its node.db taken
	// earlier in the run (docs/deploy.md section 7).
	KindRestore Kind = "restore"
)

// Kinds lists every fault kind; a run's kind is Kinds[seed % len(Kinds)].
var Kinds = []Kind{KindKill, KindPause, KindRestore}

// Config is the soak's shape. DefaultConfig fills every field; the
// durations leave room for a loaded 2-core machine.
type Config struct {
	// Bin is the mailarray binary (make build).
	Bin string
	// Dir holds one directory per run (users file, data, node logs),
	// removed when the run passes unless KeepPassing.
	Dir         string
	KeepPassing bool

	// Load: LoadDuration of arrivals at RatePerSec (Poisson) from Senders
	// SMTP clients over Mailboxes mailboxes, messages of about
	// MessageBytes, Readers POP3 clients reading and deleting; then Drain
	// for the transactions in flight to end (longer than SMTPTimeout).
	LoadDuration time.Duration
	Drain        time.Duration
	RatePerSec   float64
	Senders      int
	Readers      int
	Mailboxes    int
	MessageBytes int
	SMTPTimeout  time.Duration

	// Node tuning (the YAML keys of node.Tuning), short so that pending
	// resolution, rebuild and anti-entropy happen within a run.
	// RebuildPerScan keeps production's ratio of rebuild time to downtime:
	// a node holds far more copies than one scan moves (512 every 2 s), so
	// a node restarted or restored within a minute is back long before
	// the rebuild of what it held is done. With a run's few hundred
	// messages and a production throttle, the others would rebuild every
	// copy while they still see the node failed or left (several seconds
	// after it is back) and a restored backup would find nothing.
	AntiEntropyEvery time.Duration
	MaintainEvery    time.Duration
	PendingTimeout   time.Duration
	OrphanGrace      time.Duration
	RebuildPerScan   int

	// ReadyTimeout bounds each wait for the nodes to be ready (start,
	// restart); QuiesceTimeout the wait for quiescence after the load;
	// DetectTimeout the wait for a paused node to be declared failed;
	// InUseTimeout how long a POP3 login retries -ERR [IN-USE];
	// RunTimeout a whole run.
	ReadyTimeout   time.Duration
	QuiesceTimeout time.Duration
	DetectTimeout  time.Duration
	InUseTimeout   time.Duration
	RunTimeout     time.Duration
}

// DefaultConfig returns the settings of make soak-real.
func DefaultConfig() Config {
	return Config{
		Bin:              "bin/mailarray",
		Dir:              "tmp/soak-real",
		LoadDuration:     10 * time.Second,
		Drain:            15 * time.Second,
		RatePerSec:       40, // ~400 messages a run
		Senders:          8,
		Readers:          2,
		Mailboxes:        20,
		MessageBytes:     2048,
		SMTPTimeout:      8 * time.Second,
		AntiEntropyEvery: 500 * time.Millisecond,
		MaintainEvery:    500 * time.Millisecond,
		PendingTimeout:   4 * time.Second,
		OrphanGrace:      15 * time.Second,
		RebuildPerScan:   1, // ~2 copies/s a node at MaintainEvery 500ms
		ReadyTimeout:     2 * time.Minute,
		QuiesceTimeout:   3 * time.Minute,
		DetectTimeout:    time.Minute,
		InUseTimeout:     2 * time.Minute,
		RunTimeout:       10 * time.Minute,
	}
}

// Validate reports nonsensical values.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, f string, a ...any) {
		errs = append(errs, fmt.Errorf("realsoak: %s: "+f, append([]any{key}, a...)...))
	}
	if c.Bin == "" || c.Dir == "" {
		bad("Bin, Dir", "must be set")
	}
	if c.LoadDuration < 5*time.Second {
		bad("LoadDuration", "%v must be >= 5s (the faults need room)", c.LoadDuration)
	}
	if c.Drain <= c.SMTPTimeout {
		bad("Drain", "%v must exceed SMTPTimeout %v, so transactions in flight end", c.Drain, c.SMTPTimeout)
	}
	if c.RebuildPerScan < 1 {
		bad("RebuildPerScan", "%d must be >= 1", c.RebuildPerScan)
	}
	if c.RatePerSec <= 0 || c.Senders < 1 || c.Readers < 0 || c.Mailboxes < 1 || c.MessageBytes < 512 {
		bad("load", "rate %v, senders %d, readers %d, mailboxes %d, message bytes %d out of range", c.RatePerSec, c.Senders, c.Readers, c.Mailboxes, c.MessageBytes)
	}
	for _, d := range []time.Duration{c.SMTPTimeout, c.AntiEntropyEvery, c.MaintainEvery, c.PendingTimeout, c.OrphanGrace,
		c.ReadyTimeout, c.QuiesceTimeout, c.DetectTimeout, c.InUseTimeout, c.RunTimeout} {
		if d <= 0 {
			bad("durations", "every duration must be > 0")
			break
		}
	}
	return errors.Join(errs...)
}
