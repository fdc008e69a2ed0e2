package modutil

import (
	"context"
	"time"
)

// Periodic runs f once at once and then at every tick until ctx ends, in a
// goroutine of its own (the retention jobs of the archives and uploads).
// tick nil means a time.Ticker with interval (> 0); tests pass their own
// channel to drive it. The returned channel is closed when the goroutine
// has finished, so the store may be closed after it.
func Periodic(ctx context.Context, tick <-chan time.Time, interval time.Duration, f func(context.Context)) <-chan struct{} {
	done := make(chan struct{})
	var ticker *time.Ticker
	if tick == nil {
		ticker = time.NewTicker(interval)
		tick = ticker.C
	}
	go func() {
		defer close(done)
		if ticker != nil {
			defer ticker.Stop()
		}
		for {
			f(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
	}()
	return done
}
