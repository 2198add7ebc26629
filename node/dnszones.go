package node

import (
	"context"

	"mailarray/node/ddns"
)

// loadZones gives s the static zones of the zone-file setting and keeps
// them current. A zone that does not load stops the start: the error
// names the file and line.
func (n *Node) loadZones(s *ddns.Server) error {
	if len(n.conf().ZoneFiles) == 0 {
		return nil
	}
	zf := ddns.ZoneFiles{Entries: n.conf().ZoneFiles, Domains: n.conf().Domains, Node: n.conf().Name}
	zs, err := s.LoadZones(zf)
	if err != nil {
		return err
	}
	n.log.Info("node: dns zone files loaded", "domains", zs.Domains(), "records", zs.Records())
	n.goLoop(func(ctx context.Context) { s.WatchZones(ctx, zf, n.conf().UsersReload) })
	return nil
}
