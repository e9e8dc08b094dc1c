package logring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Back-off between restarts of a failed source: backoffMin, doubling up to backoffMax, back to
// backoffMin once the source has produced an entry again. Variables so tests can shorten them.
var (
	backoffMin = time.Second
	backoffMax = time.Minute
)

// Collect runs every source, adding what it emits to r, until ctx ends; then it returns once
// every source has stopped. A source that fails (returns an error, returns before ctx ends,
// or panics) is restarted after a back-off of 1 s doubling to 1 min. The log says when a
// source starts failing and when it recovers (its first entry after a failure), not every
// retry, which goes to the debug level. A nil log means slog.Default().
func Collect(ctx context.Context, r *Ring, sources []Source, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	var wg sync.WaitGroup
	for _, s := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runSource(ctx, r, s, log)
		}()
	}
	wg.Wait()
}

// runSource keeps one source running until ctx ends.
func runSource(ctx context.Context, r *Ring, s Source, log *slog.Logger) {
	var failing, produced atomic.Bool
	emit := func(e Entry) {
		r.Add(e)
		produced.Store(true)
		if failing.CompareAndSwap(true, false) {
			log.Info("log source recovered", "source", s.Name())
		}
	}
	delay := backoffMin
	for {
		produced.Store(false)
		err := runOnce(ctx, s, emit)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stopped")
		}
		if produced.Load() {
			delay = backoffMin
		}
		if failing.CompareAndSwap(false, true) {
			log.Warn("log source failed; retrying with back-off", "source", s.Name(), "err", err)
		} else {
			log.Debug("log source failed again", "source", s.Name(), "err", err, "retry_in", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, backoffMax)
	}
}

// runOnce runs s once, turning a panic into an error so one bad source cannot stop the daemon.
func runOnce(ctx context.Context, s Source, emit func(Entry)) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return s.Run(ctx, emit)
}
