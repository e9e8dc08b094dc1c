package handler

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"meta-memfault-go/internal/device/staging"
)

// RateLimiter allows at most Count captures per Window. Capture times are unix seconds, one per
// line, in a file under tmp_dir, so the limit holds across reboots; the file is rewritten
// (durably) only after a successful capture.
type RateLimiter struct {
	Path   string
	Count  int
	Window time.Duration
}

const maxRateEntries = 4096

func (r RateLimiter) load() ([]int64, error) {
	b, err := os.ReadFile(r.Path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, f := range strings.Fields(string(b)) {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			continue // a damaged line must not stop captures forever
		}
		out = append(out, v)
	}
	return out, nil
}

func (r RateLimiter) recent(now time.Time) []int64 {
	all, _ := r.load()
	cut := now.Add(-r.Window).Unix()
	var keep []int64
	for _, t := range all {
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

// Allow reports whether another capture fits in the window now. An unreadable file allows it.
func (r RateLimiter) Allow(now time.Time) bool {
	return len(r.recent(now)) < r.Count
}

// Record adds a capture at now.
func (r RateLimiter) Record(now time.Time) error {
	keep := append(r.recent(now), now.Unix())
	var sb strings.Builder
	for _, t := range keep {
		fmt.Fprintf(&sb, "%d\n", t)
	}
	return staging.WriteFileAtomic(r.Path, []byte(sb.String()))
}
