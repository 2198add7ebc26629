package sim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// leaseScenario keeps four POP3 readers busy on one mailbox with long
// sessions, so that a session holds the lease when its node is paused or
// crashes, and the others are refused.
const leaseScenario = `
name: leases
seed: 2
duration: 6s
drain: 4s
mailboxes: 1
dns_ttl: 1s
membership: {detect_min: 500ms, detect_max: 1s}
nodes:
  - {name: n1}
  - {name: n2}
  - {name: n3}
load:
  senders: 4
  rate_per_sec: 200
  size: {dist: fixed, median_bytes: 8192}
  readers: 4
  read_interval: 50ms
  read_max: 400
faults:
  - {at: 3s, action: pause, node: n1, for: 4s}
  - {at: 3s, action: crash, node: n3}
`

// TestLeaseRefusalsRecorded: the lock managers' refusals made for a holder
// whose node is paused or crashed reach the report, naming that node and
// when it went down; refusals for live holders (the readers contend all
// the time) do not. On the base code the crashed holder's lease is
// honoured until its minute-long TTL ends (issue 16, bug 6), which the
// chaos checker's lease rule flags.
func TestLeaseRefusalsRecorded(t *testing.T) {
	sc, err := ParseScenario([]byte(leaseScenario))
	require.NoError(t, err)
	rep, err := Run(t, sc, Options{})
	require.NoError(t, err)
	t.Logf("readers %+v; leases honoured for down holders %+v (+%d)", rep.Readers, rep.LeaseRefusals, rep.LeaseRefusalsMore)
	require.NotEmpty(t, rep.LeaseRefusals, "a dead reader's lease refused the others")
	var late time.Duration
	for _, r := range rep.LeaseRefusals {
		assert.Contains(t, []string{"n1", "n3"}, r.Holder, "only paused or crashed holders: %+v", r)
		assert.InDelta(t, 3.0, r.HolderDownS, 0.001, "the holder went down with the fault: %+v", r)
		assert.GreaterOrEqual(t, r.FirstS, r.HolderDownS)
		assert.GreaterOrEqual(t, r.LastS, r.FirstS)
		assert.Positive(t, r.Refusals)
		if r.Holder == "n1" {
			assert.LessOrEqual(t, r.LastS, 7.0, "no refusal for a holder resumed: %+v", r)
		}
		late = max(late, time.Duration((r.LastS-r.HolderDownS)*float64(time.Second)))
	}
	t.Logf("latest refusal %v after its holder went down (detect_max %v)", late, sc.Membership.DetectMax)
}
