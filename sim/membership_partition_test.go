package sim

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"

	"mailarray/node/env"
	"mailarray/sim/simnet"
)

func TestMembershipPartitionAndHeal(t *testing.T) {
	cfg := DefaultMembershipConfig()
	synctest.Test(t, func(t *testing.T) {
		n := simnet.NewNet(3, simnet.DefaultNetConfig())
		stop := n.Start()
		c := NewCluster(n, cfg, testMembers(4)...)
		r := record(c, []string{"n1", "n2", "n3", "n4"})

		// n4 is cut off from n1 and n2; n3 stays connected to everyone.
		c.Partition([]string{"n4"}, []string{"n1", "n2"})
		time.Sleep(cfg.DetectMax + time.Second)
		got := r.take()
		for _, obs := range []string{"n1", "n2"} {
			if assert.Len(t, got[obs], 1, "observer %s", obs) {
				assert.Equal(t, seen{env.EventFail, "n4", got[obs][0].at}, got[obs][0])
				assert.GreaterOrEqual(t, got[obs][0].at, cfg.DetectMin)
			}
		}
		if assert.Len(t, got["n4"], 2) {
			assert.Equal(t, []string{"n1", "n2"}, []string{got["n4"][0].name, got["n4"][1].name})
		}
		assert.Empty(t, got["n3"], "n3 is on both sides")
		assert.Equal(t, env.StatusFailed, memberStatus(c.For("n1"), "n4"))
		assert.Equal(t, env.StatusAlive, memberStatus(c.For("n3"), "n4"))

		// A tag change of n4 does not cross the cut.
		assert.NoError(t, c.For("n4").SetTags(map[string]string{env.TagRoles: "store"}))
		time.Sleep(cfg.GossipMax)
		got = r.take()
		assert.Empty(t, got["n1"])
		assert.Len(t, got["n3"], 1)

		healAt := time.Since(r.t0)
		c.Heal()
		time.Sleep(cfg.RejoinMax + time.Second)
		got = r.take()
		for _, obs := range []string{"n1", "n2"} {
			if assert.Len(t, got[obs], 1, "observer %s", obs) {
				assert.Equal(t, env.EventJoin, got[obs][0].kind)
				assert.GreaterOrEqual(t, got[obs][0].at-healAt, cfg.RejoinMin)
			}
		}
		assert.Len(t, got["n4"], 2, "n4 sees n1 and n2 again")
		assert.Empty(t, got["n3"], "n3 only learns new incarnations: nothing changed for it")
		assert.Equal(t, "store", c.For("n1").Members()[3].Tags[env.TagRoles], "the rejoin carries the current tags")

		// After the heal, news flows again (the new incarnation is current).
		assert.NoError(t, c.For("n4").SetTags(map[string]string{env.TagRoles: "smtp,store"}))
		time.Sleep(cfg.GossipMax)
		got = r.take()
		for _, obs := range []string{"n1", "n2", "n3"} {
			assert.Len(t, got[obs], 1, "observer %s sees the update", obs)
		}
		r.close()
		for _, m := range c.Members() {
			c.For(m.Name).Close()
		}
		stop()
	})
}

func memberStatus(v *View, name string) env.Status {
	for _, m := range v.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return -1
}
