//go:build chaos

package node

// chaosBuild is true in `make chaos` builds (-tags chaos), whose
// failpoint markers are compiled in: the pipeline keeps its fault filter
// there so the pipeline.filter failpoint is reached.
const chaosBuild = true
