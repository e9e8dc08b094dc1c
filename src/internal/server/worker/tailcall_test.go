package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/server/group"
	"meta-memfault-go/internal/server/store"
	"meta-memfault-go/internal/server/symstore"
	"meta-memfault-go/internal/testutil/fixture"
	"meta-memfault-go/internal/testutil/gdbbt"
)

// The x86_64 cores were made on a host with libc6-dbg; gdb's saved output holds libc's
// tail-call frames only with that libc's debug file.
const hostLibcDebug = "/usr/lib/debug/.build-id/93/ac61ec5a8eb1396f9fbd350e3169a558528a40.debug"

// gdbFrame is one line of gdb's backtrace.
type gdbFrame struct {
	name string
	pc   uint64 // 0 when gdb printed no address
	file string
	line int
}

var (
	gdbThreadRe = regexp.MustCompile(`^Thread \d+ \(.*?LWP (\d+)\)\)?:`)
	gdbFrameRe  = regexp.MustCompile(`^#\d+\s+(?:(0x[0-9a-f]+) in )?`)
	gdbAtRe     = regexp.MustCompile(` at (\S+):(\d+)$`)
)

// parseGDB reads `thread apply all bt` output: frames per LWP.
func parseGDB(t *testing.T, path string) map[int][]gdbFrame {
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	out := map[int][]gdbFrame{}
	lwp := -1
	for _, line := range strings.Split(string(raw), "\n") {
		if m := gdbThreadRe.FindStringSubmatch(line); m != nil {
			lwp, _ = strconv.Atoi(m[1])
			continue
		}
		m := gdbFrameRe.FindStringSubmatch(line)
		if m == nil || lwp < 0 {
			continue
		}
		f := gdbFrame{name: group.Normalize(gdbbt.FrameName(line))}
		if m[1] != "" {
			f.pc, _ = strconv.ParseUint(m[1][2:], 16, 64)
		}
		if at := gdbAtRe.FindStringSubmatch(line); at != nil {
			f.file = at[1]
			f.line, _ = strconv.Atoi(at[2])
		}
		out[lwp] = append(out[lwp], f)
	}
	return out
}

// analyzeFixture runs the whole analysis on a fixture core with the binaries of dir and the
// host's system libraries (with libc's debug file) as symbols.
func analyzeFixture(t *testing.T, core []byte, dir string) *Analysis {
	st, err := store.Open(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	syms, err := symstore.New(st, []string{dir, "/lib/x86_64-linux-gnu", filepath.Dir(filepath.Dir(hostLibcDebug))}, log)
	require.NoError(t, err)
	g, err := group.New(group.DefaultRules())
	require.NoError(t, err)
	a, err := AnalyzeCore(context.Background(), bytes.NewReader(core), int64(len(core)), &store.Core{}, syms, g, Limits{})
	require.NoError(t, err)
	return a
}

// TestTailCallFramesMatchGDB: on real x86_64 cores, every thread's frames are gdb's (names, to
// gdb's depth), and every frame gdb gives an address has the same pc; the tail-call frames
// have gdb's pc, source file and line. The cores: c-tailcalls (one chain, an ambiguous middle,
// an indirect jump, mutual recursion, a tail call into libc, the crash under a tail call),
// cpp-exception (libc's raise -> __pthread_kill ~> __pthread_kill_implementation) and the
// threads fixture (libc's futex waits).
func TestTailCallFramesMatchGDB(t *testing.T) {
	if _, err := os.Stat(hostLibcDebug); err != nil {
		t.Skipf("the host libc's debug file the cores were made with is not here: %v", err)
	}
	root := fixture.Root(t)
	for _, c := range []struct {
		name, dir string
		core      func(t testing.TB) []byte
		tails     int // tail-call frames in the whole core
	}{
		{"c-tailcalls", "testdata/corpus/c-tailcalls/x86_64", func(t testing.TB) []byte { return fixture.CorpusCore(t, "c-tailcalls", "x86_64") }, 5},
		{"cpp-exception", "testdata/corpus/cpp-exception/x86_64", func(t testing.TB) []byte { return fixture.CorpusCore(t, "cpp-exception", "x86_64") }, 1},
		{"threads", "testdata/cores/x86_64", func(t testing.TB) []byte { return fixture.Core(t, "x86_64") }, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(root, c.dir)
			a := analyzeFixture(t, c.core(t), dir)
			want := parseGDB(t, filepath.Join(dir, "gdb-full.txt"))
			require.Len(t, a.Trace.Threads, len(want))
			tails := 0
			for _, th := range a.Trace.Threads {
				gf, ok := want[th.TID]
				require.True(t, ok, "thread %d not in gdb's output", th.TID)
				require.GreaterOrEqual(t, len(th.Frames), len(gf), "thread %d: fewer frames than gdb:\n%s", th.TID, describeFrames(th.Frames))
				for i, g := range gf {
					f := th.Frames[i]
					name := group.Normalize(f.Function)
					if name == "" {
						name = "??"
					}
					require.Equal(t, g.name, name, "thread %d frame #%d:\n%s", th.TID, i, describeFrames(th.Frames))
					pc, err := strconv.ParseUint(strings.TrimPrefix(f.PC, "0x"), 16, 64)
					require.NoError(t, err)
					if g.pc != 0 {
						require.Equal(t, g.pc, pc, "thread %d frame #%d (%s) pc", th.TID, i, name)
					}
					if f.Method == MethodTailCall {
						tails++
						require.NotZero(t, g.pc, "thread %d frame #%d: gdb prints the pc of a tail-call frame", th.TID, i)
						require.Equal(t, filepath.Base(g.file), filepath.Base(f.File), "thread %d frame #%d (%s) file", th.TID, i, name)
						require.Equal(t, g.line, f.Line, "thread %d frame #%d (%s) line", th.TID, i, name)
						require.False(t, f.Inlined)
					}
				}
			}
			require.Equal(t, c.tails, tails, "tail-call frames in the core")
			// Tail-call frames are not part of the fingerprint.
			crashed := a.Trace.Threads[0].Frames
			for _, i := range a.Fingerprint.Frames {
				require.NotEqual(t, MethodTailCall, crashed[i].Method, "fingerprint frame %d", i)
			}
		})
	}
}

// TestTailCallFramesAsExpected checks c-tailcalls against what its case.json says a person
// expects for each pattern: which functions show as tail-call frames, thread by thread.
func TestTailCallFramesAsExpected(t *testing.T) {
	if _, err := os.Stat(hostLibcDebug); err != nil {
		t.Skipf("the host libc's debug file the cores were made with is not here: %v", err)
	}
	dir := filepath.Join(fixture.Root(t), "testdata", "corpus", "c-tailcalls", "x86_64")
	raw, err := os.ReadFile(filepath.Join(dir, "case.json"))
	require.NoError(t, err)
	var cj struct {
		Expect struct {
			CrashThread  expectThread   `json:"crash_thread"`
			OtherThreads []expectThread `json:"other_threads"`
		} `json:"expect"`
	}
	require.NoError(t, json.Unmarshal(raw, &cj))
	var want []string
	for _, th := range append([]expectThread{cj.Expect.CrashThread}, cj.Expect.OtherThreads...) {
		want = append(want, th.tailCalls())
	}
	a := analyzeFixture(t, fixture.CorpusCore(t, "c-tailcalls", "x86_64"), dir)
	var got []string
	for _, th := range a.Trace.Threads {
		var names []string
		for _, f := range th.Frames {
			if f.Method == MethodTailCall {
				names = append(names, f.Function)
			}
		}
		got = append(got, strings.Join(names, " "))
	}
	// The crashing thread first; the others in any order.
	require.Equal(t, want[0], got[0], "crashing thread")
	sort.Strings(want[1:])
	sort.Strings(got[1:])
	require.Equal(t, want[1:], got[1:])
	require.Equal(t, "SIGSEGV in m_leaf (main.c:78)", a.Title)
}

type expectThread struct {
	Frames []struct {
		Function string `json:"function"`
		Tailcall bool   `json:"tailcall"`
	} `json:"frames"`
}

func (e expectThread) tailCalls() string {
	var names []string
	for _, f := range e.Frames {
		if f.Tailcall {
			names = append(names, f.Function)
		}
	}
	return strings.Join(names, " ")
}

func describeFrames(frames []Frame) string {
	var sb strings.Builder
	for i, f := range frames {
		fmt.Fprintf(&sb, "  #%d %s %s %s:%d %s\n", i, f.PC, f.Function, filepath.Base(f.File), f.Line, f.Method)
	}
	return sb.String()
}
