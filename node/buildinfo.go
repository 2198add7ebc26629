package node

import (
	"runtime"
	"runtime/debug"
)

// BuildInfo is what the running binary is: a rolling upgrade is confirmed
// by every node reporting the new one (Status.Build, mailarray_build_info).
type BuildInfo struct {
	// Version is the release (Config.Version: `make build` passes `git
	// describe`), or the module version, or "dev".
	Version string `json:"version"`
	// Commit is the VCS revision the Go toolchain stamped into the binary,
	// with "-dirty" for uncommitted changes; "unknown" when it stamped none
	// (go test, go run, a build outside the repository).
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// ReadBuildInfo describes the running binary, calling it version. commit
// is the revision given at link time, if any: the toolchain's own stamp
// (vcs.revision) wins when there is one.
func ReadBuildInfo(version, commit string) BuildInfo {
	b := BuildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "dev"
		}
		return b
	}
	if (b.Version == "" || b.Version == "dev") && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" {
		b.Commit = rev + dirty
	}
	return b
}
