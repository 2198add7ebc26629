package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"mailarray/node/bufpool"
	"mailarray/node/fault"
)

// Bucket names. One file per node holds them all.
var (
	bucketCopies  = []byte("copies")
	bucketCatalog = []byte("catalog")
	bucketMeta    = []byte("meta")
)

// Errors returned by Get.
var (
	// ErrNotFound: the node holds no copy with that id.
	ErrNotFound = errors.New("store: copy not found")
	// ErrCorrupt: the copy's bytes do not match its checksum.
	ErrCorrupt = errors.New("store: copy fails its checksum")
)

// Options configures a store. Zero values take the defaults of
// DefaultOptions.
type Options struct {
	// Path of the bbolt file.
	Path string
	// NoSync skips fsync. Only the simulator sets it (its disk cost is
	// modeled); a real node never acknowledges mail that is not synced.
	NoSync bool
	// MaxBatchSize bounds the writes one group commit takes (the writer
	// commits whatever is queued, up to this many, in one transaction).
	MaxBatchSize int
	// OpenTimeout bounds the wait for the file lock (another process, or a
	// node not yet closed, holds it).
	OpenTimeout time.Duration
	// Disk, when set, is called with each group commit's size before the
	// commit and blocks as long as the simulated disk would take to sync
	// it (env.Cost). It runs outside bbolt's locks: waiting under them
	// would freeze the simulator's clock.
	Disk func(bytes int)
	// Fault, when set, is asked at each group commit's sync point
	// (fault.StoreSync) before the commit, on the writer goroutine: an
	// error fails the group; a hook that waits (fault.Delays, a real node's
	// --test-fault) makes every sync that much slower, as a slow disk would,
	// and writes queued meanwhile share the next group.
	Fault fault.Ask
	// Settle, when set (the simulator), is called before a group is taken
	// from the queue, and returns once every goroutine that could still
	// queue a write at this instant has blocked: which writes make the
	// group then does not depend on goroutine scheduling, and a simulated
	// run replays.
	Settle func()
	// Durable, when set (the simulator's durability ledger), is called
	// once per committed group, after its Disk wait returned and bbolt
	// applied it, with the copy ids the group put and deleted: the instant
	// of the call is when they became durable (or gone) on this node. It
	// runs on the writer goroutine and must not block or write.
	Durable func(put, deleted []string)
	// Dropped, when set, is called with the copy ids of each group
	// PowerOff dropped (written by nobody, acknowledged to nobody).
	Dropped func(put []string)
}

// DefaultOptions returns the tuned group-commit settings for path.
func DefaultOptions(path string) Options {
	return Options{
		Path:         path,
		MaxBatchSize: 128, // near the number of concurrent writers of a busy node
		OpenTimeout:  5 * time.Second,
	}
}

// Validate fills defaults and rejects nonsense.
func (o *Options) Validate() error {
	d := DefaultOptions(o.Path)
	if o.Path == "" {
		return errors.New("store: path is empty")
	}
	if o.MaxBatchSize <= 0 {
		o.MaxBatchSize = d.MaxBatchSize
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = d.OpenTimeout
	}
	return nil
}

// Store is one node's durable state. Safe for concurrent use.
type Store struct {
	db   *bolt.DB
	opts Options

	reqs     chan *writeReq
	stop     chan struct{}
	stopped  chan struct{}
	closeErr error

	// cutMu makes PowerOff atomic with respect to a commit: a group is
	// either wholly in the file before the cut or never. Held only for
	// the commit itself (bbolt's own locks, no waiting on the disk model).
	cutMu sync.Mutex
	cut   bool // PowerOff was called: nothing more reaches the file

	// Group commit's figures (GroupStats): transactions committed, and the
	// writes they carried.
	commits, writes atomic.Uint64
}

// writeReq is one Write waiting for the group commit.
type writeReq struct {
	b      *Batch
	framed [][]byte
	size   int // bytes written, for the simulated disk (Options.Disk)
	done   chan error
}

// Open opens or creates the store file.
func Open(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{
		Timeout: opts.OpenTimeout,
		NoSync:  opts.NoSync,
		// The hashmap freelist is faster; not syncing it trades a freelist
		// rebuild at open for less I/O on every commit. Data stays durable.
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", opts.Path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCopies, bucketCatalog, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", opts.Path, err)
	}
	s := &Store{db: db, opts: opts, reqs: make(chan *writeReq, opts.MaxBatchSize), stop: make(chan struct{}), stopped: make(chan struct{})}
	go s.writer()
	return s, nil
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("store: closed")

// Close finishes the writes already queued and closes the file.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return s.closeErr
	default:
	}
	close(s.stop)
	<-s.stopped
	s.closeErr = s.db.Close()
	return s.closeErr
}

// Path is the store's file.
func (s *Store) Path() string { return s.opts.Path }

// Copy is a message copy to write.
type Copy struct {
	ID   string
	Data []byte
	// Sum, when not zero, is Checksum(Data), already computed (and
	// verified) by the caller, so the write does not hash Data again. A
	// wrong Sum is caught by Get as ErrCorrupt, never returned as data.
	Sum [32]byte
}

// Record is a catalog entry to write, already encoded by package catalog.
// When Merge is set, the value written is Merge(current value or nil),
// computed inside the transaction, and nothing is written if it returns
// nil: concurrent writers of one record then cannot undo each other's
// update. Merge must be pure and cheap (it runs under bbolt's write lock)
// and idempotent (bbolt may run a batch function twice).
type Record struct {
	ID    string
	Value []byte
	Merge func(old []byte) []byte
}

// Batch is one atomic, durable write: copies and catalog records put or
// deleted together. The same Batch applied twice has the same effect
// (bbolt may re-run a batch function alone after a failure).
type Batch struct {
	PutCopies     []Copy
	DeleteCopies  []string
	PutRecords    []Record
	DeleteRecords []string
}

// Write commits b durably (one fsync shared with concurrent writers).
//
// Group commit: one writer goroutine takes every write queued while the
// previous transaction was syncing and commits them together. Batches
// thus grow with the disk's sync latency instead of being cut by a timer;
// bbolt's own Batch, whose batches close after its MaxBatchDelay even
// while the previous commit still holds the lock, convoyed into commits of
// 2-3 writes when fsync took longer than the delay (and with its defaults
// was 3.5-9x slower at 20-60 writers: docs/design.md).
func (s *Store) Write(b *Batch) error { return s.WriteContext(context.Background(), b) }

// WriteContext is Write that stops waiting when ctx is done and then
// returns an error wrapping ctx.Err(). The batch may still be committed
// later (a stalled disk that recovers): a caller bounded by a deadline
// must treat the write as failed, never as absent, and make the records it
// wrote harmless (the delivery path commits its entries Deleted). Group
// commit is unchanged: the request stays in the writer's queue.
func (s *Store) WriteContext(ctx context.Context, b *Batch) error {
	if len(b.PutCopies)+len(b.DeleteCopies)+len(b.PutRecords)+len(b.DeleteRecords) == 0 {
		return nil
	}
	// Checksums and framing are computed outside the transaction so the
	// write lock is held as briefly as possible.
	framed := make([][]byte, len(b.PutCopies))
	size := 0
	for i, c := range b.PutCopies {
		framed[i] = frame(c.Data, c.Sum)
		size += len(framed[i])
	}
	for _, r := range b.PutRecords {
		size += len(r.Value)
	}
	req := &writeReq{b: b, framed: framed, size: size, done: make(chan error, 1)}
	select {
	case s.reqs <- req:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("store: write not queued: %w", ctx.Err())
	}
	var err error
	select {
	case <-ctx.Done():
		// The writer still holds framed: it is not returned to the pool.
		return fmt.Errorf("store: write abandoned: %w", ctx.Err())
	case err = <-req.done:
		// bbolt copied the values into its pages during the commit and
		// keeps no reference to them once Update returns.
		for _, f := range framed {
			bufpool.Put(f)
		}
	case <-s.stopped:
		// The writer drained the queue and exited; a request that slipped
		// in after its drain was never written.
		select {
		case err = <-req.done:
		default:
			return ErrClosed
		}
	}
	if err != nil {
		return fmt.Errorf("store: write: %w", err)
	}
	return nil
}

// writer commits queued writes in groups until Close.
func (s *Store) writer() {
	defer close(s.stopped)
	group := make([]*writeReq, 0, s.opts.MaxBatchSize)
	for {
		group = group[:0]
		select {
		case r := <-s.reqs:
			group = append(group, r)
		case <-s.stop:
			// Writers racing with Close either queued (served here) or saw
			// stop (ErrClosed).
			for {
				select {
				case r := <-s.reqs:
					r.done <- s.commitSynced([]*writeReq{r})
				default:
					return
				}
			}
		}
		if s.opts.Settle != nil {
			s.opts.Settle()
		}
	fill:
		for len(group) < s.opts.MaxBatchSize {
			select {
			case r := <-s.reqs:
				group = append(group, r)
			default:
				break fill
			}
		}
		if s.opts.Disk != nil && !s.poweredOff() {
			// The simulated disk syncs the whole group once, as the real
			// one does: writes queued meanwhile form the next group.
			size := 0
			for _, r := range group {
				size += r.size
			}
			s.opts.Disk(size)
		}
		err := s.commitSynced(group)
		if err != nil && len(group) > 1 && !errors.Is(err, ErrPowerLost) {
			// One bad write must not fail the others: retry alone.
			for _, r := range group {
				err := s.commitSynced([]*writeReq{r})
				s.counted(1, err)
				r.done <- err
			}
			continue
		}
		s.counted(len(group), err)
		for _, r := range group {
			r.done <- err
			if s.opts.Settle != nil {
				// One writer resumes per instant: writers resumed together
				// would run in an order the simulator cannot replay.
				s.opts.Settle()
			}
		}
	}
}

// counted adds a committed group of n writes to GroupStats.
func (s *Store) counted(n int, err error) {
	if err == nil {
		s.commits.Add(1)
		s.writes.Add(uint64(n))
	}
}

// GroupStats is what group commit has done since Open: Commits
// transactions (each one fsync) carrying Writes calls to Write. Writes per
// commit is the group size; commits per message, with the messages
// accepted, is the fsyncs a message costs the node.
type GroupStats struct {
	Commits, Writes uint64
}

// GroupStats returns the store's group commit figures.
func (s *Store) GroupStats() GroupStats {
	return GroupStats{Commits: s.commits.Load(), Writes: s.writes.Load()}
}

func (s *Store) commit(group []*writeReq) (err error) {
	// The disk refuses the group's sync (EIO); nothing of the group is
	// written. The node's fault hook (Options.Fault) is asked first, then
	// the failpoint, whose where is the store's path (it names the node's
	// data directory).
	if err := fault.Inject(s.opts.Fault, fault.StoreSync, s.opts.Path); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		cp, cat := tx.Bucket(bucketCopies), tx.Bucket(bucketCatalog)
		// Keys begin with the acceptance time (node.newTxID), so puts
		// land at the right edge of both trees: full pages split less
		// and hold more, where bbolt's default (half full) would leave
		// every page half empty and touch twice as many per commit.
		cp.FillPercent, cat.FillPercent = appendFill, appendFill
		for _, req := range group {
			b := req.b
			for i, c := range b.PutCopies {
				if err := cp.Put([]byte(c.ID), req.framed[i]); err != nil {
					return err
				}
			}
			for _, id := range b.DeleteCopies {
				if err := cp.Delete([]byte(id)); err != nil {
					return err
				}
			}
			for _, r := range b.PutRecords {
				v := r.Value
				if r.Merge != nil {
					if v = r.Merge(cat.Get([]byte(r.ID))); v == nil {
						continue
					}
				}
				if err := cat.Put([]byte(r.ID), v); err != nil {
					return err
				}
			}
			for _, id := range b.DeleteRecords {
				if err := cat.Delete([]byte(id)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// appendFill is the fill percent of the append-mostly buckets.
const appendFill = 0.9

// frame prefixes data with its SHA-256 (sum, computed here if zero), in a
// recycled buffer (package bufpool) that Write returns once committed.
func frame(data []byte, sum [32]byte) []byte {
	if sum == ([32]byte{}) {
		sum = sha256.Sum256(data)
	}
	out := bufpool.Get(len(sum) + len(data))
	out = append(out, sum[:]...)
	return append(out, data...)
}

// Checksum is the checksum every copy of data carries.
func Checksum(data []byte) [32]byte { return sha256.Sum256(data) }

// Get returns the copy's bytes after verifying its checksum. The result is
// the caller's (copied out of the memory map).
func (s *Store) Get(id string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		data, _, err := checkedCopy(tx, id)
		out = bytes.Clone(data)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		return nil, fmt.Errorf("store: get %s: %w", id, err)
	}
	return out, nil
}

// Copies calls fn with the copy of each of ids in turn, in one read
// transaction: its bytes, verified against the checksum stored with them
// (valid only during fn: they are the memory map's; fn copies what it
// keeps), and that checksum; or ErrNotFound or ErrCorrupt. One
// transaction and one hash per copy is what a batch read (FETCH, POP3
// read-ahead) costs, against Get's transaction and
// copy per message. fn returns false to read no further. fn must not
// write to the store. A non-nil error is the store's, not a copy's.
func (s *Store) Copies(ids []string, fn func(i int, data []byte, sum [32]byte, err error) bool) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		for i, id := range ids {
			data, sum, err := checkedCopy(tx, id)
			if !fn(i, data, sum, err) {
				break
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: read %d copies: %w", len(ids), err)
	}
	return nil
}

// UncheckedCopies is Copies without the hash: each copy's bytes as stored
// (valid only during fn), or ErrNotFound, or ErrCorrupt for a value too
// short to hold a checksum. For a reader that verifies every copy against
// its catalog entry itself (a peer's copy batch: the node reading it
// hashes each copy it gets, node/readbatch.go), so that a copy read from
// another node is hashed once, not on both nodes.
func (s *Store) UncheckedCopies(ids []string, fn func(i int, data []byte, err error) bool) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCopies)
		for i, id := range ids {
			var err error
			v := b.Get([]byte(id))
			switch {
			case v == nil:
				err = ErrNotFound
			case len(v) < sha256.Size:
				err = fmt.Errorf("%w: %s is %d bytes", ErrCorrupt, id, len(v))
			default:
				v = v[sha256.Size:]
			}
			if err != nil {
				v = nil
			}
			if !fn(i, v, err) {
				break
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: read %d copies: %w", len(ids), err)
	}
	return nil
}

// Verify reports whether the node holds a copy of id whose bytes match
// both its own checksum and sum (Get without copying the bytes out).
func (s *Store) Verify(id string, sum [32]byte) error {
	return s.db.View(func(tx *bolt.Tx) error {
		_, got, err := checkedCopy(tx, id)
		if err == nil && got != sum {
			err = fmt.Errorf("%w: %s is not the message expected", ErrCorrupt, id)
		}
		return err
	})
}

// checkedCopy returns a copy's bytes (valid only in tx) and their checksum,
// verified against the one stored with them.
func checkedCopy(tx *bolt.Tx, id string) ([]byte, [32]byte, error) {
	v := tx.Bucket(bucketCopies).Get([]byte(id))
	if v == nil {
		return nil, [32]byte{}, ErrNotFound
	}
	if len(v) < sha256.Size {
		return nil, [32]byte{}, fmt.Errorf("%w: %s is %d bytes", ErrCorrupt, id, len(v))
	}
	sum := sha256.Sum256(v[sha256.Size:])
	if !bytes.Equal(sum[:], v[:sha256.Size]) {
		return nil, sum, fmt.Errorf("%w: %s", ErrCorrupt, id)
	}
	return v[sha256.Size:], sum, nil
}

// Has reports whether the node holds a copy of id (without verifying it).
func (s *Store) Has(id string) bool {
	var ok bool
	s.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketCopies).Get([]byte(id)) != nil
		return nil
	})
	return ok
}

// HasEach reports, in one read transaction, whether the node holds a copy
// of each of ids (without verifying them): has[i] is ids[i]'s. A caller
// checking a batch (the verifier, after each applied batch of entries)
// pays one transaction instead of one per id.
func (s *Store) HasEach(ids []string) []bool {
	has := make([]bool, len(ids))
	if len(ids) == 0 {
		return has
	}
	s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCopies)
		for i, id := range ids {
			has[i] = b.Get([]byte(id)) != nil
		}
		return nil
	})
	return has
}

// CopyIDs calls fn for every copy id held, in order, until fn returns false.
// fn must not write to the store.
func (s *Store) CopyIDs(fn func(id string) bool) error {
	return s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketCopies).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if !fn(string(k)) {
				return nil
			}
		}
		return nil
	})
}

// Records calls fn for every catalog record, in id order. The value is only
// valid during the call.
func (s *Store) Records(fn func(id string, value []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCatalog).ForEach(func(k, v []byte) error { return fn(string(k), v) })
	})
}

// Stats summarises what the node holds.
type Stats struct {
	Copies      int
	CopyBytes   int64
	Records     int
	FileBytes   int64
	Transaction int // last committed transaction id
}

// Stats counts copies and records (a full scan; for status, not hot paths).
func (s *Store) Stats() (Stats, error) {
	var st Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		st.Transaction = tx.ID()
		st.FileBytes = tx.Size()
		tx.Bucket(bucketCopies).ForEach(func(_, v []byte) error {
			st.Copies++
			st.CopyBytes += int64(len(v) - sha256.Size)
			return nil
		})
		st.Records = tx.Bucket(bucketCatalog).Stats().KeyN
		return nil
	})
	return st, err
}

// GetMeta and PutMeta keep small node facts (identity, clocks).
func (s *Store) GetMeta(key string) []byte {
	var out []byte
	s.db.View(func(tx *bolt.Tx) error {
		out = bytes.Clone(tx.Bucket(bucketMeta).Get([]byte(key)))
		return nil
	})
	return out
}

func (s *Store) PutMeta(key string, value []byte) error {
	s.cutMu.Lock()
	defer s.cutMu.Unlock()
	if s.cut {
		return ErrPowerLost
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte(key), value) })
}

// Corrupt overwrites one byte of a held copy, for tests and chaos suites
// that check read repair. It is not reachable from any protocol.
func (s *Store) Corrupt(id string) error {
	s.cutMu.Lock()
	defer s.cutMu.Unlock()
	if s.cut {
		return ErrPowerLost
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCopies)
		v := b.Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		c := bytes.Clone(v)
		c[len(c)-1] ^= 0xff
		return b.Put([]byte(id), c)
	})
}
