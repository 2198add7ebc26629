package ddns

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// RFC 7766 section 6.2.1: a client may pipeline queries on one TCP
// connection and the server must answer every one; miekg/dns's default
// closed the connection after 128 queries, resetting it with the rest
// unread. All queries are written before any reply is read.
func TestServeTCPPipelinedQueriesAllAnswered(t *testing.T) {
	ts := startServer(t, testCluster(), serverOpts{})
	c, err := ts.net.DialContext(context.Background(), "tcp", ts.tcpAddr)
	require.NoError(t, err)
	defer c.Close()
	co := &dns.Conn{Conn: c}
	const queries = 500 // well past miekg/dns's old 128
	written := make(chan error, 1)
	go func() {
		for i := range queries {
			m := query(fmt.Sprintf("n%d.example.com.", 1+i%3), dns.TypeA)
			m.Id = uint16(i)
			if err := co.WriteMsg(m); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	seen := make(map[uint16]bool)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	for len(seen) < queries {
		r, err := co.ReadMsg()
		require.NoError(t, err, "after %d of %d replies", len(seen), queries)
		assert.Equal(t, dns.RcodeSuccess, r.Rcode)
		assert.False(t, seen[r.Id], "reply %d twice", r.Id)
		seen[r.Id] = true
	}
	require.NoError(t, <-written)
}

// RFC 7828 section 3.3.2: over TCP, a query with edns-tcp-keepalive learns
// the idle timeout; over UDP the option is ignored (section 3.2.1).
func TestServeTCPKeepalive(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TCPIdleTimeout = 3 * time.Second
	ts := startServer(t, testCluster(), serverOpts{cfg: &cfg})
	ask := func() *dns.Msg {
		m := query("example.com.", dns.TypeSOA)
		m.SetEdns0(1232, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE})
		return m
	}
	keepalive := func(r *dns.Msg) *dns.EDNS0_TCP_KEEPALIVE {
		opt := r.IsEdns0()
		require.NotNil(t, opt)
		for _, o := range opt.Option {
			if k, ok := o.(*dns.EDNS0_TCP_KEEPALIVE); ok {
				return k
			}
		}
		return nil
	}
	k := keepalive(ts.exchange(t, ask(), true))
	require.NotNil(t, k, "TCP reply carries edns-tcp-keepalive")
	assert.Equal(t, uint16(30), k.Timeout, "3s in units of 100ms")
	assert.Nil(t, keepalive(ts.exchange(t, ask(), false)), "never over UDP")
}

// RFC 6891 section 7: a reply to an EDNS query carries an OPT record, an
// error reply too; RFC 6840 section 5.8: AD only for authenticated data,
// which this server never has. miekg/dns's header-level rejections echoed
// AD and dropped OPT.
func TestServeErrorRepliesKeepEDNSAndClearAD(t *testing.T) {
	ts := startServer(t, testCluster(), serverOpts{})
	edns := func(m *dns.Msg) *dns.Msg {
		m.SetEdns0(1232, true)
		m.AuthenticatedData = true
		return m
	}
	noQuestion := edns(new(dns.Msg))
	noQuestion.Id = 11
	twoQuestions := edns(query("example.com.", dns.TypeMX))
	twoQuestions.Question = append(twoQuestions.Question, twoQuestions.Question[0])
	update := edns(new(dns.Msg).SetUpdate("example.com."))
	notify := edns(new(dns.Msg).SetNotify("example.com."))
	tooManyAnswers := edns(query("example.com.", dns.TypeMX))
	tooManyAnswers.Answer = rrsOf(t, "example.com. 5 IN A 10.0.0.1", "example.com. 5 IN A 10.0.0.2")
	good := edns(query("n1.example.com.", dns.TypeA))

	tests := []struct {
		name      string
		q         *dns.Msg
		wantRcode int
	}{
		{"QDCOUNT 0", noQuestion, dns.RcodeFormatError},
		{"QDCOUNT 2", twoQuestions, dns.RcodeFormatError},
		{"two answer records", tooManyAnswers, dns.RcodeFormatError},
		{"opcode UPDATE", update, dns.RcodeNotImplemented},
		{"opcode NOTIFY", notify, dns.RcodeNotImplemented},
		{"good query", good, dns.RcodeSuccess},
	}
	for _, tt := range tests {
		for _, tcp := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s tcp=%v", tt.name, tcp), func(t *testing.T) {
				var r *dns.Msg
				if tcp {
					r = ts.exchange(t, tt.q, true)
				} else {
					r = rawUDP(t, ts, pack(t, tt.q), true)
				}
				assert.Equal(t, dns.RcodeToString[tt.wantRcode], dns.RcodeToString[r.Rcode])
				assert.Equal(t, tt.q.Id, r.Id)
				assert.False(t, r.AuthenticatedData, "AD echoed")
				opt := r.IsEdns0()
				require.NotNil(t, opt, "no OPT record in the reply")
				assert.True(t, opt.Do(), "DO bit copied (RFC 3225 section 3)")
			})
		}
	}

	// A query that does not parse cannot be known to carry EDNS, but its
	// FORMERR must not claim AD either.
	bad := append(header(0x1234, 1<<5 /* AD */, 1, 0, 0, 0), 7, 'e', 'x', 'a')
	r := rawUDP(t, ts, bad, true)
	assert.Equal(t, dns.RcodeFormatError, r.Rcode)
	assert.False(t, r.AuthenticatedData)
}

func rrsOf(t *testing.T, lines ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		require.NoError(t, err)
		out = append(out, rr)
	}
	return out
}

// Nodes sharing an address (several on one host, or every node on
// 127.0.0.1 in tests) give one A record, not one per node: an RRset has no
// duplicates (RFC 2181 section 5).
func TestAnswerServiceNamesHaveNoDuplicateAddresses(t *testing.T) {
	src := &fakeSource{domains: []string{"example.com"}, serial: 1}
	for _, name := range []string{"n1", "n2", "n3"} {
		src.members = append(src.members, member(name, "127.0.0.1", "smtp,pop3,imap,dns"))
	}
	src.members = append(src.members, member("n4", "127.0.0.2", "smtp,pop3,imap,dns"))
	s := New(DefaultConfig(), src, nil, nil)
	for _, name := range []string{"pop.example.com.", "imap.example.com.", "smtp.example.com.", "mx.example.com."} {
		for range 4 { // every rotation
			r := s.Answer(query(name, dns.TypeA))
			require.Equal(t, dns.RcodeSuccess, r.Rcode, name)
			var got []string
			for _, rr := range r.Answer {
				got = append(got, rr.(*dns.A).A.String())
			}
			assert.ElementsMatch(t, []string{"127.0.0.1", "127.0.0.2"}, got, name)
		}
	}
	// MX names stay one per node: the names differ.
	r := s.Answer(query("example.com.", dns.TypeMX))
	assert.Len(t, r.Answer, 4)
}
