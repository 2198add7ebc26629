package sim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"mailarray/node/store"
)

// Disk faults (stall_disk, power_loss, backup, restart with disk: backup
// or empty) and the durability ledger the chaos checker reads.
//
// The ledger knows, for every message copy and node, the virtual instant
// the copy became durable there and the instant it stopped being: the
// store reports each committed group once its modeled sync returned
// (store.Options.Durable, through nodeCost), which is when the copy
// would survive a power loss. A copy stops being durable when the node
// deletes it, when the node restarts from a backup that lacks it, or from
// an empty disk. A plain crash loses nothing durable, and a power loss
// loses exactly what was not synced (the store drops it: store.PowerOff),
// so neither ends a life.

// Causes of the end of a copy's life in the ledger.
const (
	LostDeleted = "deleted"    // the node deleted it (reader, rebuild move, cleanup)
	LostRestore = "restore"    // the node restarted from a backup without it
	LostEmpty   = "empty-disk" // the node restarted with an empty disk
)

// CopyLife is one interval during which a node held a durable copy.
// Instants are virtual, since the load started.
type CopyLife struct {
	Node    string
	Durable time.Duration // when its sync returned (or the restore put it back)
	Gone    bool          // the life ended before the run did
	Lost    time.Duration // when, if Gone
	Cause   string        // why, if Gone (Lost* constants)
}

// DurableAt reports whether the copy was durable at instant at.
func (l CopyLife) DurableAt(at time.Duration) bool {
	return l.Durable <= at && (!l.Gone || l.Lost > at)
}

// ledger is the run's durability ledger, shared by the nodes' cost models
// (their stores report to it from their writer goroutines).
type ledger struct {
	mu      sync.Mutex
	lives   map[string][]life // by copy id, in the order they began
	dropped map[string]int    // by node: copies a power loss dropped
}

type life struct {
	node          string
	durable, lost time.Time
	gone          bool
	cause         string
}

func newLedger() *ledger {
	return &ledger{lives: map[string][]life{}, dropped: map[string]int{}}
}

// openLocked is the index of id's open life on node, or -1.
func (lg *ledger) openLocked(id, node string) int {
	ls := lg.lives[id]
	for i := len(ls) - 1; i >= 0; i-- {
		if ls[i].node == node && !ls[i].gone {
			return i
		}
	}
	return -1
}

func (lg *ledger) begin(node string, ids []string, now time.Time) {
	for _, id := range ids {
		if lg.openLocked(id, node) < 0 {
			lg.lives[id] = append(lg.lives[id], life{node: node, durable: now})
		}
	}
}

func (lg *ledger) end(node string, ids []string, now time.Time, cause string) {
	for _, id := range ids {
		if i := lg.openLocked(id, node); i >= 0 {
			l := &lg.lives[id][i]
			l.gone, l.lost, l.cause = true, now, cause
		}
	}
}

// held lists the copies node holds durably, by the ledger, sorted.
func (lg *ledger) held(node string) []string {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	var out []string
	for id := range lg.lives {
		if lg.openLocked(id, node) >= 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// replaced records node's disk replaced at now by one holding exactly
// keep: what it held beyond keep is lost for cause, what keep adds is
// durable again.
func (lg *ledger) replaced(node string, keep map[string]bool, now time.Time, cause string) {
	var lost, back []string
	for _, id := range lg.held(node) {
		if !keep[id] {
			lost = append(lost, id)
		}
	}
	for id := range keep {
		back = append(back, id)
	}
	slices.Sort(back)
	lg.mu.Lock()
	defer lg.mu.Unlock()
	lg.end(node, lost, now, cause)
	lg.begin(node, back, now)
}

// export is the ledger in the report's terms: instants since origin.
func (lg *ledger) export(origin time.Time) (map[string][]CopyLife, map[string]int) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	out := make(map[string][]CopyLife, len(lg.lives))
	for id, ls := range lg.lives {
		cl := make([]CopyLife, len(ls))
		for i, l := range ls {
			cl[i] = CopyLife{Node: l.node, Durable: l.durable.Sub(origin), Gone: l.gone, Cause: l.cause}
			if l.gone {
				cl[i].Lost = l.lost.Sub(origin)
			}
		}
		out[id] = cl
	}
	dropped := make(map[string]int, len(lg.dropped))
	for k, v := range lg.dropped {
		dropped[k] = v
	}
	return out, dropped
}

// Durable is called by the node's store (store.Options.Durable) when a
// group is synced and committed.
func (c *nodeCost) Durable(put, deleted []string) {
	now := time.Now()
	c.ledger.mu.Lock()
	defer c.ledger.mu.Unlock()
	c.ledger.begin(c.node, put, now)
	c.ledger.end(c.node, deleted, now, LostDeleted)
}

// Dropped is called by the node's store (store.Options.Dropped) for the
// copies of a group a power loss cut off.
func (c *nodeCost) Dropped(put []string) {
	c.ledger.mu.Lock()
	defer c.ledger.mu.Unlock()
	c.ledger.dropped[c.node] += len(put)
}

// stall freezes the disk for d from now: no sync completes before then
// (one in flight completes at the stall's end at the earliest; writes
// arriving meanwhile queue and share the sync after it). A later stall
// replaces the end.
func (c *nodeCost) stall(d time.Duration) {
	c.mu.Lock()
	c.stallUntil = time.Now().Add(d)
	c.mu.Unlock()
}

// powerOff is the disk losing power: the sync in flight and the queued
// writes never complete. Their waiters are released at once (their store
// has been cut off: store.PowerOff, so it drops them) and the disk starts
// idle for the next incarnation.
func (c *nodeCost) powerOff() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.diskGen++
	for _, r := range append(c.diskGroup, c.diskQueue...) {
		if !r.released {
			r.released = true
			close(r.done)
		}
	}
	c.diskGroup, c.diskQueue, c.diskBusy = nil, nil, false
}

// storeFile is a node's bbolt file in its data directory (node.New).
const storeFile = "node.db"

// backupPath is where the backup fault keeps sn's copy: beside the nodes'
// directories, under a name no node has.
func (s *simulation) backupPath(sn *simNode) string {
	return filepath.Join(s.opts.DataDir, ".backup", sn.spec.Name, storeFile)
}

// powerLoss crashes sn as a power cut would: its store is cut off first,
// so no write whose sync had not returned reaches the file, then the
// process dies as in a crash.
func (s *simulation) powerLoss(sn *simNode) error {
	if sn.state != stateAlive {
		return fmt.Errorf("sim: power_loss %s: node is %s", sn.spec.Name, sn.state)
	}
	s.mu.Lock()
	nd := sn.node
	s.mu.Unlock()
	nd.Store().PowerOff()
	sn.cost.powerOff()
	sn.host.Crash()
	s.cluster.Crash(sn.spec.Name)
	if nd := s.stopNode(sn, stateCrashed); nd != nil {
		nd.Close()
	}
	return nil
}

// backup copies sn's store file as it is now: a consistent snapshot
// (bbolt read transaction) of a running node, the file of a stopped one.
func (s *simulation) backup(sn *simNode) error {
	dst := s.backupPath(sn)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("sim: backup %s: %w", sn.spec.Name, err)
	}
	s.mu.Lock()
	nd := sn.node
	s.mu.Unlock()
	if nd != nil {
		return nd.Store().Backup(dst)
	}
	if err := copyFile(filepath.Join(sn.dir, storeFile), dst); err != nil {
		return fmt.Errorf("sim: backup %s: %w", sn.spec.Name, err)
	}
	return nil
}

// Disk choices of a restart.
const (
	DiskKeep   = ""       // the node's own disk, as it was
	DiskBackup = "backup" // the copy the last backup fault took
	DiskEmpty  = "empty"  // a new, empty disk
)

// replaceDisk puts the disk a restart asked for in sn's data directory (sn
// is not running) and tells the ledger what the node now holds.
func (s *simulation) replaceDisk(sn *simNode, disk string) error {
	file := filepath.Join(sn.dir, storeFile)
	switch disk {
	case DiskKeep:
		return nil
	case DiskEmpty:
		if err := os.RemoveAll(sn.dir); err != nil {
			return fmt.Errorf("sim: empty disk of %s: %w", sn.spec.Name, err)
		}
		s.ledger.replaced(sn.spec.Name, nil, time.Now(), LostEmpty)
		return nil
	case DiskBackup:
		src := s.backupPath(sn)
		keep, err := fileCopyIDs(src)
		if err != nil {
			return fmt.Errorf("sim: restore %s: %w", sn.spec.Name, err)
		}
		if err := copyFile(src, file); err != nil {
			return fmt.Errorf("sim: restore %s: %w", sn.spec.Name, err)
		}
		s.ledger.replaced(sn.spec.Name, keep, time.Now(), LostRestore)
		return nil
	}
	return errors.New("sim: unknown disk " + disk)
}

// fileCopyIDs lists the copies in a store file that no node has open.
func fileCopyIDs(path string) (map[string]bool, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	st, err := store.Open(store.Options{Path: path, NoSync: true})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	ids := map[string]bool{}
	err = st.CopyIDs(func(id string) bool { ids[id] = true; return true })
	return ids, err
}

// copyFile copies src to dst, replacing dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
