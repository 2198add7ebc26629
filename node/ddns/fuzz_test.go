package ddns

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// FuzzAnswer feeds arbitrary bytes through the server's path: header
// screening, unpacking, Answer and fitting the reply into a UDP datagram.
// Whatever the input, nothing panics, and a reply is a packable response
// to the same ID that answers only for hosted names.
func FuzzAnswer(f *testing.F) {
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		require.NoError(f, err)
		f.Add(b)
	}
	seed(query("example.com.", dns.TypeMX))
	seed(query("example.com.", dns.TypeMX).SetEdns0(1232, true))
	seed(query("pop.example.com.", dns.TypeA))
	seed(query("N1.example.com.", dns.TypeAAAA))
	seed(query("nope.example.com.", dns.TypeA))
	seed(query("example.net.", dns.TypeA))
	seed(query("example.com.", dns.TypeANY))
	seed(new(dns.Msg).SetUpdate("example.com."))
	seed(query("_dmarc.example.com.", dns.TypeTXT))
	seed(query("web.example.com.", dns.TypeA))
	seed(query("loop1.example.com.", dns.TypeANY))
	seed(query("a.b.x.wild.example.com.", dns.TypeTXT))
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Add(append(header(0x1234, 0, 1, 0, 0, 0), 7, 'e', 'x', 'a'))
	f.Add(header(1, 0, 0, 0, 0, 0))
	f.Add(header(1, 0, 2, 0, 0, 0))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))

	s := New(DefaultConfig(), bigCluster(40), nil, nil)
	z, err := ParseZone("example.com", strings.NewReader(exampleZone), "example.com.zone", "n01")
	require.NoError(f, err)
	s.SetZones(NewZones(z))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < headerBytes {
			return // miekg/dns drops it: no header
		}
		req := new(dns.Msg)
		if err := req.Unpack(data); err != nil {
			return // miekg/dns answers FORMERR itself
		}
		resp := s.Answer(req)
		if req.Response {
			require.Nil(t, resp, "responses are not answered")
			return
		}
		require.NotNil(t, resp)
		require.True(t, resp.Response)
		require.Equal(t, req.Id, resp.Id)
		fit(resp, s.udpSize(req))
		b, err := resp.Pack()
		require.NoError(t, err, "reply must pack: %v", resp)
		require.LessOrEqual(t, len(b), s.udpSize(req))
		if len(resp.Answer) > 0 {
			name := strings.ToLower(resp.Answer[0].Header().Name)
			require.True(t, name == "example.com." || strings.HasSuffix(name, ".example.com."), "answer for a hosted name only: %s", name)
			require.True(t, resp.Authoritative)
		}
	})
}

// FuzzParseZone feeds arbitrary zone files to ParseZone: it never panics,
// and a zone it accepts holds only records inside its domain.
func FuzzParseZone(f *testing.F) {
	f.Add(exampleZone)
	f.Add("@ MX 10 x.\n")
	f.Add("$ORIGIN example.net.\n@ TXT x\n")
	f.Add("www ( A\n 192.0.2.1 )\n")
	f.Add("$TTL\n")
	f.Fuzz(func(t *testing.T, text string) {
		z, err := ParseZone("example.com", strings.NewReader(text), "fuzz.zone", "n1")
		if err != nil {
			require.Contains(t, err.Error(), "fuzz.zone")
			return
		}
		for name, sn := range z.names {
			require.True(t, name == "example.com." || strings.HasSuffix(name, ".example.com."), name)
			require.Len(t, sn.types, len(sn.sets))
		}
	})
}
