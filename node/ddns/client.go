package ddns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"mailarray/node/env"
)

// Client limits.
const (
	// DefaultExchangeTimeout bounds an exchange whose context has no deadline.
	DefaultExchangeTimeout = 5 * time.Second
	// lookupUDPBytes is the EDNS size LookupMX and LookupA advertise:
	// large enough for a few dozen nodes, small enough not to fragment.
	lookupUDPBytes = 1232
)

// RcodeError is returned by LookupMX and LookupA when the server answers
// with an error code (NXDOMAIN, REFUSED, SERVFAIL, ...).
type RcodeError struct {
	Name  string // question name
	Type  uint16 // question type
	Rcode int
}

func (e *RcodeError) Error() string {
	return fmt.Sprintf("ddns: lookup %s %s: %s", e.Name, dns.Type(e.Type), dns.RcodeToString[e.Rcode])
}

// Exchange sends m to server ("host:port") over UDP, or TCP if tcp, dialing
// through n, and returns the reply. It does not retry over TCP on a
// truncated reply (LookupMX and LookupA do). The exchange ends at ctx's
// deadline or cancellation, or after DefaultExchangeTimeout.
func Exchange(ctx context.Context, n env.Net, server string, m *dns.Msg, tcp bool) (*dns.Msg, error) {
	if m == nil {
		return nil, errors.New("ddns: exchange: nil message")
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	conn, err := n.DialContext(ctx, network, server)
	if err != nil {
		return nil, fmt.Errorf("ddns: exchange with %s over %s: %w", server, network, err)
	}
	defer conn.Close()
	if _, ok := conn.(net.PacketConn); !tcp && !ok {
		// miekg/dns tells UDP from TCP by the net.PacketConn interface;
		// without it, it would frame datagrams with a TCP length prefix.
		conn = datagramConn{conn}
	}
	// Cancellation: a past deadline unblocks the exchange at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	// The client's timeouts are capped by ctx's deadline; with none, the
	// default bounds the exchange.
	c := &dns.Client{Net: network, Timeout: DefaultExchangeTimeout}
	if deadline, ok := ctx.Deadline(); ok {
		c.Timeout = max(time.Until(deadline), time.Nanosecond)
	}
	r, _, err := c.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: conn})
	if err != nil {
		// A read cut by ctx's deadline may fail a moment before ctx
		// reports it: report the context's error either way.
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		} else if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
			err = context.DeadlineExceeded
		}
		return nil, fmt.Errorf("ddns: exchange with %s over %s: %w", server, network, err)
	}
	return r, nil
}

// datagramConn presents a connected datagram conn as a net.PacketConn.
type datagramConn struct{ net.Conn }

var _ net.PacketConn = datagramConn{}

func (c datagramConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, err := c.Read(p)
	return n, c.RemoteAddr(), err
}

func (c datagramConn) WriteTo(p []byte, _ net.Addr) (int, error) { return c.Write(p) }

// LookupMX asks server for the MX records of domain, retrying over TCP if
// the UDP reply was truncated. The records are sorted by preference, best
// first (the server's order is kept between equals). NODATA is an empty
// result; an error rcode is an *RcodeError.
func LookupMX(ctx context.Context, n env.Net, server, domain string) ([]*dns.MX, error) {
	r, err := lookup(ctx, n, server, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []*dns.MX
	for _, rr := range r.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, mx)
		}
	}
	slices.SortStableFunc(out, func(a, b *dns.MX) int { return int(a.Preference) - int(b.Preference) })
	return out, nil
}

// LookupA asks server for the A records of name, retrying over TCP if the
// UDP reply was truncated, and returns the addresses in the server's order
// (the strategy's choice first). NODATA is an empty result; an error rcode
// is an *RcodeError.
func LookupA(ctx context.Context, n env.Net, server, name string) ([]net.IP, error) {
	r, err := lookup(ctx, n, server, name, dns.TypeA)
	if err != nil {
		return nil, err
	}
	var out []net.IP
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A)
		}
	}
	return out, nil
}

// lookup asks one question over UDP, then TCP if the reply was truncated
// (RFC 1035 section 4.2.2, RFC 7766 section 5).
func lookup(ctx context.Context, n env.Net, server, name string, qtype uint16) (*dns.Msg, error) {
	name = dns.Fqdn(name)
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false // the server is authoritative
	m.SetEdns0(lookupUDPBytes, false)
	r, err := Exchange(ctx, n, server, m, false)
	if err == nil && r.Truncated {
		r, err = Exchange(ctx, n, server, m, true)
	}
	if err != nil {
		return nil, err
	}
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, name) || r.Question[0].Qtype != qtype {
		return nil, fmt.Errorf("ddns: lookup %s %s: reply for another question", name, dns.Type(qtype))
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, &RcodeError{Name: name, Type: qtype, Rcode: r.Rcode}
	}
	return r, nil
}
