package sim

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emersion/go-smtp"
	bolt "go.etcd.io/bbolt"

	"mailarray/sim/simnet"
)

// mirrorNode is node A of the prototype's path: a go-smtp server whose DATA
// mirrors the message to node B over HTTP, then stores it and says 250.
type mirrorNode struct {
	n  *simnet.Net
	db *bolt.DB
	cl *http.Client
}

type mirrorSession struct{ a *mirrorNode }

func (a *mirrorNode) NewSession(*smtp.Conn) (smtp.Session, error) { return mirrorSession{a}, nil }
func (mirrorSession) Mail(string, *smtp.MailOptions) error        { return nil }
func (mirrorSession) Rcpt(string, *smtp.RcptOptions) error        { return nil }
func (mirrorSession) Reset()                                      {}
func (mirrorSession) Logout() error                               { return nil }
func (s mirrorSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	id := fmt.Sprintf("%x", sha256.Sum256(b))[:16]
	resp, err := s.a.cl.Do(mustRequest(http.MethodPut, "http://10.0.0.2:80/msg/"+id, string(b)))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New("mirror failed")
	}
	if err := s.a.db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("m")).Put([]byte(id), b) }); err != nil {
		return err
	}
	s.a.n.Note("A stored %s", id)
	return nil
}

func openStore(t testing.TB, path string) *bolt.DB {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("m")); return err }); err != nil {
		t.Fatal(err)
	}
	return db
}

// mirrorScenario is the prototype's end-to-end path: SMTP client -> node A
// (go-smtp) -> HTTP PUT -> node B (bbolt) -> 200 -> A's bbolt -> 250, one
// SMTP connection per message.
func mirrorScenario(t testing.TB, seed uint64, nmsg int) (digest string, events int64) {
	n := simnet.NewNet(seed, simnet.DefaultNetConfig())
	stop := n.Start()
	dir := t.TempDir()
	dbA, dbB := openStore(t, filepath.Join(dir, "a.db")), openStore(t, filepath.Join(dir, "b.db"))

	mux := http.NewServeMux()
	mux.HandleFunc("PUT /msg/{id}", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err == nil {
			err = dbB.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("m")).Put([]byte(r.PathValue("id")), b) })
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "stored\n")
	})
	hs := &http.Server{Handler: mux, ErrorLog: discardLog, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	lb, _ := n.Host("10.0.0.2").Listen("tcp", ":80")
	var wg sync.WaitGroup
	wg.Go(func() { hs.Serve(lb) })

	tr := &http.Transport{DialContext: n.Host("10.0.0.1").DialContext, MaxIdleConnsPerHost: 32, IdleConnTimeout: 90 * time.Second}
	a := &mirrorNode{n: n, db: dbA, cl: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	ss := smtp.NewServer(a)
	ss.Domain = "a.sim"
	ss.ReadTimeout, ss.WriteTimeout = 30*time.Second, 30*time.Second
	ss.ErrorLog = discardSMTPLog{}
	la, _ := n.Host("10.0.0.1").Listen("tcp", ":25")
	wg.Go(func() { ss.Serve(la) })

	client := n.Host("10.0.1.1")
	body := strings.Repeat(strings.Repeat("abcdefghij", 7)+"\r\n", 56)
	for i := range nmsg {
		err := func() error {
			conn, err := client.DialContext(context.Background(), "tcp", "10.0.0.1:25")
			if err != nil {
				return err
			}
			c := smtp.NewClient(conn)
			defer c.Close()
			if err := c.Hello("c.sim"); err != nil {
				return err
			}
			if err := c.Mail("c@sim", nil); err != nil {
				return err
			}
			if err := c.Rcpt("rcpt@b.sim", nil); err != nil {
				return err
			}
			w, err := c.Data()
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "Subject: %d\r\n\r\n%s", i, body)
			if err := w.Close(); err != nil {
				return err
			}
			return c.Quit()
		}()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	ss.Close()
	tr.CloseIdleConnections()
	hs.Close()
	wg.Wait()
	stop()
	var stored int
	dbB.View(func(tx *bolt.Tx) error { stored = tx.Bucket([]byte("m")).Stats().KeyN; return nil })
	if stored != nmsg {
		t.Fatalf("B stored %d of %d", stored, nmsg)
	}
	dbA.Close()
	dbB.Close()
	return n.Digest(), n.Stats().Events
}

func TestSMTPMirrorDeterminism(t *testing.T) {
	var digests []string
	for range 3 {
		synctest.Test(t, func(t *testing.T) {
			d, _ := mirrorScenario(t, 9, 50)
			digests = append(digests, d)
		})
	}
	if digests[0] != digests[1] || digests[1] != digests[2] {
		t.Fatalf("digests differ: %v", digests)
	}
}

// BenchmarkSMTPMirrorSim is the prototype's figure (2,300-2,900 msgs per
// wall second there): messages through SMTP -> HTTP mirror -> bbolt.
func BenchmarkSMTPMirrorSim(b *testing.B) {
	var (
		events int64
		wall   time.Duration
	)
	ok := testing.RunTests(func(string, string) (bool, error) { return true, nil }, []testing.InternalTest{{
		Name: "SMTPMirrorSim",
		F: func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w0 := WallNow()
				_, events = mirrorScenario(t, 1, b.N)
				wall = WallSince(w0)
			})
		},
	}})
	if !ok {
		b.Fatal("scenario failed")
	}
	b.ReportMetric(float64(b.N)/wall.Seconds(), "msgs/wall-s")
	b.ReportMetric(float64(events)/float64(b.N), "events/msg")
}

// discardSMTPLog silences go-smtp's error log.
type discardSMTPLog struct{}

func (discardSMTPLog) Printf(string, ...any) {}
func (discardSMTPLog) Println(...any)        {}
