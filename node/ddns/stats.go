package ddns

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Stats keys, besides one "rcode.<NAME>" per reply code and
// "strategy.<name>" for the answers ordered by the Orderer.
const (
	StatNoData        = "nodata"         // NOERROR replies with an empty answer section
	StatTruncated     = "truncated"      // replies cut to fit the UDP size, TC set
	StatMalformed     = "malformed"      // packets that could not be parsed (FORMERR sent, or dropped if shorter than a header)
	StatIgnored       = "ignored"        // responses (QR set) sent to us, dropped
	StatLogSuppressed = "log.suppressed" // rejected-query log lines dropped by LogLimitPerSecond
)

// rcodeSlots covers every rcode we can produce (BADVERS is 16).
const rcodeSlots = 32

// stats counts replies; every field is updated atomically.
type stats struct {
	rcode      [rcodeSlots]atomic.Uint64
	ordered    atomic.Uint64
	nodata     atomic.Uint64
	truncated  atomic.Uint64
	malformed  atomic.Uint64
	ignored    atomic.Uint64
	suppressed atomic.Uint64
}

func (st *stats) countRcode(rcode int) {
	if rcode >= 0 && rcode < rcodeSlots {
		st.rcode[rcode].Add(1)
	}
}

// Stats returns a snapshot of the counters, for metrics: "rcode.NOERROR",
// "rcode.NXDOMAIN", ... (every reply Answer built, plus the FORMERR and
// NOTIMP replies the server sends for packets it rejects before Answer),
// "strategy.<name>" (answers ordered by the Orderer, named by its Name()
// method if it has one), and the Stat* keys.
func (s *Server) Stats() map[string]uint64 {
	// The reply codes the server produces.
	rcodes := [...]int{
		dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError,
		dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers,
	}
	out := make(map[string]uint64, len(rcodes)+6)
	for _, rc := range rcodes {
		name := dns.RcodeToString[rc]
		if rc == dns.RcodeBadVers {
			name = "BADVERS" // shares its number with BADSIG, which the table prints
		}
		out["rcode."+name] = s.stats.rcode[rc].Load()
	}
	out["strategy."+s.strategy] = s.stats.ordered.Load()
	out[StatNoData] = s.stats.nodata.Load()
	out[StatTruncated] = s.stats.truncated.Load()
	out[StatMalformed] = s.stats.malformed.Load()
	out[StatIgnored] = s.stats.ignored.Load()
	out[StatLogSuppressed] = s.stats.suppressed.Load()
	return out
}

// logLimiter lets through at most perSecond events per one-second window.
type logLimiter struct {
	perSecond int

	mu          sync.Mutex
	windowStart time.Time
	n           int    // events let through in this window
	suppressed  uint64 // events refused since the last one let through
}

// allow reports whether to log now and, if so, how many events were
// suppressed since the previous one logged.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed uint64) {
	if l.perSecond <= 0 {
		return false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.windowStart) >= time.Second || now.Before(l.windowStart) {
		l.windowStart, l.n = now, 0
	}
	if l.n >= l.perSecond {
		l.suppressed++
		return false, 0
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
