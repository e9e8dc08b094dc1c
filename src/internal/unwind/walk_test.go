package unwind_test

import (
	"debug/elf"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/unwind"
)

// walkAll walks every thread of a core.
func walkAll(c *core, mods unwind.Modules) map[uint32]unwind.Result {
	out := map[uint32]unwind.Result{}
	h := c.core.Header
	for _, th := range c.proc.Threads {
		out[th.TID] = unwind.Walk(h.Machine, h.Class, th.Regs, c.mem, mods, unwind.Options{})
	}
	return out
}

// TestFixturesMatchGDB walks every thread of every fixture core and requires gdb's pc for every
// frame gdb shows.
func TestFixturesMatchGDB(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.arch, func(t *testing.T) {
			c := loadFixture(t, fx.arch)
			mods, skipped := modules(t, fx, c)
			if len(skipped) > 0 {
				t.Skipf("gdb-full.txt was made with libraries this machine does not have: %v", skipped)
			}
			gdb := parseGDB(t, filepath.Join(coresDir(), fx.arch, "gdb-full.txt"))
			require.Len(t, gdb, len(c.proc.Threads))
			results := walkAll(c, mods)
			matched, total := 0, 0
			recursion := false
			for _, th := range c.proc.Threads {
				res := results[th.TID]
				want := physical(gdb[th.TID], th.PC(c.proc.Arch))
				total += len(want)
				t.Logf("thread %d: %d frames (gdb %d), stop: %s", th.TID, len(res.Frames), len(want), res.Stop)
				n, tail := 0, 0
				for i, j := 0, 0; i < len(want); i++ {
					if j < len(res.Frames) && res.Frames[j].PC == want[i].PC {
						n++
						j++
						continue
					}
					if i > 0 && !afterCall(t, fx, mods, c.core.Header.Machine, want[i].PC) {
						t.Logf("thread %d: gdb frame #%d %#x %s follows no call: a frame gdb synthesized for a tail call", th.TID, want[i].Num, want[i].PC, want[i].Func)
						tail++
						continue
					}
					break
				}
				matched += n
				total -= tail
				if n+tail != len(want) {
					t.Errorf("thread %d: %d of %d frames match gdb; want %v\ngot (stop %q):\n%s", th.TID, n, len(want), want, res.Stop, describe(res.Frames))
				}
				if strings.Contains(strings.Join(funcs(gdb[th.TID]), " "), "recurse") {
					rec := inFunction(t, fx, mods, res.Frames, "recurse")
					t.Logf("thread %d: %d recurse frames", th.TID, rec)
					require.GreaterOrEqual(t, rec, 201, "recurse frames of thread %d", th.TID)
					recursion = true
				}
			}
			require.True(t, recursion, "the recursion thread was found")
			t.Logf("%s: %d of %d gdb frames matched", fx.arch, matched, total)
		})
	}
}

// inFunction counts the frames whose call site lies in the named function of the fixture
// program, by its symbol table.
func inFunction(t *testing.T, fx fixture, mods unwind.Modules, frames []unwind.Frame, name string) int {
	f, err := elf.Open(filepath.Join(coresDir(), fx.arch, "threads"))
	require.NoError(t, err)
	defer f.Close()
	syms, err := f.Symbols()
	require.NoError(t, err)
	var lo, hi uint64
	for _, s := range syms {
		if s.Name == name && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			lo, hi = s.Value&^1, s.Value&^1+s.Size
		}
	}
	require.NotZero(t, hi, "symbol %s", name)
	n := 0
	for i, fr := range frames {
		site := fr.PC
		if i > 0 {
			site-- // a return address: the call is before it
		}
		m := mods.ModuleAt(site)
		if m != nil && filepath.Base(m.Path) == "threads" && site-m.Bias >= lo && site-m.Bias < hi {
			n++
		}
	}
	return n
}

func funcs(fr []gdbFrame) []string {
	var out []string
	for _, f := range fr {
		out = append(out, f.Func)
	}
	return out
}

// TestFramePointerFallbackAArch64 drops every module's CFI: AArch64 code keeps frame records
// (x29) even at -O1, so the frame pointer chain alone must find gdb's frames. The one known
// gap is a leaf function at frame 0 (crash_segv), which saves no frame record: its caller is
// only in x30, which a frame pointer walk does not consult, so that caller is skipped.
func TestFramePointerFallbackAArch64(t *testing.T) {
	fx := fixtures[1]
	require.Equal(t, "aarch64", fx.arch)
	c := loadFixture(t, fx.arch)
	mods, skipped := modules(t, fx, c)
	if len(skipped) > 0 {
		t.Skipf("libraries missing: %v", skipped)
	}
	for _, m := range mods.Modules() {
		m.Tables = nil
	}
	gdb := parseGDB(t, filepath.Join(coresDir(), fx.arch, "gdb-full.txt"))
	matched, total := 0, 0
	for tid, res := range walkAll(c, mods) {
		var th = c.proc.Threads[0]
		for _, x := range c.proc.Threads {
			if x.TID == tid {
				th = x
			}
		}
		want := physical(gdb[tid], th.PC(c.proc.Arch))
		if tid == c.proc.Threads[0].TID {
			want = append(want[:1:1], want[2:]...) // the leaf crash_segv's caller
		}
		var got []uint64
		for i, f := range res.Frames {
			got = append(got, f.PC)
			if i > 0 {
				require.Equal(t, unwind.MethodFramePointer, f.Method)
			}
		}
		var wantPCs []uint64
		for _, w := range want {
			wantPCs = append(wantPCs, w.PC)
		}
		require.GreaterOrEqual(t, len(got), len(wantPCs), "thread %d: %s", tid, res.Stop)
		require.Equal(t, wantPCs, got[:len(wantPCs)], "thread %d", tid)
		matched += len(wantPCs)
		total += len(physical(gdb[tid], 0))
	}
	t.Logf("aarch64 by frame records only: %d of %d gdb frames", matched, total)
}
