package node

import (
	"context"
	"sync"
)

// loopGroup is background loops that stop apart from the node's (the
// watchers of one pipeline build, of one zone-file setting): they run
// under a child of the node's context, so Close stops them too, and stop
// ends them early and waits until every one has returned.
type loopGroup struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// start derives the group's context from parent; call it once, before
// goLoop.
func (g *loopGroup) start(parent context.Context) {
	g.ctx, g.cancel = context.WithCancel(parent)
}

// goLoop runs fn in a goroutine of the group until the group stops.
func (g *loopGroup) goLoop(fn func(ctx context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn(g.ctx)
	}()
}

// stop cancels the loops and waits for them; a group never started (or
// already stopped) returns at once.
func (g *loopGroup) stop() {
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
}
