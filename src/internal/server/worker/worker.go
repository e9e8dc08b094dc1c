// Package worker turns stored cores into analysed traces: unwind every thread, symbolize
// every frame, add the frames of functions that left by a tail call (from DWARF call sites, as
// gdb does: tailcall.go), fingerprint the crash, and file it under an issue. Each core is one job with a
// time budget; hostile input becomes an error on that job, never a crashed server.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"meta-memfault-go/internal/server/group"
	"meta-memfault-go/internal/server/store"
	"meta-memfault-go/internal/server/symstore"
)

// Config bounds the jobs.
type Config struct {
	Workers     int           // concurrent jobs (default 2)
	JobTimeout  time.Duration // per core (default 60 s)
	MaxCoreSize int64         // uncompressed bytes (default 1 GiB)
	Limits      Limits        // threads and frames per core
}

// Event says what a finished job did to the issues.
type Event struct {
	CoreID   int64
	IssueID  int64
	NewIssue bool
}

// Worker runs the analysis queue.
type Worker struct {
	cfg   Config
	st    *store.Store
	syms  *symstore.Store
	group *group.Grouper
	log   *slog.Logger
	wake  chan struct{}
	hint  atomic.Int64 // cores announced by Wake and not yet claimed
	drain atomic.Bool  // Requeued: claim until the queue is empty
	// Done is called after each successful job (notifications hook in here).
	Done func(Event)
}

// New makes a worker.
func New(cfg Config, st *store.Store, syms *symstore.Store, g *group.Grouper, log *slog.Logger) *Worker {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = 60 * time.Second
	}
	if cfg.MaxCoreSize <= 0 {
		cfg.MaxCoreSize = 1 << 30
	}
	return &Worker{cfg: cfg, st: st, syms: syms, group: g, log: log, wake: make(chan struct{}, cfg.Workers), Done: func(Event) {}}
}

// Wake tells the worker that one core was stored.
func (w *Worker) Wake() {
	w.hint.Add(1)
	w.signal()
}

// Requeued tells the worker that cores went back to the queue, how many it does not know
// (symbols arrived for them): a goroutine claims until the queue is empty.
func (w *Worker) Requeued() {
	w.drain.Store(true)
	w.signal()
}

func (w *Worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run processes the queue until ctx ends. Each of the cfg.Workers goroutines claims the oldest
// pending core itself (one statement: claim and read) and analyses it. After a core it claims
// again only while stored cores are announced (Wake counts them) or while draining (at start,
// after Requeued, at each tick for cores re-queued otherwise): a claim that finds the queue
// empty is a write statement, and one after every core would double the claims. An idle
// goroutine sleeps until a token of the wake channel; it holds up to cfg.Workers tokens, so a
// burst of uploads wakes as many goroutines as it needs, and a Wake between an empty claim
// and the wait is not lost.
func (w *Worker) Run(ctx context.Context) {
	if n, err := w.st.ResetRunning(ctx); err == nil && n > 0 {
		w.log.Info("re-queued cores interrupted by a restart", "cores", n)
	}
	var wg sync.WaitGroup
	for i := 0; i < w.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx)
		}()
	}
	wg.Wait()
}

func (w *Worker) loop(ctx context.Context) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	claim, drain := true, true // at start: cores stored before a restart
	for ctx.Err() == nil {
		if claim {
			c, err := w.st.ClaimNext(ctx)
			if err == nil {
				w.takeHint()
				w.process(ctx, c)
				claim = drain || w.hint.Load() > 0
				continue
			}
			if errors.Is(err, store.ErrNotFound) {
				// The announced cores went to other goroutines; a core stored since has
				// its token in the channel.
				w.hint.Store(0)
				drain = false
			} else if ctx.Err() == nil {
				w.log.Error("queue", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
			claim = true
			drain = drain || w.drain.Swap(false)
		case <-tick.C:
			claim, drain = true, true
		}
	}
}

// takeHint counts one announced core as claimed.
func (w *Worker) takeHint() {
	for {
		v := w.hint.Load()
		if v <= 0 || w.hint.CompareAndSwap(v, v-1) {
			return
		}
	}
}

// process analyses one claimed core; every failure ends up on the core, not in a crash.
func (w *Worker) process(ctx context.Context, c *store.Core) {
	start := time.Now()
	id := c.ID
	ctx, cancel := context.WithTimeout(ctx, w.cfg.JobTimeout)
	defer cancel()
	type outcome struct {
		a   *Analysis
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- outcome{err: fmt.Errorf("analysis crashed: %v\n%s", r, debug.Stack())}
			}
		}()
		a, err := Analyze(ctx, w.st, w.syms, w.group, c, w.cfg.MaxCoreSize, w.cfg.Limits)
		done <- outcome{a, err}
	}()
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		o.err = fmt.Errorf("analysis took longer than %v", w.cfg.JobTimeout)
	}
	bg := context.Background()
	if o.err != nil {
		w.log.Warn("core analysis failed", "core", id, "err", o.err)
		if err := w.st.FailCore(bg, id, o.err.Error()); err != nil {
			w.log.Error("record failure", "core", id, "err", err)
		}
		return
	}
	trace, err := json.Marshal(o.a.Trace)
	if err != nil {
		w.st.FailCore(bg, id, err.Error())
		return
	}
	keys, _ := json.Marshal(o.a.Fingerprint.Keys)
	fn, loc := crashSite(o.a)
	issue, created, err := w.st.FinishCore(bg, id, store.Result{
		Fingerprint: o.a.Fingerprint.Hash, Title: o.a.Title, Signal: o.a.Trace.Signal,
		FingerprintFrames: string(keys), Trace: string(trace), MissingBuildIDs: o.a.Trace.MissingSymbols,
		Function: fn, Location: loc, Newer: newer,
	})
	if err != nil {
		// The analysis is fine, storing it was not (the database was busy or full): back
		// in the queue, so the core is not stuck in "running".
		w.log.Error("store analysis", "core", id, "err", err)
		if err := w.st.Requeue(bg, id); err != nil {
			w.st.FailCore(bg, id, "store analysis: "+err.Error())
		}
		return
	}
	w.log.Info("core analysed", "core", id, "issue", issue, "new_issue", created, "title", o.a.Title,
		"missing_symbols", len(o.a.Trace.MissingSymbols), "took", time.Since(start).Round(time.Millisecond))
	w.Done(Event{CoreID: id, IssueID: issue, NewIssue: created})
}

// crashSite names the first fingerprint frame: its function (or module+offset) and file:line.
func crashSite(a *Analysis) (fn, loc string) {
	if len(a.Fingerprint.Frames) == 0 || len(a.Trace.Threads) == 0 {
		return "", ""
	}
	f := a.Trace.Threads[0].Frames[a.Fingerprint.Frames[0]]
	fn = group.Normalize(f.Function)
	if fn == "" {
		fn = filepath.Base(f.Module) + "+" + f.Offset
	}
	if f.File != "" && f.Line > 0 {
		loc = fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	return fn, loc
}

// newer is the regression rule (group.Newer) in the store's terms.
func newer(now store.Seen, earlier []store.Seen) bool {
	e := make([]group.Seen, len(earlier))
	for i, s := range earlier {
		e[i] = group.Seen{Version: s.Version, FirstCore: s.FirstCore}
	}
	return group.Newer(group.Seen{Version: now.Version, FirstCore: now.FirstCore}, e)
}
