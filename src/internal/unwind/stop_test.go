package unwind_test

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/device/capture"
	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/unwind"
	"meta-memfault-go/internal/unwind/cfi"
)

// recursionThread returns the thread parked under 201 recurse frames.
func recursionThread(t *testing.T, c *core, mods unwind.Modules) elfcore.Thread {
	h := c.core.Header
	for _, th := range c.proc.Threads {
		if len(unwind.Walk(h.Machine, h.Class, th.Regs, c.mem, mods, unwind.Options{}).Frames) > 200 {
			return th
		}
	}
	t.Fatal("no thread with more than 200 frames")
	return elfcore.Thread{}
}

func TestStopReasons(t *testing.T) {
	fx := fixtures[0]
	c := loadFixture(t, fx.arch)
	mods, _ := modules(t, fx, c)
	h := c.core.Header
	rec := recursionThread(t, c, mods)

	t.Run("end of stack", func(t *testing.T) {
		res := unwind.Walk(h.Machine, h.Class, rec.Regs, c.mem, mods, unwind.Options{})
		require.Equal(t, "end of stack", res.Stop)
		require.Equal(t, unwind.MethodContext, res.Frames[0].Method)
		for _, f := range res.Frames[1:] {
			require.Equal(t, unwind.MethodCFI, f.Method)
			require.NotZero(t, f.CFA)
		}
	})
	t.Run("limit of frames", func(t *testing.T) {
		res := unwind.Walk(h.Machine, h.Class, rec.Regs, c.mem, mods, unwind.Options{MaxFrames: 50})
		require.Equal(t, "limit of 50 frames", res.Stop)
		require.Len(t, res.Frames, 50)
	})
	t.Run("memory unreadable", func(t *testing.T) {
		// A device that keeps only 2 KiB of each stack.
		res, err := capture.Threads(capture.Input{Core: c.core, Proc: c.proc, Mem: c.mem}, 2<<10)
		require.NoError(t, err)
		var buf bytes.Buffer
		_, err = res.Layout.Write(&buf, c.mem)
		require.NoError(t, err)
		small := readCore(t, buf.Bytes())
		smallMods, _ := modules(t, fx, small)
		r := unwind.Walk(h.Machine, h.Class, rec.Regs, small.mem, smallMods, unwind.Options{})
		require.Regexp(t, `^memory at 0x[0-9a-f]+ unreadable$`, r.Stop)
		require.Greater(t, len(r.Frames), 10)
	})
	t.Run("no unwind information", func(t *testing.T) {
		// Modules without tables: the frame pointer fallback finds nothing (-O1 code keeps no
		// frame pointers) and the walk stops naming the module.
		bare := unwind.ModulesFromCore(c.proc, c.mem, h.Class, h.ByteOrder())
		for _, m := range bare {
			m.Tables = nil
		}
		set := unwind.NewModuleSet(bare)
		for _, th := range c.proc.Threads {
			r := unwind.Walk(h.Machine, h.Class, th.Regs, c.mem, set, unwind.Options{})
			require.NotEmpty(t, r.Frames)
			require.Equal(t, th.PC(c.proc.Arch), r.Frames[0].PC)
			if !strings.HasPrefix(r.Stop, "no unwind information for ") {
				require.Equal(t, "end of stack", r.Stop)
			}
			t.Logf("thread %d: %d frames, %s", th.TID, len(r.Frames), r.Stop)
		}
		r := unwind.Walk(h.Machine, h.Class, rec.Regs, c.mem, set, unwind.Options{})
		require.Regexp(t, `^no unwind information for 0x[0-9a-f]+ \(/.*libc\.so\.6\+0x[0-9a-f]+\)$`, r.Stop)
		r = unwind.Walk(h.Machine, h.Class, rec.Regs, c.mem, nil, unwind.Options{})
		require.Regexp(t, `^no unwind information for 0x[0-9a-f]+ \(no module\)$`, r.Stop)
	})
	t.Run("unsupported machine", func(t *testing.T) {
		r := unwind.Walk(elf.EM_MIPS, elf.ELFCLASS32, rec.Regs, c.mem, mods, unwind.Options{})
		require.Contains(t, r.Stop, "unsupported machine")
		require.Empty(t, r.Frames)
	})
	t.Run("wrong register count", func(t *testing.T) {
		r := unwind.Walk(h.Machine, h.Class, rec.Regs[:5], c.mem, mods, unwind.Options{})
		require.Contains(t, r.Stop, "5 registers")
	})
}

// flatMemory is process memory held in one slice.
type flatMemory struct {
	base uint64
	b    []byte
}

func (m *flatMemory) ReadMemory(p []byte, addr uint64) (int, error) {
	if addr < m.base || addr-m.base >= uint64(len(m.b)) {
		return 0, errors.New("unmapped")
	}
	n := copy(p, m.b[addr-m.base:])
	if n < len(p) {
		return n, errors.New("unmapped")
	}
	return n, nil
}

// ehFrame builds a .eh_frame at address 0 with one x86-64 CIE and one FDE for [0x1000, 0x2000)
// whose instructions are insns.
func ehFrame(t *testing.T, insns []byte) *cfi.Table {
	le := binary.LittleEndian
	cie := []byte{0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 16, 1, cfi.PEUdata4}
	for (len(cie)+4)%8 != 0 {
		cie = append(cie, 0)
	}
	sec := le.AppendUint32(nil, uint32(len(cie)))
	sec = append(sec, cie...)
	fde := le.AppendUint32(nil, uint32(len(sec)+4))
	fde = le.AppendUint32(fde, 0x1000)
	fde = le.AppendUint32(fde, 0x1000)
	fde = append(append(fde, 0), insns...)
	for (len(fde)+4)%8 != 0 {
		fde = append(fde, 0)
	}
	sec = le.AppendUint32(sec, uint32(len(fde)))
	sec = append(sec, fde...)
	sec = le.AppendUint32(sec, 0)
	tab, err := cfi.ParseEHFrame(sec, cfi.Config{Order: le, AddrSize: 8})
	require.NoError(t, err)
	return tab
}

func x86Regs(pc, sp, bp uint64) []uint64 {
	a := elfcore.ArchFor(elf.EM_X86_64, elf.ELFCLASS64)
	regs := make([]uint64, len(a.Regs))
	regs[a.PC], regs[a.SP], regs[a.FP] = pc, sp, bp
	return regs
}

// TestStopOnBadTables runs the walker on hand-made tables that describe impossible stacks.
func TestStopOnBadTables(t *testing.T) {
	le := binary.LittleEndian
	stack := &flatMemory{base: 0x7000, b: make([]byte, 0x1000)}
	for i := 0; i < len(stack.b); i += 8 {
		le.PutUint64(stack.b[i:], 0x1800) // every slot holds a pc inside the FDE
	}
	mod := &unwind.Module{Start: 0x1000, End: 0x2000, Path: "/synthetic"}
	set := unwind.NewModuleSet([]*unwind.Module{mod})
	cases := []struct {
		name  string
		insns []byte
		stop  string
	}{
		// CFA = rsp+0, return address at CFA-0: the caller has the same pc and sp.
		{"same frame again", []byte{0x0c, 7, 0, 0x90, 0}, "not advancing"},
		// CFA = rsp-16: the caller's stack pointer is below the callee's.
		{"stack going down", []byte{0x0c, 7, 0, 0x0e, 0, 0x11, 16, 2, 0x13, 2}, "not advancing"},
		// CFA from a register the frame does not know.
		{"unknown CFA register", []byte{0x0c, 17, 8}, "CFI for 0x1800 (/synthetic+0x1800): CFA: register 17 is unknown"},
		// Return address read from unmapped memory.
		{"unreadable return address", []byte{0x0c, 7, 0x80, 0x40, 0x90, 0}, "memory at 0x9800 unreadable"},
		// Return address column undefined.
		{"outermost frame", []byte{0x0c, 7, 8, 0x07, 16}, "end of stack"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mod.Tables = unwind.NewTables(ehFrame(t, tc.insns), nil, nil)
			regs := x86Regs(0x1800, 0x7800, 0)
			r := unwind.Walk(elf.EM_X86_64, elf.ELFCLASS64, regs, stack, set, unwind.Options{})
			require.Equal(t, tc.stop, r.Stop, "%v", r.Frames)
		})
	}
	t.Run("frame pointer loop", func(t *testing.T) {
		mod.Tables = nil
		// rbp = 0x7100 -> {0x7200, pc}, 0x7200 -> {0x7100, pc}: the chain goes back down.
		le.PutUint64(stack.b[0x100:], 0x7200)
		le.PutUint64(stack.b[0x200:], 0x7100)
		r := unwind.Walk(elf.EM_X86_64, elf.ELFCLASS64, x86Regs(0x1800, 0x7000, 0x7100), stack, set, unwind.Options{})
		require.Len(t, r.Frames, 3)
		require.Equal(t, unwind.MethodFramePointer, r.Frames[1].Method)
		require.Equal(t, "no unwind information for 0x1800 (/synthetic+0x1800)", r.Stop)
	})
}

func TestModuleSet(t *testing.T) {
	a := &unwind.Module{Start: 0x1000, End: 0x9000, Path: "a"} // with a hole holding c
	b := &unwind.Module{Start: 0xa000, End: 0xb000, Path: "b"}
	c := &unwind.Module{Start: 0x4000, End: 0x5000, Path: "c"}
	s := unwind.NewModuleSet([]*unwind.Module{b, a, c, {Start: 5, End: 5}})
	for pc, want := range map[uint64]*unwind.Module{0xfff: nil, 0x1000: a, 0x3fff: a, 0x4000: c, 0x4fff: c, 0x5000: a, 0x8fff: a, 0x9000: nil, 0xa800: b, 0xb000: nil} {
		require.Equal(t, want, s.ModuleAt(pc), "pc %#x", pc)
	}
}

func TestLoadTablesWithoutSections(t *testing.T) {
	// A core is an ELF file without sections.
	c := loadFixture(t, "x86_64")
	f, err := elf.NewFile(bytes.NewReader(c.full))
	require.NoError(t, err)
	tabs, err := unwind.LoadTables(f)
	require.NoError(t, err)
	require.True(t, tabs.Empty())
}

func TestLoadTables(t *testing.T) {
	for _, tc := range []struct {
		path             string
		eh, debug, exidx bool
	}{
		{filepath.Join(coresDir(), "x86_64", "threads"), true, false, false},
		{filepath.Join(coresDir(), "armhf", "threads"), false, true, true},
		{"/usr/arm-linux-gnueabihf/lib/libc.so.6", false, false, true},
		{"/usr/aarch64-linux-gnu/lib/libc.so.6", true, false, false},
	} {
		f, err := elf.Open(tc.path)
		if errors.Is(err, os.ErrNotExist) {
			t.Logf("%s not installed", tc.path)
			continue
		}
		require.NoError(t, err)
		tabs, err := unwind.LoadTables(f)
		require.NoError(t, err)
		require.Equal(t, tc.eh, tabs.EHFrame().Len() > 0, tc.path)
		require.Equal(t, tc.debug, tabs.DebugFrame().Len() > 0, tc.path)
		require.Equal(t, tc.exidx, tabs.EXIDX().Len() > 0, tc.path)
		f.Close()
	}
}
