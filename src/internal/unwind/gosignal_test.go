package unwind_test

import (
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/unwind"
)

// goCrash loads the corpus's Go crash (GOTRACEBACK=crash, x86-64: a nil dereference becomes a
// panic, and the runtime re-raises SIGABRT from its signal handler on the signal stack) with
// the binary's tables, and a function to name pcs from its symbol table.
func goCrash(t *testing.T) (*core, *unwind.ModuleSet, func(uint64) string) {
	dir := filepath.Join("..", "..", "testdata", "corpus", "go-crash", "x86_64")
	gunzip := func(name string) []byte {
		f, err := os.Open(filepath.Join(dir, name))
		require.NoError(t, err)
		defer f.Close()
		zr, err := gzip.NewReader(f)
		require.NoError(t, err)
		b, err := io.ReadAll(zr)
		require.NoError(t, err)
		return b
	}
	c := readCore(t, gunzip("core.gz"))
	bin := filepath.Join(t.TempDir(), "go-crash")
	require.NoError(t, os.WriteFile(bin, gunzip("go-crash.gz"), 0o644))
	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	tabs, err := unwind.LoadTables(f)
	require.NoError(t, err)
	mods := unwind.ModulesFromCore(c.proc, c.mem, c.core.Header.Class, c.core.Header.ByteOrder())
	for _, m := range mods {
		if m.Path == "/go-crash/go-crash" {
			m.Tables = tabs
		}
	}
	syms, err := f.Symbols()
	require.NoError(t, err)
	sort.Slice(syms, func(i, j int) bool { return syms[i].Value < syms[j].Value })
	name := func(pc uint64) string {
		i := sort.Search(len(syms), func(i int) bool { return syms[i].Value > pc })
		if i == 0 || pc >= syms[i-1].Value+max(syms[i-1].Size, 1) {
			return "??"
		}
		return syms[i-1].Name
	}
	return c, unwind.NewModuleSet(mods), name
}

// TestGoSignalFrame: Go's signal restorer has no CFI; the walker recognises it by its code
// (mov $15,%rax; syscall), marks it as a signal frame, and continues with the interrupted
// registers from the ucontext, down to main.main as gdb does.
func TestGoSignalFrame(t *testing.T) {
	c, set, name := goCrash(t)
	th := c.proc.Threads[0]
	r := unwind.Walk(elf.EM_X86_64, elf.ELFCLASS64, th.Regs, c.mem, set, unwind.Options{})
	var names []string
	sig := -1
	for i, f := range r.Frames {
		names = append(names, name(f.PC))
		if f.Signal {
			require.Equal(t, -1, sig, "one signal frame")
			sig = i
		}
	}
	require.NotEqual(t, -1, sig, "%v", names)
	require.Equal(t, "runtime.sigreturn__sigaction.abi0", names[sig])
	require.Equal(t, unwind.MethodSigcontext, r.Frames[sig+1].Method)
	require.Equal(t, "runtime.raise.abi0", names[sig+1], "the interrupted pc is named as is, not as a return address")
	require.Contains(t, names[sig+1:], "runtime.sigpanic")
	require.Contains(t, names[sig+1:], "main.main")
	require.Equal(t, "end of stack", r.Stop, "%v", names)
}

// TestFramelessStep: a pc in no module (here the garbage return address runtime.mcall reads
// after switching stacks; in C, the call of a null function pointer) is taken as a function
// not yet set up: the return address is at the stack pointer. gdb continues the same way into
// runtime.newproc, runtime.mstart and runtime.rt0_go.
func TestFramelessStep(t *testing.T) {
	c, set, name := goCrash(t)
	var got []string
	for _, th := range c.proc.Threads {
		if th.TID != 22872 {
			continue
		}
		r := unwind.Walk(elf.EM_X86_64, elf.ELFCLASS64, th.Regs, c.mem, set, unwind.Options{})
		for _, f := range r.Frames {
			got = append(got, name(f.PC)+"/"+string(f.Method))
		}
	}
	require.Equal(t, []string{"runtime.futex.abi0/context", "runtime.futexsleep/cfi",
		"runtime.notesleep/cfi", "runtime.stopm/cfi", "runtime.findRunnable/cfi",
		"runtime.schedule/cfi", "runtime.park_m/cfi", "runtime.mcall/cfi", "??/cfi",
		"runtime.newproc.abi0/frameless", "runtime.mstart.abi0/cfi", "runtime.rt0_go.abi0/cfi", "??/cfi"}, got)

	// A call through a null function pointer: pc 0, the caller's return address on top of
	// the stack.
	le := binary.LittleEndian
	stack := &flatMemory{base: 0x7000, b: make([]byte, 0x100)}
	le.PutUint64(stack.b[0x80:], 0x1234)
	mods := unwind.NewModuleSet([]*unwind.Module{{Start: 0x1000, End: 0x2000, Path: "/synthetic"}})
	r := unwind.Walk(elf.EM_X86_64, elf.ELFCLASS64, x86Regs(0, 0x7080, 0), stack, mods, unwind.Options{})
	require.GreaterOrEqual(t, len(r.Frames), 2, r.Stop)
	require.Equal(t, unwind.Frame{PC: 0x1234, CFA: 0, Method: unwind.MethodFrameless}, unwind.Frame{PC: r.Frames[1].PC, Method: r.Frames[1].Method})
	require.Equal(t, uint64(0x7088), r.Frames[0].CFA)
}
