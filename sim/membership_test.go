package sim

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
	"mailarray/sim/simnet"
)

func testMembers(k int) []env.Member {
	var ms []env.Member
	for i := 1; i <= k; i++ {
		ip := fmt.Sprintf("10.0.0.%d", i)
		ms = append(ms, env.Member{
			Name: fmt.Sprintf("n%d", i),
			Addr: net.ParseIP(ip),
			Tags: map[string]string{env.TagPeer: ip + ":7000", env.TagRoles: "smtp,store"},
		})
	}
	return ms
}

// seen is one event as an observer received it, with its virtual time.
type seen struct {
	kind env.EventKind
	name string
	at   time.Duration
}

// recorder subscribes to every view and records what each observer sees.
type recorder struct {
	t0      time.Time
	mu      sync.Mutex
	got     map[string][]seen
	cancels []func()
	wg      sync.WaitGroup
}

func record(c *Cluster, names []string) *recorder {
	r := &recorder{t0: time.Now(), got: map[string][]seen{}}
	for _, name := range names {
		ch, cancel := c.For(name).Subscribe()
		r.cancels = append(r.cancels, cancel)
		r.wg.Go(func() {
			for ev := range ch {
				r.mu.Lock()
				r.got[name] = append(r.got[name], seen{ev.Kind, ev.Member.Name, time.Since(r.t0)})
				r.mu.Unlock()
			}
		})
	}
	return r
}

func (r *recorder) take() map[string][]seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = map[string][]seen{}
	return got
}

func (r *recorder) close() {
	for _, c := range r.cancels {
		c()
	}
	r.wg.Wait()
}

func TestMembershipCrashDetection(t *testing.T) {
	cfg := DefaultMembershipConfig()
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	run := func(seed uint64) (crash, restart map[string][]seen) {
		synctest.Test(t, func(t *testing.T) {
			n := testNet(seed, nil)
			stop := n.Start()
			defer stop()
			c := NewCluster(n, cfg, testMembers(5)...)
			assert.Equal(t, "n2", c.For("n2").Local().Name)
			require.Len(t, c.For("n1").Members(), 5, "the initial members know each other")
			r := record(c, names)

			time.Sleep(time.Second)
			c.Crash("n3")
			time.Sleep(cfg.DetectMax + time.Second)
			crash = r.take()
			for _, obs := range []string{"n1", "n2", "n4", "n5"} {
				require.Len(t, crash[obs], 1, "observer %s", obs)
				ev := crash[obs][0]
				assert.Equal(t, env.EventFail, ev.kind)
				assert.Equal(t, "n3", ev.name)
				assert.GreaterOrEqual(t, ev.at, time.Second+cfg.DetectMin, "observer %s", obs)
				assert.LessOrEqual(t, ev.at, time.Second+cfg.DetectMax, "observer %s", obs)
				assert.Equal(t, env.StatusFailed, c.For(obs).Members()[2].Status)
			}
			assert.Empty(t, crash["n3"], "a crashed node's view stops")

			restartAt := time.Since(r.t0)
			c.Restart("n3")
			time.Sleep(cfg.GossipMax + time.Second)
			restart = r.take()
			for _, obs := range []string{"n1", "n2", "n4", "n5"} {
				require.Len(t, restart[obs], 1, "observer %s", obs)
				ev := restart[obs][0]
				assert.Equal(t, env.EventJoin, ev.kind)
				assert.Equal(t, "n3", ev.name)
				assert.GreaterOrEqual(t, ev.at-restartAt, cfg.GossipMin, "observer %s", obs)
				assert.LessOrEqual(t, ev.at-restartAt, cfg.GossipMax, "observer %s", obs)
			}
			for _, m := range c.For("n3").Members() {
				assert.Equal(t, env.StatusAlive, m.Status, "n3 resynced: %s", m.Name)
			}
			r.close()
		})
		return crash, restart
	}
	crashA, restartA := run(1)
	crashB, restartB := run(1)
	assert.Equal(t, crashA, crashB, "same seed, same detection times")
	assert.Equal(t, restartA, restartB)
	crashC, _ := run(2)
	assert.NotEqual(t, crashA, crashC, "another seed, other times")
	t.Logf("seed 1 detection: %v", crashA)
}

func TestMembershipJoinLeaveTags(t *testing.T) {
	cfg := DefaultMembershipConfig()
	simTest(t, nil, func(t *testing.T, n *simnet.Net) {
		c := NewCluster(n, cfg, testMembers(3)...)
		r := record(c, []string{"n1", "n2", "n3"})
		joined := testMembers(4)[3]

		t0 := time.Now()
		c.Add(joined)
		assert.Len(t, c.For("n4").Members(), 4, "a joiner syncs at once")
		time.Sleep(cfg.GossipMax)
		got := r.take()
		for _, obs := range []string{"n1", "n2", "n3"} {
			require.Len(t, got[obs], 1)
			assert.Equal(t, env.EventJoin, got[obs][0].kind)
			assert.Equal(t, "n4", got[obs][0].name)
			d := got[obs][0].at - time.Duration(t0.Sub(r.t0))
			assert.GreaterOrEqual(t, d, cfg.GossipMin)
			assert.LessOrEqual(t, d, cfg.GossipMax)
		}

		require.NoError(t, c.For("n1").SetTags(map[string]string{env.TagRoles: "pop3"}))
		assert.Equal(t, "pop3", c.For("n1").Local().Tags[env.TagRoles], "own view at once")
		time.Sleep(cfg.GossipMax)
		got = r.take()
		require.Len(t, got["n1"], 1, "own update")
		for _, obs := range []string{"n2", "n3"} {
			require.Len(t, got[obs], 1)
			assert.Equal(t, env.EventUpdate, got[obs][0].kind)
			assert.Equal(t, "pop3", c.For(obs).Members()[0].Tags[env.TagRoles])
		}

		require.NoError(t, c.For("n2").Leave())
		time.Sleep(cfg.GossipMax)
		got = r.take()
		require.Len(t, got["n2"], 1, "the leaver sees its own leave")
		assert.Equal(t, seen{env.EventLeave, "n2", got["n2"][0].at}, got["n2"][0])
		for _, obs := range []string{"n1", "n3"} {
			require.Len(t, got[obs], 1)
			assert.Equal(t, env.EventLeave, got[obs][0].kind)
			assert.Equal(t, env.StatusLeft, c.For(obs).Members()[1].Status)
		}
		assert.Error(t, c.For("n2").SetTags(nil), "a member that left")

		// A crash and a restart faster than detection: the others may
		// never see it fail, but end up with the new incarnation alive.
		c.Crash("n3")
		time.Sleep(100 * time.Millisecond)
		c.Restart("n3")
		time.Sleep(cfg.DetectMax + cfg.GossipMax)
		for _, obs := range []string{"n1", "n4"} {
			m := c.For(obs).Members()
			assert.Equal(t, env.StatusAlive, m[2].Status, "observer %s sees n3 alive", obs)
		}
		r.close()
		c.For("n1").Close()
		_, cancel := c.For("n1").Subscribe()
		cancel() // subscribing to a closed view is harmless
	})
}

func TestMembershipConfigValidate(t *testing.T) {
	assert.Error(t, MembershipConfig{DetectMin: 2, DetectMax: 1, SubscriberQueueMax: 1}.Validate())
	require.NoError(t, DefaultMembershipConfig().Validate())
}

// Gossip draws each message's delay on its own, so a member's tag updates
// reach an observer out of order. Every observer must end with the latest
// tags: a node's "ready" overtaken by its earlier "not ready" once kept it
// out of the others' DNS answers for a whole run (round robin sent 35% of
// the mail to one node and 14% to another).
func TestMembershipTagsOutOfOrderKeepTheNewest(t *testing.T) {
	cfg := DefaultMembershipConfig()
	require.Greater(t, cfg.GossipMax, cfg.GossipMin, "the test needs a spread of gossip delays")
	simTest(t, nil, func(t *testing.T, n *simnet.Net) {
		c := NewCluster(n, cfg, testMembers(5)...)
		tags := func(v int) map[string]string {
			return map[string]string{env.TagRoles: "smtp,store", env.TagReady: fmt.Sprint(v)}
		}
		const updates = 20
		for v := 1; v <= updates; v++ {
			require.NoError(t, c.For("n1").SetTags(tags(v)))
			time.Sleep(time.Millisecond)
		}
		// A restart, then a tag change before the others heard of the
		// new incarnation's join.
		c.Crash("n2")
		c.Restart("n2")
		require.NoError(t, c.For("n2").SetTags(tags(99)))
		time.Sleep(cfg.GossipMax + cfg.DetectMax)
		for _, obs := range []string{"n2", "n3", "n4", "n5"} {
			ms := c.For(obs).Members()
			assert.Equal(t, fmt.Sprint(updates), ms[0].Tags[env.TagReady], "observer %s: n1's last tags", obs)
		}
		for _, obs := range []string{"n1", "n3", "n4", "n5"} {
			ms := c.For(obs).Members()
			assert.Equal(t, env.StatusAlive, ms[1].Status, "observer %s: n2 alive", obs)
			assert.Equal(t, "99", ms[1].Tags[env.TagReady], "observer %s: n2's tags after its restart", obs)
		}
	})
}
