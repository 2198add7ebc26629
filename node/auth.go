package node

import (
	"context"
	"net"

	"mailarray/node/pipeline"
)

// validateAuth checks pipeline.auth, filling the authserv-id default.
func (c *Config) validateAuth(bad func(key, f string, a ...any)) {
	a := &c.Pipeline.Auth
	switch a.DMARCPolicy {
	case "":
		a.DMARCPolicy = pipeline.DMARCMark
	case pipeline.DMARCMark, pipeline.DMARCQuarantine, pipeline.DMARCReject, pipeline.DMARCHonour:
	default:
		bad("pipeline.auth.dmarc-policy", "%q must be mark, quarantine, reject or honour", a.DMARCPolicy)
	}
	if a.Resolver != "" {
		if _, _, err := net.SplitHostPort(a.Resolver); err != nil {
			bad("pipeline.auth.resolver", "%q: %v", a.Resolver, err)
		}
	}
	if a.AuthservID == "" && len(c.Domains) > 0 {
		a.AuthservID = c.Domains[0]
	}
	if a.AuthservID != "" {
		id, err := pipeline.CanonicalDomain(a.AuthservID)
		if err != nil {
			bad("pipeline.auth.authserv-id", "%v", err)
		}
		a.AuthservID = id
	}
	for _, s := range a.ARCTrustedSealers {
		if _, err := pipeline.CanonicalDomain(s); err != nil {
			bad("pipeline.auth.arc-trusted-sealers", "%v", err)
		}
	}
}

// newAuthFilter returns the sender authentication filter, or nil when
// there is no resolver or no check is on: then the pipeline makes no
// lookups and adds no field.
func (n *Node) newAuthFilter(c AuthConfig) (*pipeline.Auth, error) {
	if c.Resolver == "" || !(c.SPF || c.DKIM || c.DMARC) {
		return nil, nil
	}
	ac := pipeline.DefaultAuthConfig()
	ac.SPF, ac.DKIM, ac.DMARC = c.SPF, c.DKIM, c.DMARC
	ac.DMARCPolicy = c.DMARCPolicy
	ac.AuthservID = c.AuthservID
	ac.ARCTrustedSealers = c.ARCTrustedSealers
	ac.Resolver = &pipeline.DNSResolver{Net: n.env.Net, Server: c.Resolver}
	return pipeline.NewAuth(ac, n.log)
}

// localOriginKey marks a delivery's context as the array's own (the fax
// and voicemail gateway), as opposed to the SMTP listener's: a context
// value, because the path between them is the SMTP backend's Deliver and
// its smtp.Message, which a remote client fills.
type localOriginKey struct{}

func withLocalOrigin(ctx context.Context) context.Context {
	return context.WithValue(ctx, localOriginKey{}, true)
}

func localOrigin(ctx context.Context) bool {
	local, _ := ctx.Value(localOriginKey{}).(bool)
	return local
}
