package ddns

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/env"
)

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	tests := []struct {
		name   string
		change func(*Config)
		want   string // substring of the error; "" means valid
	}{
		{"TTL 0 is allowed", func(c *Config) { c.TTL = 0 }, ""},
		{"negative TTL", func(c *Config) { c.TTL = -time.Second }, "TTL"},
		{"fractional TTL", func(c *Config) { c.TTL = 1500 * time.Millisecond }, "whole seconds"},
		{"TTL above RFC 2181 limit", func(c *Config) { c.TTL = MaxTTL + time.Second }, "RFC 2181"},
		{"zero refresh", func(c *Config) { c.Refresh = 0 }, "Refresh"},
		{"negative MaxAnswers", func(c *Config) { c.MaxAnswers = -1 }, "MaxAnswers"},
		{"UDP size below 512", func(c *Config) { c.MaxUDPBytes = 511 }, "MaxUDPBytes"},
		{"UDP read buffer above 64 KiB", func(c *Config) { c.UDPReadBytes = 70000 }, "UDPReadBytes"},
		{"zero write timeout", func(c *Config) { c.WriteTimeout = 0 }, "WriteTimeout"},
		{"no TCP query limit is allowed", func(c *Config) { c.MaxTCPQueries = 0 }, ""},
		{"negative TCP queries", func(c *Config) { c.MaxTCPQueries = -1 }, "MaxTCPQueries"},
		{"TCP idle timeout too short for keepalive", func(c *Config) { c.TCPIdleTimeout = 50 * time.Millisecond }, "TCPIdleTimeout"},
		{"TCP idle timeout too long for keepalive", func(c *Config) { c.TCPIdleTimeout = 2 * time.Hour }, "TCPIdleTimeout"},
		{"negative log limit", func(c *Config) { c.LogLimitPerSecond = -1 }, "LogLimitPerSecond"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "ddns: config:")
		})
	}
}

func TestNewPanicsOnProgrammerErrors(t *testing.T) {
	assert.PanicsWithValue(t, "ddns: New with nil Source", func() { New(DefaultConfig(), nil, nil, nil) })
	assert.Panics(t, func() { New(Config{}, testCluster(), nil, nil) }, "zero Config is invalid")
}

func TestRoundRobin(t *testing.T) {
	nodes := []env.Member{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	names := func(ms []env.Member) (out []string) {
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	var rr RoundRobin // the zero value works
	smtp := Query{Role: RoleSMTP}
	pop := Query{Role: RolePOP3}
	assert.Equal(t, []string{"a", "b", "c"}, names(rr.Order(smtp, nodes)))
	assert.Equal(t, []string{"a", "b", "c"}, names(rr.Order(pop, nodes)), "each role rotates on its own")
	assert.Equal(t, []string{"b", "c", "a"}, names(rr.Order(smtp, nodes)))
	assert.Equal(t, []string{"c", "a", "b"}, names(rr.Order(smtp, nodes)))
	assert.Equal(t, []string{"a", "b", "c"}, names(rr.Order(smtp, nodes)))
	assert.Equal(t, []string{"a", "b", "c"}, names(nodes), "input left alone")
	assert.Equal(t, []string{"a"}, names(rr.Order(smtp, nodes[:1])))
	assert.Empty(t, rr.Order(smtp, nil))
	assert.Equal(t, "roundrobin", rr.Name())
}

func TestLogLimiter(t *testing.T) {
	l := logLimiter{perSecond: 2}
	t0 := time.Unix(1000, 0)
	ok, _ := l.allow(t0)
	assert.True(t, ok)
	ok, _ = l.allow(t0.Add(100 * time.Millisecond))
	assert.True(t, ok)
	for range 3 {
		ok, _ = l.allow(t0.Add(200 * time.Millisecond))
		assert.False(t, ok)
	}
	ok, suppressed := l.allow(t0.Add(time.Second))
	assert.True(t, ok)
	assert.Equal(t, uint64(3), suppressed, "the next line reports what was dropped")

	off := logLimiter{}
	ok, _ = off.allow(t0)
	assert.False(t, ok, "0 per second logs nothing")
}
