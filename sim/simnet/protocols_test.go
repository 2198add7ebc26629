package simnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// discardLog is the *log.Logger net/http wants, without the log package.
var discardLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)

// TestHTTPKeepAlive runs net/http over the simulator: keep-alive reuses
// one connection, concurrent clients get a few, and the teardown order
// leaves no goroutine behind (synctest.Test fails otherwise).
func TestHTTPKeepAlive(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		l, err := n.Host(srvIP).Listen("tcp", ":80")
		require.NoError(t, err)
		var srvConns, dials atomic.Int64
		mux := http.NewServeMux()
		mux.HandleFunc("PUT /msg/{id}", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %x", r.PathValue("id"), sha256.Sum256(b))
		})
		srv := &http.Server{Handler: mux, ErrorLog: discardLog, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
			ConnState: func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					srvConns.Add(1)
				}
			}}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()

		host := n.Host(cliIP)
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return host.DialContext(ctx, network, addr)
			},
			MaxIdleConnsPerHost: 16,
		}
		cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		body := bytes.Repeat([]byte("x"), 4096)
		put := func(id string) error {
			resp, err := cl.Do(mustRequest(http.MethodPut, "http://"+srvIP+":80/msg/"+id, string(body)))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if want := fmt.Sprintf("%s %x", id, sha256.Sum256(body)); resp.StatusCode != http.StatusOK || string(got) != want {
				return fmt.Errorf("%s: got %d %q, want 200 %q", id, resp.StatusCode, got, want)
			}
			return nil
		}

		for i := range 50 {
			require.NoError(t, put(fmt.Sprintf("s%d", i)))
		}
		assert.Equal(t, int64(1), dials.Load(), "keep-alive: one connection for sequential requests")
		assert.Equal(t, int64(1), srvConns.Load())

		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for g := range 4 {
			wg.Go(func() {
				time.Sleep(time.Duration(g) * time.Microsecond)
				for i := range 25 {
					if err := put(fmt.Sprintf("c%d-%d", g, i)); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		assert.LessOrEqual(t, dials.Load(), int64(5))

		tr.CloseIdleConnections()
		require.NoError(t, srv.Close())
		assert.ErrorIs(t, <-served, http.ErrServerClosed)
	})
}

type smtpBackend struct {
	mu   sync.Mutex
	msgs map[string]string // Message-ID header line -> body
}

func (b *smtpBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{b: b}, nil }

type smtpSession struct {
	b    *smtpBackend
	rcpt []string
}

func (s *smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpt = append(s.rcpt, to)
	return nil
}
func (s *smtpSession) Reset()        { s.rcpt = nil }
func (s *smtpSession) Logout() error { return nil }
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	id, _, _ := bytes.Cut(b, []byte("\r\n"))
	s.b.mu.Lock()
	s.b.msgs[string(id)] = string(b)
	s.b.mu.Unlock()
	return nil
}

type discardSMTPLog struct{}

func (discardSMTPLog) Printf(string, ...any) {}
func (discardSMTPLog) Println(...any)        {}

func smtpMessage(conn, i int) string {
	return fmt.Sprintf("Message-ID: <%d.%d@sim>\r\nFrom: a@sim\r\nTo: b@sim\r\nSubject: %d/%d\r\n\r\n%s\r\n",
		conn, i, conn, i, bytes.Repeat([]byte("body line\r\n"), 100))
}

// TestSMTPOverSim delivers 100 messages from a go-smtp client to a go-smtp
// server: 10 connections of 10 transactions each.
func TestSMTPOverSim(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		be := &smtpBackend{msgs: map[string]string{}}
		s := smtp.NewServer(be)
		s.Domain = "mx.sim"
		s.ReadTimeout, s.WriteTimeout = 30*time.Second, 30*time.Second
		s.ErrorLog = discardSMTPLog{}
		l, err := n.Host(srvIP).Listen("tcp", ":25")
		require.NoError(t, err)
		served := make(chan error, 1)
		go func() { served <- s.Serve(l) }()

		host := n.Host(cliIP)
		for conn := range 10 {
			nc, err := host.DialContext(context.Background(), "tcp", srvIP+":25")
			require.NoError(t, err)
			c := smtp.NewClient(nc)
			require.NoError(t, c.Hello("client.sim"))
			for i := range 10 {
				require.NoError(t, c.Mail("a@sim", nil))
				require.NoError(t, c.Rcpt("b@sim", nil))
				w, err := c.Data()
				require.NoError(t, err)
				_, err = io.WriteString(w, smtpMessage(conn, i))
				require.NoError(t, err)
				require.NoError(t, w.Close(), "250 after DATA")
			}
			require.NoError(t, c.Quit())
		}

		be.mu.Lock()
		require.Len(t, be.msgs, 100)
		for conn := range 10 {
			for i := range 10 {
				want := smtpMessage(conn, i)
				id, _, _ := bytes.Cut([]byte(want), []byte("\r\n"))
				assert.Equal(t, want, be.msgs[string(id)])
			}
		}
		be.mu.Unlock()
		require.NoError(t, s.Close())
		assert.NoError(t, <-served, "go-smtp's Serve returns nil after Close")
	})
}

// TestDNSOverSim serves DNS from miekg/dns on a simulated PacketConn and
// queries it with dns.Client over a conn from Host.DialContext.
func TestDNSOverSim(t *testing.T) {
	simTest(t, nil, func(t *testing.T, n *Net) {
		pc, err := n.Host(srvIP).ListenPacket("udp", ":53")
		require.NoError(t, err)
		mux := dns.NewServeMux()
		mux.HandleFunc("sim.", func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Authoritative = true
			if q := r.Question[0]; q.Qtype == dns.TypeA && q.Name == "mx1.sim." {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
					A:   net.ParseIP(srvIP),
				})
			} else {
				m.Rcode = dns.RcodeNameError // RFC 1035 §4.1.1: name does not exist
			}
			w.WriteMsg(m)
		})
		started := make(chan struct{})
		srv := &dns.Server{PacketConn: pc, Handler: mux, NotifyStartedFunc: func() { close(started) }}
		served := make(chan error, 1)
		go func() { served <- srv.ActivateAndServe() }()
		<-started
		// The server sets 2 s read deadlines: it must keep serving after they expire.
		time.Sleep(5 * time.Second)

		conn, err := n.Host(cliIP).DialContext(context.Background(), "udp", srvIP+":53")
		require.NoError(t, err)
		cl := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		ask := func(name string) (*dns.Msg, time.Duration) {
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeA)
			r, rtt, err := cl.ExchangeWithConnContext(context.Background(), m, &dns.Conn{Conn: conn})
			require.NoError(t, err)
			return r, rtt
		}
		r, rtt := ask("mx1.sim.")
		require.Len(t, r.Answer, 1)
		assert.Equal(t, srvIP, r.Answer[0].(*dns.A).A.String())
		assert.Equal(t, 2*lat, rtt)
		r, _ = ask("nope.sim.")
		assert.Equal(t, dns.RcodeNameError, r.Rcode)

		// A query to a partitioned server times out on the client's deadline.
		n.Partition([]string{cliIP}, []string{srvIP})
		m := new(dns.Msg)
		m.SetQuestion("mx1.sim.", dns.TypeA)
		_, _, err = cl.ExchangeWithConnContext(context.Background(), m, &dns.Conn{Conn: conn})
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "got %v", err)
		n.Heal()

		conn.Close()
		require.NoError(t, srv.Shutdown())
		require.NoError(t, <-served)
	})
}

func mustRequest(method, url, body string) *http.Request {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	return req
}
