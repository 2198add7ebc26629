//go:build !chaos

package node

// chaosBuild is false in ordinary builds: no fault filter in the pipeline
// unless the Env has a fault hook (see chaos_on.go).
const chaosBuild = false
