package bench

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"mailarray/bench/report"
	"mailarray/sim"
)

// SaturationConfig shapes the saturation search. Every probe is a short
// run of the strategy's scenario at one offered rate.
type SaturationConfig struct {
	// LoadDuration is each probe's load (virtual). Overload shows as a
	// growing client backlog, so a probe detects an overload of about
	// target_p99 / LoadDuration: 250 ms / 3 s = 8%.
	LoadDuration time.Duration
	// Drain follows the load, so that late replies are counted.
	Drain time.Duration
	// MaxProbes bounds the runs of one search (doubling plus bisection).
	MaxProbes int
	// MaxRate caps the doubling (msgs/s): a search that passes it stops.
	MaxRate float64
	// Resolution ends the bisection once (first fail - last pass) / last
	// pass is at most this.
	Resolution float64
	// RateStep: probe rates are rounded to multiples of it (msgs/s), so
	// that the tables show round numbers.
	RateStep float64
	// SenderSeconds sizes the client pool: a probe has at least
	// rate x SenderSeconds senders (and no fewer than the scenario's), so
	// that the pool can keep that many messages in flight and the search
	// measures the array, not the clients. It should be the target p99.
	SenderSeconds float64
}

// Limits of a saturation search.
const (
	maxSaturationProbes = 32
	maxProbeSenders     = 4096 // sim's limit on load.senders
)

// DefaultSaturationConfig is what `make bench` runs: about 8 probes of
// 3 + 2 virtual seconds per strategy.
func DefaultSaturationConfig() SaturationConfig {
	return SaturationConfig{
		LoadDuration:  3 * time.Second,
		Drain:         2 * time.Second,
		MaxProbes:     8,
		MaxRate:       51200,
		Resolution:    0.1,
		RateStep:      50,
		SenderSeconds: 0.25,
	}
}

// Validate reports nonsensical values.
func (c SaturationConfig) Validate() error {
	var errs []error
	if c.LoadDuration < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("bench: saturation: LoadDuration %v must be >= 100ms", c.LoadDuration))
	}
	if c.Drain < 0 {
		errs = append(errs, errors.New("bench: saturation: Drain must be >= 0"))
	}
	if c.MaxProbes < 1 || c.MaxProbes > maxSaturationProbes {
		errs = append(errs, fmt.Errorf("bench: saturation: MaxProbes %d must be 1..%d", c.MaxProbes, maxSaturationProbes))
	}
	if !(c.MaxRate > 0) {
		errs = append(errs, errors.New("bench: saturation: MaxRate must be > 0"))
	}
	if !(c.Resolution > 0) {
		errs = append(errs, errors.New("bench: saturation: Resolution must be > 0"))
	}
	if !(c.RateStep > 0) {
		errs = append(errs, errors.New("bench: saturation: RateStep must be > 0"))
	}
	if c.SenderSeconds < 0 {
		errs = append(errs, errors.New("bench: saturation: SenderSeconds must be >= 0"))
	}
	return errors.Join(errs...)
}

// Criterion describes what a probe must do to pass, for the report.
func (c SaturationConfig) Criterion() string {
	return fmt.Sprintf("a %s run (+%s drain) at the offered rate accepts every message (none rejected, failed, dropped or left unsent), loses none, and keeps p99 latency (arrival to 250) within the scenario's target_p99", c.LoadDuration, c.Drain)
}

// ProbeScenario is sc shortened to one probe at rate msgs/s: the same
// cluster, strategies, seed and load shape, with a client pool sized for
// the rate.
func (c SaturationConfig) ProbeScenario(sc sim.Scenario, rate float64) sim.Scenario {
	p := sc
	p.Duration = sim.Duration(c.LoadDuration)
	p.Drain = sim.Duration(c.Drain)
	p.Load.RatePerSec = rate
	p.Load.Senders = ProbeSenders(sc.Load.Senders, rate, c.SenderSeconds)
	p.Faults = nil
	return p
}

// ProbeSenders is the client pool of a probe: base, or enough senders to
// keep rate x seconds messages in flight, capped at the simulator's limit.
func ProbeSenders(base int, rate, seconds float64) int {
	return min(max(base, int(math.Ceil(rate*seconds))), maxProbeSenders)
}

// SummarizeProbe reduces a probe's report to its verdict.
func SummarizeProbe(rep *sim.Report, rate float64, senders int) (report.Probe, error) {
	js, err := rep.StableJSON()
	if err != nil {
		return report.Probe{}, fmt.Errorf("bench: probe report: %w", err)
	}
	r, err := report.Decode(js)
	if err != nil {
		return report.Probe{}, err
	}
	return Verdict(r, rate, senders), nil
}

// Verdict judges one probe's report against the saturation criterion.
func Verdict(r *report.Report, rate float64, senders int) report.Probe {
	f := report.Derive(r)
	p := report.Probe{
		OfferedRate: rate, Senders: senders,
		Offered: r.Offered, Accepted: r.Accepted,
		NotAccepted: r.Rejected + r.Failed + r.ClientDropped + r.Unsent,
		Lost:        r.Lost, Throughput: r.Throughput,
		P50Ms: r.Latency.P50, P99Ms: r.Latency.P99,
		Busiest: f.Busiest, BusiestWhat: f.BusiestWhat, BusiestFrac: round4(f.BusiestFrac),
		SlowCopyShare: f.SlowCopyShare,
	}
	if r.Host != nil {
		p.HostUtil = r.Host.Utilization
	}
	var why []string
	if p.NotAccepted > 0 {
		why = append(why, fmt.Sprintf("%d of %d not accepted (rejected %d, failed %d, dropped %d, unsent %d)",
			p.NotAccepted, r.Offered, r.Rejected, r.Failed, r.ClientDropped, r.Unsent))
	}
	if p.Lost > 0 {
		why = append(why, fmt.Sprintf("%d lost", p.Lost))
	}
	if r.TargetP99Ms > 0 && (r.Accepted == 0 || r.Latency.P99 > r.TargetP99Ms) {
		why = append(why, fmt.Sprintf("p99 %.1f ms > target %.0f ms", r.Latency.P99, r.TargetP99Ms))
	}
	if r.Accepted == 0 {
		why = append(why, "nothing accepted")
	}
	p.Pass = len(why) == 0
	p.Why = strings.Join(why, "; ")
	return p
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// Search finds the highest rate that passes: probes at start, doubling
// while they pass (halving while they fail, if start fails), then
// bisecting between the highest pass and the lowest fail until they are
// within Resolution or MaxProbes runs are spent. It returns the highest
// passing rate (0 if none), the lowest failing rate (0 if none) and every
// probe in order. Rates are multiples of RateStep.
func (c SaturationConfig) Search(start float64, probe func(rate float64) (report.Probe, error)) (pass, fail float64, probes []report.Probe, err error) {
	if err := c.Validate(); err != nil {
		return 0, 0, nil, err
	}
	round := func(r float64) float64 { return max(c.RateStep, math.Round(r/c.RateStep)*c.RateStep) }
	rate := round(start)
	tried := map[float64]bool{}
	for len(probes) < c.MaxProbes {
		if tried[rate] {
			break
		}
		tried[rate] = true
		p, err := probe(rate)
		if err != nil {
			return pass, fail, probes, fmt.Errorf("bench: saturation probe at %v msgs/s: %w", rate, err)
		}
		probes = append(probes, p)
		if p.Pass {
			pass = max(pass, rate)
		} else if fail == 0 || rate < fail {
			fail = rate
		}
		switch {
		case fail == 0: // every probe passed: double
			if rate >= c.MaxRate {
				return pass, fail, probes, nil
			}
			rate = round(min(rate*2, c.MaxRate))
		case pass == 0: // every probe failed: halve
			if rate <= c.RateStep {
				return pass, fail, probes, nil
			}
			rate = round(rate / 2)
		default:
			if (fail-pass)/pass <= c.Resolution || fail-pass <= c.RateStep {
				return pass, fail, probes, nil
			}
			rate = round((pass + fail) / 2)
			if rate <= pass || rate >= fail {
				return pass, fail, probes, nil
			}
		}
	}
	return pass, fail, probes, nil
}
