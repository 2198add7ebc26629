package bench

import (
	"context"
	"time"
)

// pollReady asks ready every `every` until it answers true (nil) or fails
// (its error), or until timeout or ctx ends (notReady): the start-up waits
// of the processes' and the containers' arrays.
func pollReady(ctx context.Context, timeout, every time.Duration, notReady error, ready func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		ok, err := ready(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return notReady
		}
	}
}

// Sleep waits d or until ctx ends (its error): the pauses of the
// harnesses that drive an array (calibrate, the real-process soak).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
