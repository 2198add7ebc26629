package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// What a simulated machine's disk does when the power goes, and how its
// copies are accounted for (the chaos checker's durability ledger).
//
// In the simulator bbolt runs with NoSync and the disk's sync is modeled
// by Options.Disk, which the writer waits on before it commits a group. A
// group is therefore synced exactly when its Disk wait has returned, and
// the file holds exactly the synced groups, provided nothing is committed
// after the power went: PowerOff guarantees that. A real bbolt file
// written without fsync could keep some pages of a commit whose fsync had
// not returned; the model instead drops the whole group at the store
// level, which is what a real node with fsync on (bbolt's commit writes
// its meta page last, after the data's fsync) keeps after a power loss.

// ErrPowerLost is returned by Write (and PutMeta, Corrupt) for writes that
// PowerOff cut off: they never reached the file.
var ErrPowerLost = errors.New("store: power lost before the write was synced")

// PowerOff models a power loss: every group whose sync (Options.Disk) has
// not returned yet, every write still queued, and every later write is
// dropped; what was committed stays. The store still has to be closed
// (Close then writes nothing). Used by the simulator's power_loss fault.
func (s *Store) PowerOff() {
	s.cutMu.Lock()
	s.cut = true
	s.cutMu.Unlock()
}

// poweredOff reports whether PowerOff was called: a machine without power
// syncs nothing, so the writer does not wait on the disk model for groups
// it will drop.
func (s *Store) poweredOff() bool {
	s.cutMu.Lock()
	defer s.cutMu.Unlock()
	return s.cut
}

// commitSynced commits a group whose sync has completed, unless the power
// went first, and tells the ledger (Options.Durable, Options.Dropped).
func (s *Store) commitSynced(group []*writeReq) error {
	s.cutMu.Lock()
	defer s.cutMu.Unlock()
	if s.cut {
		if s.opts.Dropped != nil {
			var put []string
			for _, r := range group {
				for _, c := range r.b.PutCopies {
					put = append(put, c.ID)
				}
			}
			s.opts.Dropped(put)
		}
		return ErrPowerLost
	}
	err := s.commit(group)
	if err == nil && s.opts.Durable != nil {
		var put, deleted []string
		for _, r := range group {
			for _, c := range r.b.PutCopies {
				put = append(put, c.ID)
			}
			deleted = append(deleted, r.b.DeleteCopies...)
		}
		if len(put)+len(deleted) > 0 {
			s.opts.Durable(put, deleted)
		}
	}
	return err
}

// Backup writes a consistent copy of the store's file to path (a bbolt
// read transaction: what was committed when it began), as an operator's
// online backup would. Used by the simulator's backup fault.
func (s *Store) Backup(path string) error {
	err := s.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(path, 0o600) })
	if err != nil {
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	return nil
}
