package simnet

import (
	"io"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
)

func TestTraceIsRepeatable(t *testing.T) {
	trace := func() string {
		var buf strings.Builder
		synctest.Test(t, func(t *testing.T) {
			cfg := DefaultNetConfig()
			cfg.Trace = &buf
			n := NewNet(3, cfg)
			stop := n.Start()
			cli, srv := pair(t, n, "25")
			cli.Write([]byte("hello"))
			io.ReadFull(srv, make([]byte, 5))
			n.Note("read %d bytes", 5)
			cli.Close()
			srv.Close()
			stop()
		})
		return buf.String()
	}
	a := trace()
	assert.Equal(t, a, trace())
	assert.Regexp(t, `D DATA tcp 10\.0\.0\.1:\d+>10\.0\.0\.2:25 #1 #2 len=5`, a)
	assert.Contains(t, a, "note read 5 bytes")
}
