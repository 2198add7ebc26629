package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailarray/sim/simnet"
)

// discardLog is the *log.Logger net/http wants, without the log package.
var discardLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)

// putResult is what a run of putScenario produced.
type putResult struct {
	digest   string // the net's digest: every delivery and note
	dbDigest string // SHA-256 of the store's keys and values
	stored   int
	failed   int
	events   int64
	virtual  time.Duration
}

// putScenario: `clients` client hosts each PUT perClient bodies over HTTP
// keep-alive to a server host that stores them in bbolt (Batch, group
// commit) and notes each one. It runs inside the caller's bubble, with its
// own driver, and tears down in the documented order.
func putScenario(t testing.TB, seed uint64, cfg simnet.NetConfig, clients, perClient int) putResult {
	n := simnet.NewNet(seed, cfg)
	stop := n.Start()
	t0 := time.Now()

	db, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"), 0o600, &bolt.Options{
		Timeout:        time.Second, // a second Open would otherwise poll forever in fake time
		NoSync:         true,        // disk cost is modeled, not paid
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		t.Fatal(err)
	}
	db.MaxBatchDelay = time.Millisecond
	bucket := []byte("msg")
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(bucket); return err }); err != nil {
		t.Fatal(err)
	}

	l, err := n.Host("10.0.0.100").Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /msg/{id}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body) // never network I/O inside a bbolt transaction
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id := r.PathValue("id")
		if err := db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(id), body) }); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		n.Note("stored %s from %s len=%d", id, r.RemoteAddr, len(body))
		sum := sha256.Sum256(body)
		fmt.Fprintf(w, "%x", sum[:8])
	})
	srv := &http.Server{Handler: mux, ErrorLog: discardLog, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(l)
	}()

	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		failed     int
		transports []*http.Transport
	)
	for g := range clients {
		name := fmt.Sprintf("client%d", g)
		host := n.Host(fmt.Sprintf("10.0.1.%d", g+1))
		rnd := netRand(n, name)
		tr := &http.Transport{DialContext: host.DialContext, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second}
		transports = append(transports, tr)
		cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		wg.Go(func() {
			// Actors started at the same instant race: stagger them by seeded offsets.
			time.Sleep(rnd.Jitter(time.Millisecond, 1))
			for i := range perClient {
				body := strings.Repeat(fmt.Sprintf("%s-%d-%x;", name, i, rnd.Uint32()), 1+rnd.IntN(200))
				id := fmt.Sprintf("%s-%04d", name, i)
				resp, err := cl.Do(mustRequest(http.MethodPut, "http://10.0.0.100:80/msg/"+id, body))
				if err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					n.Note("%s: %v", id, err)
					continue
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				n.Note("%s: %d %s date=%s", id, resp.StatusCode, got, resp.Header.Get("Date"))
			}
		})
	}
	wg.Wait()
	virtual := time.Since(t0)

	// Teardown: idle client conns, then the server, then the driver drains.
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}
	srv.Close()
	<-served
	stop()

	r := putResult{digest: n.Digest(), events: n.Stats().Events, failed: failed, virtual: virtual}
	h := sha256.New()
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			h.Write(k)
			h.Write(v)
			r.stored++
			return nil
		})
	})
	r.dbDigest = hex.EncodeToString(h.Sum(nil))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRequest(method, url, body string) *http.Request {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	return req
}
