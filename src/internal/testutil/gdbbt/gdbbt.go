// Package gdbbt runs gdb as the oracle of the tests: it prints `thread apply all bt` for a core
// and reduces the output to the function names of each thread's frames, so that two cores of
// the same crash can be compared thread by thread. Only tests import it.
package gdbbt

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Thread is one thread of gdb's output: its LWP id and frame function names, innermost first.
type Thread struct {
	LWP    string
	Frames []string
}

// Backtraces runs gdb (gdb-multiarch when sysroot is set, for foreign cores) on exe and core
// and returns every thread's frames, sorted by LWP, and gdb's raw output.
func Backtraces(ctx context.Context, exe, core, sysroot string) ([]Thread, string, error) {
	gdb := "gdb"
	args := []string{"-nx", "-batch"}
	if sysroot != "" {
		gdb = "gdb-multiarch"
		args = append(args, "-ex", "set sysroot "+sysroot)
	}
	args = append(args, "-ex", "file "+exe, "-ex", "core-file "+core, "-ex", "thread apply all bt")
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gdb, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, out.String(), fmt.Errorf("%s: %w\n%s", gdb, err, out.String())
	}
	return Parse(out.String()), out.String(), nil
}

var (
	threadRe = regexp.MustCompile(`^Thread \d+ \((?:LWP|Thread 0x[0-9a-f]+ \(LWP) (\d+)`)
	frameRe  = regexp.MustCompile(`^#(\d+)\s+(?:0x[0-9a-f]+ in )?(\S+)`)
)

// Parse reduces gdb's output to threads and frame function names.
func Parse(out string) []Thread {
	var threads []Thread
	var cur *Thread
	for _, line := range strings.Split(out, "\n") {
		if m := threadRe.FindStringSubmatch(line); m != nil {
			threads = append(threads, Thread{LWP: m[1]})
			cur = &threads[len(threads)-1]
			continue
		}
		if m := frameRe.FindStringSubmatch(line); m != nil && cur != nil {
			cur.Frames = append(cur.Frames, FrameName(line))
		}
	}
	sort.Slice(threads, func(i, j int) bool { return threads[i].LWP < threads[j].LWP })
	return threads
}

var (
	framePrefixRe = regexp.MustCompile(`^#\d+\s+(?:0x[0-9a-f]+ in )?`)
	frameSuffixRe = regexp.MustCompile(`\) (?:at \S+|from \S+)$`)
)

// FrameName extracts the function name of one gdb frame line: what stands between the frame
// number (and address) and the argument list, which is the last balanced "(...)". Names may
// hold spaces and parentheses: "(anonymous namespace)::run", "Walker<int>::fold<...>".
func FrameName(line string) string {
	s := framePrefixRe.ReplaceAllString(line, "")
	if loc := frameSuffixRe.FindStringIndex(s); loc != nil {
		s = s[:loc[0]+1]
	}
	s = strings.TrimSpace(s)
	if !strings.HasSuffix(s, ")") {
		return s
	}
	depth := 0
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case ')':
			depth++
		case '(':
			depth--
			if depth == 0 {
				if name := strings.TrimSpace(s[:i]); name != "" {
					return name
				}
				return s
			}
		}
	}
	return s
}

// Diff describes how b differs from a, or returns "" when every thread has the same frames.
func Diff(a, b []Thread) string { return diff(a, b, false) }

// DiffPrefix is Diff to the depth gdb reaches: b may go on past the end of a's frames (gdb
// stops at main by default, an unwinder may continue into the C library's start code).
func DiffPrefix(a, b []Thread) string { return diff(a, b, true) }

func diff(a, b []Thread, prefix bool) string {
	var sb strings.Builder
	if len(a) != len(b) {
		fmt.Fprintf(&sb, "%d threads vs %d\n", len(a), len(b))
	}
	idx := map[string][]string{}
	for _, t := range b {
		idx[t.LWP] = t.Frames
	}
	for _, t := range a {
		fb, ok := idx[t.LWP]
		if !ok {
			fmt.Fprintf(&sb, "thread %s missing\n", t.LWP)
			continue
		}
		if prefix && len(fb) > len(t.Frames) {
			fb = fb[:len(t.Frames)]
		}
		if strings.Join(t.Frames, " ") != strings.Join(fb, " ") {
			fmt.Fprintf(&sb, "thread %s:\n  want %v\n  got  %v\n", t.LWP, t.Frames, fb)
		}
	}
	return sb.String()
}

// Sorted orders threads by LWP as Parse does.
func Sorted(threads []Thread) []Thread {
	sort.Slice(threads, func(i, j int) bool { return threads[i].LWP < threads[j].LWP })
	return threads
}
