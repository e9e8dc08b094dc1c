package handler

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"meta-memfault-go/internal/device/staging"
)

// RateLimiter allows at most Count captures per Window. Capture times are unix seconds, one per
// line, in a file under tmp_dir, so the limit holds across reboots. Many handlers may run at
// once (a crash loop, or a fleet of workers dying together): a slot is reserved under an
// exclusive lock before capturing and released again if the capture fails, so exactly Count
// captures succeed, and only successful captures count.
type RateLimiter struct {
	Path   string
	Count  int
	Window time.Duration
}

const maxRateEntries = 4096

// ErrRateLimited is returned when the window is full.
var ErrRateLimited = errors.New("rate limit reached")

// lock takes the limiter's lock file, waiting at most until deadline.
func (r RateLimiter) lock(deadline time.Time) (*os.File, error) {
	f, err := os.OpenFile(r.Path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("rate limit lock: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r RateLimiter) load() []int64 {
	b, err := os.ReadFile(r.Path)
	if err != nil {
		return nil // missing or unreadable: no history
	}
	var out []int64
	for _, f := range strings.Fields(string(b)) {
		if v, err := strconv.ParseInt(f, 10, 64); err == nil {
			out = append(out, v) // a damaged line must not stop captures forever
		}
	}
	return out
}

func (r RateLimiter) recent(now time.Time) []int64 {
	cut := now.Add(-r.Window).Unix()
	var keep []int64
	for _, t := range r.load() {
		if t > cut && t <= now.Unix()+60 {
			keep = append(keep, t)
		}
	}
	sort.Slice(keep, func(i, j int) bool { return keep[i] < keep[j] })
	if len(keep) > maxRateEntries {
		keep = keep[len(keep)-maxRateEntries:]
	}
	return keep
}

func (r RateLimiter) save(ts []int64) error {
	var sb strings.Builder
	for _, t := range ts {
		fmt.Fprintf(&sb, "%d\n", t)
	}
	return staging.WriteFileAtomic(r.Path, []byte(sb.String()))
}

// Reserve takes a slot at now, or returns ErrRateLimited. The returned release gives the slot
// back (call it when the capture failed).
func (r RateLimiter) Reserve(now time.Time, deadline time.Time) (release func(), err error) {
	l, err := r.lock(deadline)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	ts := r.recent(now)
	if len(ts) >= r.Count {
		return nil, fmt.Errorf("%w: %d cores in %v", ErrRateLimited, r.Count, r.Window)
	}
	if err := r.save(append(ts, now.Unix())); err != nil {
		return nil, fmt.Errorf("rate limit state: %w", err)
	}
	return func() {
		l, err := r.lock(time.Now().Add(2 * time.Second))
		if err != nil {
			return
		}
		defer l.Close()
		ts := r.recent(now)
		for i, t := range ts {
			if t == now.Unix() {
				r.save(append(ts[:i:i], ts[i+1:]...))
				return
			}
		}
	}, nil
}
