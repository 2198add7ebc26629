package store

// Syncing reports whether a commit reaches the disk (fsync) before Write
// returns: false only for a store opened with Options.NoSync, which only
// the simulator sets (its disk cost is modeled). A real node's 250 means
// W copies on disk, so tests assert that every store a production config
// opens says true (make mutants: fsync-off).
func (s *Store) Syncing() bool { return !s.db.NoSync }
