package unwind_test

import (
	"debug/elf"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/unwind"
)

// The armhf libraries of the corpus cores (Debian libc6-armhf-cross 2.36-8cross1,
// libstdc++6-armhf-cross 12.2.0-14cross1).
const (
	armSysroot     = "/usr/arm-linux-gnueabihf"
	armLibc        = armSysroot + "/lib/libc.so.6"
	armLibcBuildID = "99691551bcc5fa773b974f390398a90275f12724"
)

// armLibcTables loads the unwind tables of the corpus' armhf libc, or skips.
func armLibcTables(t *testing.T) *unwind.Tables {
	t.Helper()
	f, err := elf.Open(armLibc)
	if err != nil {
		t.Skipf("%s: %v", armLibc, err)
	}
	defer f.Close()
	if id := fileBuildID(f); id != armLibcBuildID {
		t.Skipf("%s has build-id %s, the corpus' has %s", armLibc, id, armLibcBuildID)
	}
	tab, err := unwind.LoadTables(f)
	require.NoError(t, err)
	return tab
}

// TestPrologueCppExceptionARM walks the corpus core cpp-exception/armhf: a C++ exception that
// reaches std::terminate, whose handler calls abort. abort (libc, noreturn Thumb-2) has no exidx
// entry and std::terminate (libstdc++) an EXIDX_CANTUNWIND one: both frames are unwound by
// their prologues, as gdb's prologue analyzer does, and the walk matches gdb to main.
func TestPrologueCppExceptionARM(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "corpus", "cpp-exception", "armhf")
	fx := fixture{arch: "armhf", sysroot: armSysroot, program: filepath.Join(dir, "cpp-exception")}
	c := loadCoreGz(t, filepath.Join(dir, "core.gz"))
	mods, skipped := modules(t, fx, c)
	if len(skipped) > 0 {
		t.Skipf("gdb-full.txt was made with libraries this machine does not have: %v", skipped)
	}
	gdb := parseGDB(t, filepath.Join(dir, "gdb-full.txt"))
	th := c.proc.Threads[0]
	want := physical(gdb[th.TID], th.PC(c.proc.Arch))
	require.Len(t, want, 11)
	h := c.core.Header
	res := unwind.Walk(h.Machine, h.Class, th.Regs, c.mem, mods, unwind.Options{})
	t.Logf("stop: %s\n%s", res.Stop, describe(res.Frames))
	require.GreaterOrEqual(t, len(res.Frames), len(want))
	for i, w := range want {
		require.Equal(t, w.PC, res.Frames[i].PC, "frame #%d (%s)", i, w.Func)
	}
	// #4 is the caller of abort (#3), #7 the caller of std::terminate (#6).
	for i, f := range res.Frames[:len(want)] {
		if i == 4 || i == 7 {
			require.Equal(t, unwind.MethodPrologue, f.Method, "frame #%d", i)
		} else {
			require.NotEqual(t, unwind.MethodPrologue, f.Method, "frame #%d", i)
		}
	}
	// abort: push {r7, lr}; sub sp, #144. std::terminate: push {r3, lr}. A frame's stack
	// pointer is the CFA of the frame it called.
	require.EqualValues(t, 152, res.Frames[3].CFA-res.Frames[2].CFA, "abort's frame size")
	require.EqualValues(t, 8, res.Frames[6].CFA-res.Frames[5].CFA, "std::terminate's frame size")
}

// TestFuncStartARM looks up function starts in the real libc: by .dynsym symbol size, refusing
// a pc that no symbol covers (the static start_thread, inside one EXIDX_CANTUNWIND range with
// other functions).
func TestFuncStartARM(t *testing.T) {
	tab := armLibcTables(t)
	for _, c := range []struct {
		name      string
		pc, start uint64
		ok        bool
	}{
		{"abort, at its call to raise", 0x1e0ab, 0x1e008, true},
		{"abort's first instruction", 0x1e008, 0x1e008, true},
		{"__aeabi_assert's last instruction, a noreturn call", 0x1e633, 0x1e62c, true},
		{"__aeabi_localeconv, right after it", 0x1e634, 0x1e634, true},
		{"start_thread (static)", 0x5ccf5, 0, false},
		{"below .text", 0x100, 0, false},
	} {
		start, ok := tab.FuncStart(c.pc)
		require.Equal(t, c.ok, ok, c.name)
		require.Equal(t, c.start, start, c.name)
	}
	code := make([]byte, 4)
	require.Equal(t, 4, tab.ReadCode(code, 0x1e008))
	require.Equal(t, []byte{0x4e, 0x4a, 0x1d, 0xee}, code, "ldr r2, [pc, #312]; mrc ...")
	require.Zero(t, tab.ReadCode(code, 0x10), "no code in the ELF header")
}

// stackMemory is a thread's stack: words at consecutive addresses from base.
type stackMemory struct {
	base  uint64
	words []uint32
}

func (m stackMemory) ReadMemory(p []byte, addr uint64) (int, error) {
	n := 0
	for ; n < len(p); n++ {
		a := addr + uint64(n)
		if a < m.base || a-m.base >= uint64(4*len(m.words)) {
			return n, elfcore.ErrNotInCore
		}
		off := a - m.base
		p[n] = byte(m.words[off/4] >> (8 * (off % 4)))
	}
	return n, nil
}

// TestPrologueReturnAtFunctionEnd: a return address right after a noreturn call that ends its
// function is the next function's start, so the walker looks up the function at pc-1 (here:
// libc's __aeabi_assert, push {r3, lr}; movs r3, #0; bl __assert_fail, and right after it
// __aeabi_localeconv, a lone b.w). The thread stopped at that bl in a second, recursive
// activation of __aeabi_assert, so both frames have only their prologue to go by.
func TestPrologueReturnAtFunctionEnd(t *testing.T) {
	tab := armLibcTables(t)
	const bias = 0xf78b5000
	libc := &unwind.Module{Start: bias, End: bias + 0x10a000, Bias: bias, Path: "/lib/libc.so.6", Tables: tab}
	mods := unwind.NewModuleSet([]*unwind.Module{libc})
	const sp = 0xffb1c000
	stack := stackMemory{base: sp, words: []uint32{
		0x11111111,         // frame 0: r3
		bias + 0x1e634 | 1, // frame 0: lr, the return address at __aeabi_localeconv
		0x22222222,         // frame 1: r3
		0,                  // frame 1: lr, the end of the stack
	}}
	ea := elfcore.ArchFor(elf.EM_ARM, elf.ELFCLASS32)
	regs := make([]uint64, len(ea.Regs))
	for i, name := range ea.Regs {
		switch name {
		case "pc":
			regs[i] = bias + 0x1e630 // the bl
		case "sp":
			regs[i] = sp
		case "cpsr":
			regs[i] = 1 << 5 // Thumb
		case "lr":
			regs[i] = 0x33333333
		}
	}
	res := unwind.Walk(elf.EM_ARM, elf.ELFCLASS32, regs, stack, mods, unwind.Options{})
	require.Equal(t, "end of stack", res.Stop, describe(res.Frames))
	require.Equal(t, []unwind.Frame{
		{PC: bias + 0x1e630, CFA: sp + 8, Method: unwind.MethodContext},
		{PC: bias + 0x1e634, CFA: sp + 16, Method: unwind.MethodPrologue},
	}, res.Frames)
}
