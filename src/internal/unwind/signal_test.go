package unwind_test

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/unwind"
)

// TestSignalFrameX86_64 unwinds through glibc's real __restore_rt (the FDE with augmentation
// "S", whose rules are DWARF expressions over the ucontext on the stack) with a hand-made
// ucontext: the interrupted frame's registers come from the ucontext, and its pc, not being a
// return address, is looked up as is. The interrupted pc is chosen at the start of a function
// whose previous byte no FDE covers, so a pc-1 lookup would find nothing.
func TestSignalFrameX86_64(t *testing.T) {
	const libc = "/lib/x86_64-linux-gnu/libc.so.6"
	f, err := elf.Open(libc)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s not installed", libc)
	}
	require.NoError(t, err)
	defer f.Close()
	tabs, err := unwind.LoadTables(f)
	require.NoError(t, err)
	eh := tabs.EHFrame()
	var restoreRT, target uint64
	for i := 0; i < eh.Len(); i++ {
		fde := eh.FDE(i)
		if fde.CIE.Signal && restoreRT == 0 {
			restoreRT = fde.Start + 1 // glibc starts the FDE one byte early, for pc-1 lookups
		}
		if _, err := eh.FDEFor(fde.Start - 1); err != nil && target == 0 && i > 0 {
			target = fde.Start
		}
	}
	require.NotZero(t, restoreRT, "libc has a signal frame FDE")
	require.NotZero(t, target)

	const bias = 0x7f0000000000
	var end uint64
	for _, p := range f.Progs {
		end = max(end, p.Vaddr+p.Memsz)
	}
	mods := unwind.NewModuleSet([]*unwind.Module{{Start: bias, End: bias + end, Bias: bias, Path: libc, Tables: tabs}})

	// The handler returned into __restore_rt with rsp at the ucontext (struct rt_sigframe
	// without pretcode): uc_mcontext.gregs starts at offset 40, REG_RBP is 10, REG_RSP 15,
	// REG_RIP 16 (sys/ucontext.h).
	stack := &flatMemory{base: 0x7000, b: make([]byte, 0x1000)}
	const uc, interruptedSP = 0x7100, 0x7800
	greg := func(i int, v uint64) { binary.LittleEndian.PutUint64(stack.b[uc+40+8*i-0x7000:], v) }
	greg(10, 0x7a00)
	greg(15, interruptedSP)
	greg(16, bias+target)
	// The interrupted function was just entered: its return address is 0, the end.
	binary.LittleEndian.PutUint64(stack.b[interruptedSP-0x7000:], 0)

	regs := x86Regs(bias+restoreRT, uc, 0)
	r := unwind.Walk(elf.EM_X86_64, elf.ELFCLASS64, regs, stack, mods, unwind.Options{})
	require.Equal(t, "end of stack", r.Stop, "%+v", r.Frames)
	require.Equal(t, []unwind.Frame{
		{PC: bias + restoreRT, CFA: interruptedSP, Method: unwind.MethodContext, Signal: true},
		{PC: bias + target, CFA: interruptedSP + 8, Method: unwind.MethodCFI},
	}, r.Frames)
}
