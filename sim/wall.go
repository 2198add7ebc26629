package sim

import "time"

// WallSince returns the wall time elapsed since start, a WallNow reading.
func WallSince(start time.Duration) time.Duration { return WallNow() - start }
