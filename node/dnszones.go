package node

import (
	"context"
	"slices"

	"mailarray/node/ddns"
)

// zoneFiles is the zone-file setting of c as the DNS server reads it.
func zoneFiles(c *Config) ddns.ZoneFiles {
	return ddns.ZoneFiles{Entries: c.ZoneFiles, Domains: c.Domains, Node: c.Name}
}

// loadZones gives s the static zones of the zone-file setting and keeps
// them current. A zone that does not load stops the start: the error
// names the file and line.
func (n *Node) loadZones(s *ddns.Server) error {
	if len(n.conf().ZoneFiles) == 0 {
		return nil
	}
	zf := zoneFiles(n.conf())
	lz, err := zf.LoadStamped()
	if err != nil {
		return err
	}
	n.useZones(s, zf, lz)
	return nil
}

// prepareZones reads the zone files of a reloaded configuration c, before
// anything changes: a file that does not load refuses the reload, and the
// zones in use stay. ok is false when the DNS server has nothing to do
// (no DNS listener, or the setting did not change).
func (n *Node) prepareZones(old, c *Config) (lz ddns.LoadedZones, ok bool, err error) {
	if n.dns == nil || slices.Equal(old.ZoneFiles, c.ZoneFiles) {
		return lz, false, nil
	}
	if len(c.ZoneFiles) == 0 {
		return lz, true, nil // no static zone any more
	}
	lz, err = zoneFiles(c).LoadStamped()
	return lz, err == nil, err
}

// useZones serves lz on s and watches zf's files for changes, in place of
// the files watched until now.
func (n *Node) useZones(s *ddns.Server, zf ddns.ZoneFiles, lz ddns.LoadedZones) {
	// The old watcher stops first, so it cannot serve the old files after
	// the new ones.
	n.stopZoneWatch()
	s.UseZones(lz)
	if lz.Zones == nil {
		n.log.Info("node: dns zone files unset; no static zone")
		return
	}
	n.log.Info("node: dns zone files loaded", "domains", lz.Zones.Domains(), "records", lz.Zones.Records())
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctx == nil || n.closed {
		return
	}
	g := &loopGroup{}
	g.start(n.ctx)
	interval := n.conf().UsersReload
	g.goLoop(func(ctx context.Context) { s.WatchZones(ctx, zf, interval) })
	n.zones = g
}

// stopZoneWatch stops the zone-file watcher, if one runs, and waits for it.
func (n *Node) stopZoneWatch() {
	n.mu.Lock()
	g := n.zones
	n.zones = nil
	n.mu.Unlock()
	if g != nil {
		g.stop()
	}
}
