package pipeline

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

// mapResolver is a Resolver serving TXT and A records from maps; names in
// temp fail with a temporary error (a resolver that timed out). Keys are
// lower case without the trailing dot.
type mapResolver struct {
	mu   sync.Mutex
	txt  map[string][]string
	a    map[string][]net.IP
	temp map[string]bool
	slow map[string]bool // answered only when ctx ends, with a timeout
	asks []string        // "TXT name", in order
}

var _ Resolver = (*mapResolver)(nil)

func (r *mapResolver) ask(ctx context.Context, kind, name string) (string, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asks = append(r.asks, kind+" "+name)
	if r.slow[name] {
		r.mu.Unlock()
		<-ctx.Done()
		r.mu.Lock()
		return name, &net.DNSError{Err: "test: " + ctx.Err().Error(), Name: name, IsTimeout: true}
	}
	if r.temp[name] {
		return name, &net.DNSError{Err: "test: server timed out", Name: name, IsTimeout: true}
	}
	return name, nil
}

func (r *mapResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	name, err := r.ask(ctx, "TXT", name)
	if err != nil {
		return nil, err
	}
	if txt, ok := r.txt[name]; ok {
		return txt, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r *mapResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	name, err := r.ask(ctx, "A", host)
	if err != nil {
		return nil, err
	}
	var out []net.IPAddr
	for _, ip := range r.a[name] {
		out = append(out, net.IPAddr{IP: ip})
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return out, nil
}

func (r *mapResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	name, err := r.ask(ctx, "MX", name)
	if err != nil {
		return nil, err
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r *mapResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	name, err := r.ask(ctx, "PTR", addr)
	if err != nil {
		return nil, err
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// senderIP is the sending MTA of sender.test; otherIP is not listed in its
// SPF record.
var (
	senderIP = net.IPv4(192, 0, 2, 7)
	otherIP  = net.IPv4(198, 51, 100, 9)
)

// testKey is a DKIM key pair and its DNS record.
type testKey struct {
	signer crypto.Signer
	record string
}

func newEd25519Key(t testing.TB) testKey {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return testKey{signer: priv, record: "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}
}

func newRSAKey(t testing.TB) testKey {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	require.NoError(t, err)
	return testKey{signer: priv, record: "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)}
}

// authWorld is sender.test's DNS as the tests publish it.
func authWorld(key testKey) *mapResolver {
	return &mapResolver{
		txt: map[string][]string{
			"sender.test":                 {"v=spf1 ip4:192.0.2.7 -all", "google-site-verification=abc"},
			"sel._domainkey.sender.test":  {key.record},
			"_dmarc.sender.test":          {"v=DMARC1; p=reject; rua=mailto:dmarc@sender.test"},
			"nodmarc.test":                {"v=spf1 ip4:192.0.2.7 -all"},
			"sel._domainkey.nodmarc.test": {key.record},
		},
		temp: map[string]bool{},
		slow: map[string]bool{},
	}
}

// rawMessage is an author's message from from, with CRLF line ends.
func rawMessage(from, body string) []byte {
	return []byte("From: Alice <" + from + ">\r\nTo: bob@mx.test\r\nSubject: quarterly report\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <1@sender.test>\r\n\r\n" + body)
}

// dkimSign signs raw for domain with key (selector "sel") and returns it
// with the DKIM-Signature field first.
func dkimSign(t testing.TB, raw []byte, domain string, key testKey) []byte {
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(raw), &dkim.SignOptions{
		Domain: domain, Selector: "sel", Signer: key.signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"},
	})
	require.NoError(t, err)
	return out.Bytes()
}

// received is the message as the pipeline gets it: our Received field first.
func received(raw []byte) []byte { return append([]byte(testReceived), raw...) }

func newAuth(t testing.TB, r Resolver, policy string) *Auth {
	cfg := DefaultAuthConfig()
	cfg.AuthservID = "MX.test"
	cfg.Resolver = r
	cfg.DMARCPolicy = policy
	a, err := NewAuth(cfg, nil)
	require.NoError(t, err)
	return a
}

func authMessage(data []byte, envFrom string, ip net.IP) *Message {
	m := testMessage(data)
	m.From = envFrom
	m.Helo = "mail.sender.test"
	m.Remote = &net.TCPAddr{IP: ip, Port: 40000}
	return m
}

// authHeader returns the Authentication-Results field v adds, failing
// the test unless there is exactly one.
func authHeader(t testing.TB, v Verdict) string {
	t.Helper()
	var got []string
	for _, h := range v.Headers {
		if strings.HasPrefix(h, AuthResultsHeader+":") {
			got = append(got, h)
		}
	}
	require.Len(t, got, 1, "headers: %q", v.Headers)
	return got[0]
}

// parsedResults parses field back with authres and returns
// "method=value" per result, after checking the authserv-id.
func parsedResults(t testing.TB, field string) []string {
	t.Helper()
	id, results, err := authres.Parse(strings.TrimPrefix(field, AuthResultsHeader+":"))
	require.NoError(t, err, field)
	assert.Equal(t, "mx.test", id)
	var out []string
	for _, r := range results {
		switch r := r.(type) {
		case *authres.SPFResult:
			out = append(out, "spf="+string(r.Value)+" "+r.From+r.Helo)
		case *authres.DKIMResult:
			out = append(out, "dkim="+string(r.Value)+" "+r.Domain)
		case *authres.DMARCResult:
			out = append(out, "dmarc="+string(r.Value)+" "+r.From)
		case *authres.ARCResult:
			out = append(out, "arc="+string(r.Value))
		default:
			t.Fatalf("unexpected result %#v", r)
		}
	}
	return out
}

func TestAuthResults(t *testing.T) {
	key := newEd25519Key(t)
	signed := dkimSign(t, rawMessage("alice@sender.test", "Figures attached.\r\n"), "sender.test", key)
	tampered := bytes.Replace(signed, []byte("Figures"), []byte("Fugures"), 1)
	unsigned := rawMessage("alice@sender.test", "Figures attached.\r\n")
	noDMARC := dkimSign(t, rawMessage("carol@nodmarc.test", "Hi.\r\n"), "nodmarc.test", key)

	tests := []struct {
		name    string
		data    []byte
		envFrom string
		ip      net.IP
		temp    []string // names the resolver fails on
		want    string   // the whole field
		parsed  []string
	}{
		{"all pass", signed, "alice@sender.test", senderIP, nil,
			"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=alice@sender.test;\r\n\tdkim=pass header.d=sender.test header.i=@sender.test;\r\n\tdmarc=pass header.from=sender.test policy.dmarc=reject",
			[]string{"spf=pass alice@sender.test", "dkim=pass sender.test", "dmarc=pass sender.test"}},
		{"spf fail, dkim pass: dmarc pass", signed, "alice@sender.test", otherIP, nil,
			"Authentication-Results: mx.test;\r\n\tspf=fail smtp.mailfrom=alice@sender.test;\r\n\tdkim=pass header.d=sender.test header.i=@sender.test;\r\n\tdmarc=pass header.from=sender.test policy.dmarc=reject",
			[]string{"spf=fail alice@sender.test", "dkim=pass sender.test", "dmarc=pass sender.test"}},
		{"body tampered: dkim fail, spf pass keeps dmarc pass", tampered, "alice@sender.test", senderIP, nil,
			"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=alice@sender.test;\r\n\tdkim=fail header.d=sender.test header.i=@sender.test;\r\n\tdmarc=pass header.from=sender.test policy.dmarc=reject",
			[]string{"spf=pass alice@sender.test", "dkim=fail sender.test", "dmarc=pass sender.test"}},
		{"tampered from elsewhere: dmarc fail", tampered, "alice@sender.test", otherIP, nil,
			"Authentication-Results: mx.test;\r\n\tspf=fail smtp.mailfrom=alice@sender.test;\r\n\tdkim=fail header.d=sender.test header.i=@sender.test;\r\n\tdmarc=fail header.from=sender.test policy.dmarc=reject",
			[]string{"spf=fail alice@sender.test", "dkim=fail sender.test", "dmarc=fail sender.test"}},
		{"unsigned, no spf record: none, dmarc fail", unsigned, "bounce@elsewhere.test", otherIP, nil,
			"Authentication-Results: mx.test;\r\n\tspf=none smtp.mailfrom=bounce@elsewhere.test;\r\n\tdkim=none;\r\n\tdmarc=fail header.from=sender.test policy.dmarc=reject",
			[]string{"spf=none bounce@elsewhere.test", "dkim=none ", "dmarc=fail sender.test"}},
		{"no dmarc record: none", noDMARC, "carol@nodmarc.test", senderIP, nil,
			"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=carol@nodmarc.test;\r\n\tdkim=pass header.d=nodmarc.test header.i=@nodmarc.test;\r\n\tdmarc=none header.from=nodmarc.test",
			[]string{"spf=pass carol@nodmarc.test", "dkim=pass nodmarc.test", "dmarc=none nodmarc.test"}},
		{"spf lookup fails: temperror", unsigned, "alice@sender.test", senderIP, []string{"sender.test"},
			"Authentication-Results: mx.test;\r\n\tspf=temperror smtp.mailfrom=alice@sender.test;\r\n\tdkim=none;\r\n\tdmarc=fail header.from=sender.test policy.dmarc=reject",
			[]string{"spf=temperror alice@sender.test", "dkim=none ", "dmarc=fail sender.test"}},
		{"key lookup fails: dkim temperror", signed, "alice@sender.test", otherIP, []string{"sel._domainkey.sender.test"},
			"Authentication-Results: mx.test;\r\n\tspf=fail smtp.mailfrom=alice@sender.test;\r\n\tdkim=temperror header.d=sender.test header.i=@sender.test;\r\n\tdmarc=fail header.from=sender.test policy.dmarc=reject",
			[]string{"spf=fail alice@sender.test", "dkim=temperror sender.test", "dmarc=fail sender.test"}},
		{"dmarc lookup fails: temperror", signed, "alice@sender.test", senderIP, []string{"_dmarc.sender.test"},
			"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=alice@sender.test;\r\n\tdkim=pass header.d=sender.test header.i=@sender.test;\r\n\tdmarc=temperror header.from=sender.test",
			[]string{"spf=pass alice@sender.test", "dkim=pass sender.test", "dmarc=temperror sender.test"}},
		{"null sender: spf checks the HELO name", signed, "", senderIP, nil,
			"Authentication-Results: mx.test;\r\n\tspf=none smtp.helo=mail.sender.test;\r\n\tdkim=pass header.d=sender.test header.i=@sender.test;\r\n\tdmarc=pass header.from=sender.test policy.dmarc=reject",
			[]string{"spf=none mail.sender.test", "dkim=pass sender.test", "dmarc=pass sender.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := authWorld(key)
			for _, n := range tt.temp {
				r.temp[n] = true
			}
			a := newAuth(t, r, DMARCMark) // mark: every case is delivered
			v := check(t, a, authMessage(received(tt.data), tt.envFrom, tt.ip))
			assert.Equal(t, Accept, v.Action, v.Reason)
			got := authHeader(t, v)
			assert.Equal(t, tt.want, got)
			assert.Empty(t, checkHeaderField(got), "a valid header field")
			assert.Equal(t, tt.parsed, parsedResults(t, got))
		})
	}
}

func TestAuthDMARCPolicy(t *testing.T) {
	key := newEd25519Key(t)
	signed := dkimSign(t, rawMessage("alice@sender.test", "Figures attached.\r\n"), "sender.test", key)
	forged := rawMessage("alice@sender.test", "Please wire the money.\r\n") // unsigned, from a stranger

	tests := []struct {
		name      string
		policy    string
		published string // _dmarc.sender.test
		data      []byte
		ip        net.IP
		want      Action
	}{
		{"mark only marks", DMARCMark, "v=DMARC1; p=reject", forged, otherIP, Accept},
		{"reject refuses a fail", DMARCReject, "v=DMARC1; p=none", forged, otherIP, Reject},
		{"reject lets a pass through", DMARCReject, "v=DMARC1; p=reject", signed, otherIP, Accept},
		{"quarantine holds a fail", DMARCQuarantine, "v=DMARC1; p=none", forged, otherIP, Quarantine},
		{"honour p=reject", DMARCHonour, "v=DMARC1; p=reject", forged, otherIP, Reject},
		{"honour p=quarantine", DMARCHonour, "v=DMARC1; p=quarantine", forged, otherIP, Quarantine},
		{"honour p=none", DMARCHonour, "v=DMARC1; p=none", forged, otherIP, Accept},
		{"honour p=reject pct=50 quarantines", DMARCHonour, "v=DMARC1; p=reject; pct=50", forged, otherIP, Quarantine},
		{"temperror never acts", DMARCReject, "", forged, otherIP, Accept},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := authWorld(key)
			if tt.published == "" {
				r.temp["_dmarc.sender.test"] = true
			} else {
				r.txt["_dmarc.sender.test"] = []string{tt.published}
			}
			v := check(t, newAuth(t, r, tt.policy), authMessage(received(tt.data), "alice@sender.test", tt.ip))
			assert.Equal(t, tt.want, v.Action, v.Reason)
			switch tt.want {
			case Reject:
				require.NotNil(t, v.Reject)
				assert.Equal(t, 550, v.Reject.Code)
				assert.Equal(t, [3]int{5, 7, 1}, [3]int(v.Reject.EnhancedCode))
				assert.Contains(t, v.Reason, "rejected by dmarc policy")
			default:
				field := authHeader(t, v)
				assert.Contains(t, field, "dmarc=")
			}
		})
	}
}

// TestAuthPipelineQuarantine runs the filter in a pipeline: a quarantined
// message is held with the field added and a forged field removed.
func TestAuthPipelineQuarantine(t *testing.T) {
	key := newEd25519Key(t)
	forged := rawMessage("alice@sender.test", "Please wire the money.\r\n")
	// The sender claims our checks passed, and another ADMD's too.
	forged = append([]byte("Authentication-Results: MX.TEST (our own?); dkim=pass header.d=sender.test\r\nAuthentication-Results: other.example;\r\n spf=pass smtp.mailfrom=alice@sender.test\r\n"), forged...)
	p := New(DefaultConfig(), nil, newAuth(t, authWorld(key), DMARCQuarantine))
	res, err := p.Run(context.Background(), authMessage(received(forged), "alice@sender.test", otherIP))
	require.NoError(t, err)
	assert.True(t, res.Quarantine, res.Trace)
	hdr := headerSection(res.Data)
	assert.Equal(t, 1, strings.Count(hdr, "Authentication-Results: mx.test;"), hdr)
	assert.NotContains(t, hdr, "MX.TEST (our own?)", "forged field claiming our authserv-id removed")
	assert.Contains(t, hdr, "Authentication-Results: other.example;\r\n spf=pass", "another ADMD's field kept")
	assert.True(t, strings.HasPrefix(string(res.Data), testReceived+"Authentication-Results: mx.test;"), "added just after our Received:\n%s", hdr)
	assert.Contains(t, res.Trace[0], "removed 1 Authentication-Results field(s) claiming mx.test")
	assert.Contains(t, res.Trace[0], "quarantined by dmarc policy")
}

// TestAuthSlowDNSDelivers: a resolver that never answers costs the
// filter its time, and the message is delivered with temperror results,
// not refused with 451 (RFC 7489 section 6.6.2: fail open).
func TestAuthSlowDNSDelivers(t *testing.T) {
	key := newEd25519Key(t)
	r := authWorld(key)
	r.slow["sender.test"] = true
	r.slow["_dmarc.sender.test"] = true
	cfg := DefaultConfig()
	cfg.Timeout = 200 * time.Millisecond
	p := New(cfg, nil, newAuth(t, r, DMARCReject))
	res, err := p.Run(context.Background(), authMessage(received(rawMessage("alice@sender.test", "x\r\n")), "alice@sender.test", senderIP))
	require.NoError(t, err)
	require.Nil(t, res.Reject)
	assert.Contains(t, string(res.Data), "Authentication-Results: mx.test;\r\n\tspf=temperror smtp.mailfrom=alice@sender.test;\r\n\tdkim=none;\r\n\tdmarc=temperror header.from=sender.test\r\n")
}

func TestStripAuthResults(t *testing.T) {
	data := []byte(testReceived + "Authentication-Results: mx.test; none\r\nX-A: 1\r\nauthentication-results:\r\n (comment) mx.test;\r\n\tdkim=pass\r\nAuthentication-Results: mx.testing; none\r\n\r\nAuthentication-Results: mx.test; in the body\r\n")
	got, n := stripAuthResults(data, "mx.test")
	assert.Equal(t, 2, n)
	assert.Equal(t, testReceived+"X-A: 1\r\nAuthentication-Results: mx.testing; none\r\n\r\nAuthentication-Results: mx.test; in the body\r\n", string(got))
	same, n := stripAuthResults(got, "mx.test")
	assert.Zero(t, n)
	assert.Equal(t, got, same)
}

func TestAuthConfigValidate(t *testing.T) {
	r := &mapResolver{}
	for _, tt := range []struct {
		name string
		cfg  AuthConfig
		want string
	}{
		{"bad policy", AuthConfig{DMARCPolicy: "drop", AuthservID: "mx.test", Resolver: r}, "dmarc policy"},
		{"no id", AuthConfig{Resolver: r}, "authserv-id"},
		{"bad sealer", AuthConfig{AuthservID: "mx.test", ARCTrustedSealers: []string{"not a domain"}, Resolver: r}, "sealer"},
		{"no resolver", AuthConfig{AuthservID: "mx.test"}, "no resolver"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestAuthRealResolver runs the checks through DNSResolver against a
// miekg/dns server on loopback: TXT strings split at 255 bytes (an RSA
// key), NXDOMAIN as none, SERVFAIL as temperror.
func TestAuthRealResolver(t *testing.T) {
	key := newRSAKey(t)
	world := authWorld(key)
	world.txt["_dmarc.servfail.test"] = nil // the server fails it, below
	srv := startTXTServer(t, world.txt, "_dmarc.servfail.test.")
	// A generous query timeout: a loaded CI machine must not turn an answer
	// into a temperror.
	a := newAuth(t, &DNSResolver{Net: &env.RealNet{}, Server: srv, QueryTimeout: 10 * time.Second}, DMARCMark)

	signed := dkimSign(t, rawMessage("alice@sender.test", "Figures attached.\r\n"), "sender.test", key)
	v := check(t, a, authMessage(received(signed), "alice@sender.test", senderIP))
	assert.Equal(t, []string{"spf=pass alice@sender.test", "dkim=pass sender.test", "dmarc=pass sender.test"}, parsedResults(t, authHeader(t, v)))

	v = check(t, a, authMessage(received(rawMessage("dave@nxdomain.test", "x\r\n")), "dave@nxdomain.test", senderIP))
	assert.Equal(t, []string{"spf=none dave@nxdomain.test", "dkim=none ", "dmarc=none nxdomain.test"}, parsedResults(t, authHeader(t, v)))

	v = check(t, a, authMessage(received(rawMessage("eve@servfail.test", "x\r\n")), "eve@servfail.test", senderIP))
	assert.Equal(t, []string{"spf=none eve@servfail.test", "dkim=none ", "dmarc=temperror servfail.test"}, parsedResults(t, authHeader(t, v)))
}

// startTXTServer serves txt over UDP and TCP on loopback; names in fail
// get SERVFAIL, unknown names NXDOMAIN. It returns the address.
func startTXTServer(t *testing.T, txt map[string][]string, fail ...string) string {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		records, ok := txt[strings.TrimSuffix(name, ".")]
		switch {
		case contains(fail, name):
			m.Rcode = dns.RcodeServerFailure
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeTXT:
			for _, s := range records {
				var parts []string
				for len(s) > 255 {
					parts, s = append(parts, s[:255]), s[255:]
				}
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: append(parts, s)})
			}
		}
		if o := r.IsEdns0(); o != nil {
			m.SetEdns0(o.UDPSize(), false)
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			m.Truncate(dns.MinMsgSize) // an RSA key does not fit: TCP
		}
		w.WriteMsg(m)
	})
	// UDP and TCP on one port: the TCP port may be taken, so try a few.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ln == nil; attempt++ {
		var err error
		pc, err = (&env.RealNet{}).ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		ln, err = (&env.RealNet{}).Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			require.Less(t, attempt, 20, "no port free for both UDP and TCP: %v", err)
		}
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		served := make(chan error, 1)
		go func() { served <- s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() {
			require.NoError(t, s.Shutdown())
			<-served
		})
	}
	return pc.LocalAddr().String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestAuthHostileValues: values the sender chooses (a signature's d= and
// i=, the HELO name) cannot break the field: control characters and
// property delimiters are dropped, so the verdict stays valid (an invalid
// one would fail the message with 451).
func TestAuthHostileValues(t *testing.T) {
	raw := []byte("DKIM-Signature: v=1; a=rsa-sha256; d=ev\x01il\"(x).test; i=@ev\x01il\"(x).test; s=sel; h=from; bh=AA==; b=AA==\r\n" + string(rawMessage("alice@sender.test", "x\r\n")))
	m := authMessage(received(raw), "", senderIP)
	m.Helo = "helo;dkim=pass"
	v := check(t, newAuth(t, authWorld(newEd25519Key(t)), DMARCMark), m)
	require.NoError(t, v.validate())
	// The control character also ends the header parse before From: no
	// single author domain, a DMARC permerror.
	assert.Equal(t, "Authentication-Results: mx.test;\r\n\tspf=none smtp.helo=\"helodkim=pass\";\r\n\tdkim=permerror header.d=evilx.test header.i=@evilx.test;\r\n\tdmarc=permerror", authHeader(t, v))
}
