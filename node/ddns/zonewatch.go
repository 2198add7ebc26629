package ddns

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// zoneFileExt names the zone files of a zone directory: <domain>.zone.
const zoneFileExt = ".zone"

// ZoneFiles is where the static zones come from: entries of the node's
// zone-file setting, each "domain=path" or a directory holding
// <domain>.zone files, for the hosted domains.
type ZoneFiles struct {
	Entries []string
	Domains []string // hosted, lowercase, no trailing dot
	Node    string   // this node's name (see ParseZone)
}

// CheckZoneEntry checks the syntax of one zone-file entry (files are read
// later, by Load): a "domain=path" domain must be hosted.
func CheckZoneEntry(entry string, domains []string) error {
	domain, path, ok := strings.Cut(entry, "=")
	switch {
	case !ok && entry == "":
		return fmt.Errorf("ddns: zone-file: empty entry")
	case !ok:
		return nil // a directory
	case path == "":
		return fmt.Errorf("ddns: zone-file: %q has no path", entry)
	case !slices.Contains(domains, normDomain(domain)):
		return fmt.Errorf("ddns: zone-file: %q: %s is not a hosted domain", entry, domain)
	}
	return nil
}

func normDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// Files lists the zone files the entries name now (a directory's
// <domain>.zone files are listed at each call, so new ones are found).
func (zf ZoneFiles) Files() ([]ZoneFile, error) {
	var out []ZoneFile
	for _, e := range zf.Entries {
		if err := CheckZoneEntry(e, zf.Domains); err != nil {
			return nil, err
		}
		if domain, path, ok := strings.Cut(e, "="); ok {
			out = append(out, ZoneFile{Domain: normDomain(domain), Path: path})
			continue
		}
		des, err := os.ReadDir(e)
		if err != nil {
			return nil, fmt.Errorf("ddns: zone-file: %w", err)
		}
		for _, de := range des { // sorted by name
			if de.IsDir() || !strings.HasSuffix(de.Name(), zoneFileExt) {
				continue
			}
			domain := normDomain(strings.TrimSuffix(de.Name(), zoneFileExt))
			if !slices.Contains(zf.Domains, domain) {
				return nil, fmt.Errorf("ddns: zone-file: %s: %s is not a hosted domain", filepath.Join(e, de.Name()), domain)
			}
			out = append(out, ZoneFile{Domain: domain, Path: filepath.Join(e, de.Name())})
		}
	}
	return out, nil
}

// Load reads every zone file (see LoadZones).
func (zf ZoneFiles) Load() (*Zones, error) {
	files, err := zf.Files()
	if err != nil {
		return nil, err
	}
	zs, err := LoadZones(files, zf.Node)
	if err != nil {
		return nil, err
	}
	for _, d := range zs.Domains() {
		if err := zs.Zone(d).checkNested(zf.Domains); err != nil {
			return nil, err
		}
	}
	return zs, nil
}

// stamp identifies the files' current versions: path, size and
// modification time of each, so a change is noticed without reading them.
func (zf ZoneFiles) stamp() (string, error) {
	files, err := zf.Files()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f.Path)
		if err != nil {
			return "", fmt.Errorf("ddns: zone-file: %w", err)
		}
		fmt.Fprintf(&b, "%s=%s %d %d\n", f.Domain, f.Path, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

// LoadedZones is zone files read and checked, not yet served: the zones
// and the stamp of the files' versions they were read from.
type LoadedZones struct {
	Zones *Zones
	stamp string
}

// LoadStamped reads and checks zf's files (see Load) without serving
// them: a configuration reload loads the new files first and serves them
// (UseZones) only once the whole reload is accepted.
func (zf ZoneFiles) LoadStamped() (LoadedZones, error) {
	// Stamped before reading: a change made while loading is seen later.
	st, err := zf.stamp()
	if err != nil {
		return LoadedZones{}, err
	}
	zs, err := zf.Load()
	if err != nil {
		return LoadedZones{}, err
	}
	return LoadedZones{Zones: zs, stamp: st}, nil
}

// UseZones serves lz; a WatchZones started afterwards reloads the files
// once they change from the versions lz was read from. The zero
// LoadedZones serves no static zone.
func (s *Server) UseZones(lz LoadedZones) {
	s.mu.Lock()
	s.zoneStamp = lz.stamp
	s.mu.Unlock()
	s.SetZones(lz.Zones)
}

// LoadZones loads zf's files (see ZoneFiles.Load) and serves them; the
// zones in use stay if they do not load. WatchZones then keeps them
// current.
func (s *Server) LoadZones(zf ZoneFiles) (*Zones, error) {
	lz, err := zf.LoadStamped()
	if err != nil {
		return nil, err
	}
	s.UseZones(lz)
	return lz.Zones, nil
}

// WatchZones polls the zone files every interval (after LoadZones) and,
// once a change has
// stayed the same for one more interval (so a file being written is not
// read half-way), loads them and serves the new zones. A change that does
// not load is logged, naming the file and line, and the zones in use
// stay. It runs in the caller's goroutine until ctx is done. Polling, as
// the users file: no extra goroutine or descriptor.
func (s *Server) WatchZones(ctx context.Context, zf ZoneFiles, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	s.mu.Lock()
	loaded := s.zoneStamp // what LoadZones read ("": nothing, so load at once)
	s.mu.Unlock()
	pending, lastErr := "", ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := zf.stamp()
		if err == nil {
			if st == loaded {
				pending = ""
				continue
			}
			if st != pending {
				pending = st // wait one interval for it to settle
				continue
			}
			// Settled: load it once; a bad version is not read again
			// until it changes.
			loaded, pending = st, ""
		}
		var zs *Zones
		if err == nil {
			zs, err = zf.Load()
		}
		if err != nil {
			if err.Error() != lastErr {
				lastErr = err.Error()
				s.log.Warn("zone files not loaded, keeping the zones in use", "err", err)
			}
			continue
		}
		lastErr = ""
		s.SetZones(zs)
		s.log.Info("zone files reloaded", "domains", zs.Domains(), "records", zs.Records())
	}
}

// Records is the number of records of every zone.
func (zs *Zones) Records() int {
	n := 0
	for _, d := range zs.Domains() {
		n += zs.Zone(d).Records()
	}
	return n
}
