//go:build !unix

package node

import "time"

// processCPU is not measured here: benchIngest then reports no CPU figure.
func processCPU() time.Duration { return 0 }
