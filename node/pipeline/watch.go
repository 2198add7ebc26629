package pipeline

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// DefaultWatchInterval is how often Watch looks at a file when given no
// interval: reloading is cheap, but stat on every message is not needed.
const DefaultWatchInterval = 10 * time.Second

// MaxListFileBytes bounds a signature or spam database file read into
// memory; a larger file fails to load and the previous contents stay.
const MaxListFileBytes = 64 << 20

// changedSince says whether the file now described by fi differs from the
// one loaded (prev): replaced (a rename gives a new inode), resized or
// touched.
func changedSince(prev, fi os.FileInfo) bool {
	return prev == nil || !os.SameFile(prev, fi) || !fi.ModTime().Equal(prev.ModTime()) || fi.Size() != prev.Size()
}

// readListFile stats and reads path whole, refusing files larger than
// MaxListFileBytes. The FileInfo is taken before reading, so a change
// during the read shows up as a change at the next look.
func readListFile(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() > MaxListFileBytes {
		return nil, nil, fmt.Errorf("%s: %d bytes, more than %d", path, fi.Size(), MaxListFileBytes)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxListFileBytes+1))
	if err != nil {
		return nil, nil, err
	}
	if len(b) > MaxListFileBytes {
		return nil, nil, fmt.Errorf("%s: more than %d bytes", path, MaxListFileBytes)
	}
	return b, fi, nil
}

// watch calls reload whenever stale says the file changed, looking every
// interval until ctx is done. The caller owns the goroutine.
func watch(ctx context.Context, interval time.Duration, stale func() bool, reload func()) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if stale() {
				reload()
			}
		}
	}
}
