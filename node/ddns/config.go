package ddns

import (
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// Limits that bound Config values.
const (
	// MaxTTL is the largest TTL a resource record may carry: RFC 2181
	// section 8 limits TTLs to 2^31-1 seconds.
	MaxTTL = (1<<31 - 1) * time.Second
	// minUDPBytes is the payload every DNS implementation must accept over
	// UDP (RFC 1035 section 4.2.1); RFC 6891 section 6.2.5 says smaller
	// EDNS sizes are treated as 512.
	minUDPBytes = dns.MinMsgSize
	// maxMsgBytes is the largest DNS message (the TCP length prefix is 16 bits).
	maxMsgBytes = dns.MaxMsgSize
	// keepaliveUnit is the unit of the edns-tcp-keepalive TIMEOUT, a
	// 16-bit count (RFC 7828 section 3.1), which bounds TCPIdleTimeout.
	keepaliveUnit = 100 * time.Millisecond
	maxKeepalive  = (1<<16 - 1) * keepaliveUnit
)

// Config tunes the DNS server. Start from DefaultConfig and change fields;
// New panics on a Config that fails Validate (a programmer error: the node
// validates its configuration at load time).
type Config struct {
	// TTL of every positive record (SOA, NS, MX, A, AAAA). Short, because
	// answers follow membership: a failed node must leave caches quickly.
	// Whole seconds, 0..MaxTTL.
	TTL time.Duration
	// NegativeTTL is the SOA MINIMUM field, which caps how long resolvers
	// cache NXDOMAIN and NODATA answers (RFC 2308 section 4-5). Whole
	// seconds, 0..MaxTTL.
	NegativeTTL time.Duration
	// Refresh, Retry and Expire fill the SOA record (RFC 1035 section
	// 3.3.13). There are no secondaries (every dns node answers from live
	// membership), so they only need to be sane. Whole seconds, >0.
	Refresh time.Duration
	Retry   time.Duration
	Expire  time.Duration
	// MaxAnswers caps the number of records in an ordered answer (MX at the
	// apex, A/AAAA for pop., imap., smtp., mx.): the first MaxAnswers nodes
	// in the Orderer's order. 0 means all live nodes.
	MaxAnswers int
	// MaxUDPBytes is the largest UDP reply we send and the payload size we
	// advertise in our OPT record. The client's EDNS size (RFC 6891 section
	// 6.2.3) lowers it; a client without EDNS gets 512 bytes. 1232 avoids
	// IP fragmentation (DNS flag day 2020). 512..65535.
	MaxUDPBytes int
	// UDPReadBytes is the buffer each UDP query is read into; longer
	// datagrams are cut and then answered FORMERR. 512..65535.
	UDPReadBytes int
	// ReadTimeout bounds the wait for the first query on a TCP connection
	// (and is the period of the UDP read loop's deadline). >0.
	ReadTimeout time.Duration
	// WriteTimeout bounds each TCP reply write, so a client that does not
	// read cannot hold a goroutine (and Close) forever. >0.
	WriteTimeout time.Duration
	// TCPIdleTimeout bounds the wait between queries on one TCP connection
	// (RFC 7766 section 6.2.3 recommends seconds): connections are closed
	// when idle, never with a query unanswered. It is what a client asking
	// with edns-tcp-keepalive is told (RFC 7828 section 3.3.2).
	// 100ms..6553.5s (the option counts units of 100ms).
	TCPIdleTimeout time.Duration
	// MaxTCPQueries is how many queries one TCP connection may carry before
	// the server closes it; 0 means no limit. A limit drops the queries a
	// pipelining client already sent beyond it (the server closes without
	// reading them), which RFC 7766 section 6.2.1 forbids: leave it 0
	// except to defend against a known abuser. >=0.
	MaxTCPQueries int
	// LogLimitPerSecond caps the debug log lines about rejected queries
	// (REFUSED, FORMERR, NOTIMP) so a flood cannot flood the log; the
	// number suppressed is logged when logging resumes. 0 disables them.
	LogLimitPerSecond int
}

// DefaultConfig returns the configuration a node uses unless told otherwise.
func DefaultConfig() Config {
	return Config{
		TTL:               5 * time.Second,  // membership changes show within seconds
		NegativeTTL:       5 * time.Second,  // a node that joins is found as fast
		Refresh:           time.Hour,        // RFC 1912 section 2.2 range
		Retry:             10 * time.Minute, // well below Refresh
		Expire:            14 * 24 * time.Hour,
		MaxAnswers:        0, // all live nodes
		MaxUDPBytes:       1232,
		UDPReadBytes:      4096,
		ReadTimeout:       2 * time.Second, // miekg/dns default
		WriteTimeout:      2 * time.Second,
		TCPIdleTimeout:    8 * time.Second, // miekg/dns default, RFC 7766
		MaxTCPQueries:     0,               // RFC 7766: only the idle timeout closes
		LogLimitPerSecond: 10,
	}
}

// Validate reports the first nonsensical field, or nil.
func (c Config) Validate() error {
	var errs []error
	seconds := func(name string, d time.Duration, allowZero bool) {
		switch {
		case d < 0 || (!allowZero && d == 0):
			errs = append(errs, fmt.Errorf("ddns: config: %s %v must be positive", name, d))
		case d > MaxTTL:
			errs = append(errs, fmt.Errorf("ddns: config: %s %v exceeds %v (RFC 2181 section 8)", name, d, MaxTTL))
		case d%time.Second != 0:
			errs = append(errs, fmt.Errorf("ddns: config: %s %v is not whole seconds", name, d))
		}
	}
	seconds("TTL", c.TTL, true)
	seconds("NegativeTTL", c.NegativeTTL, true)
	seconds("Refresh", c.Refresh, false)
	seconds("Retry", c.Retry, false)
	seconds("Expire", c.Expire, false)
	if c.MaxAnswers < 0 {
		errs = append(errs, fmt.Errorf("ddns: config: MaxAnswers %d must be >= 0", c.MaxAnswers))
	}
	if c.MaxUDPBytes < minUDPBytes || c.MaxUDPBytes > maxMsgBytes {
		errs = append(errs, fmt.Errorf("ddns: config: MaxUDPBytes %d not in %d..%d", c.MaxUDPBytes, minUDPBytes, maxMsgBytes))
	}
	if c.UDPReadBytes < minUDPBytes || c.UDPReadBytes > maxMsgBytes {
		errs = append(errs, fmt.Errorf("ddns: config: UDPReadBytes %d not in %d..%d", c.UDPReadBytes, minUDPBytes, maxMsgBytes))
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"ReadTimeout", c.ReadTimeout}, {"WriteTimeout", c.WriteTimeout}} {
		if t.d <= 0 {
			errs = append(errs, fmt.Errorf("ddns: config: %s %v must be positive", t.name, t.d))
		}
	}
	if c.TCPIdleTimeout < keepaliveUnit || c.TCPIdleTimeout > maxKeepalive {
		errs = append(errs, fmt.Errorf("ddns: config: TCPIdleTimeout %v not in %v..%v (RFC 7828 section 3.1)", c.TCPIdleTimeout, keepaliveUnit, maxKeepalive))
	}
	if c.MaxTCPQueries < 0 {
		errs = append(errs, fmt.Errorf("ddns: config: MaxTCPQueries %d must be >= 0", c.MaxTCPQueries))
	}
	if c.LogLimitPerSecond < 0 {
		errs = append(errs, fmt.Errorf("ddns: config: LogLimitPerSecond %d must be >= 0", c.LogLimitPerSecond))
	}
	return errors.Join(errs...)
}

// ttl converts a validated duration to an RR TTL in seconds.
func ttl(d time.Duration) uint32 { return uint32(d / time.Second) }
