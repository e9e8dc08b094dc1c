package unwind

import (
	"bytes"
	"debug/elf"
	"fmt"

	"meta-memfault-go/internal/unwind/cfi"
)

// Signal trampolines. When a signal handler returns, it returns into a few instructions that
// call rt_sigreturn (glibc's __restore_rt, musl's, Go's runtime.sigreturn__sigaction), with the
// stack pointer at the ucontext the kernel saved: the interrupted frame's registers are there.
// glibc describes its trampoline with CFI (a CIE with augmentation "S", handled in cfiStep);
// Go and musl give none, so the walker also recognises a trampoline by its code, as gdb does,
// and reads the registers from the ucontext itself.

// sigreturnCode is the instruction sequence of an rt_sigreturn trampoline, per machine.
var sigreturnCode = map[elf.Machine][]byte{
	// x86-64: mov $15,%rax (SYS_rt_sigreturn); syscall. glibc, musl and Go all emit this form.
	elf.EM_X86_64: {0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05},
}

// maxTrampolines bounds the trampolines recorded per file; real files have one or two.
const maxTrampolines = 16

// findTrampolines returns the link-time addresses of the rt_sigreturn trampolines in the
// executable sections of f. Files whose CFI already marks a signal frame need no search.
func findTrampolines(f *elf.File, t *Tables) ([]uint64, error) {
	code := sigreturnCode[f.Machine]
	if code == nil || hasSignalFDE(t.ehFrame) || hasSignalFDE(t.debugFrame) {
		return nil, nil
	}
	var out []uint64
	for _, s := range f.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_EXECINSTR == 0 {
			continue
		}
		b, _, err := sectionData(f, s.Name)
		if err != nil {
			return nil, err
		}
		for off := 0; len(out) < maxTrampolines; {
			i := bytes.Index(b[off:], code)
			if i < 0 {
				break
			}
			out = append(out, s.Addr+uint64(off+i))
			off += i + len(code)
		}
	}
	return out, nil
}

func hasSignalFDE(t *cfi.Table) bool {
	for i := 0; i < t.Len(); i++ {
		if t.FDE(i).CIE.Signal {
			return true
		}
	}
	return false
}

// trampolineAt reports whether pc (a link-time address) is an rt_sigreturn trampoline: its
// first instruction (where the handler returns to) or its system call (a thread stopped in it).
func (t *Tables) trampolineAt(machine elf.Machine, pc uint64) bool {
	if t == nil {
		return false
	}
	code := sigreturnCode[machine]
	for _, a := range t.sigtramps {
		if pc == a || pc == a+uint64(len(code))-2 {
			return true
		}
	}
	return false
}

// x86-64 struct ucontext: uc_flags, uc_link, uc_stack (24 bytes), then uc_mcontext whose
// gregs are r8-r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip (sys/ucontext.h, REG_R8 = 0
// ... REG_RIP = 16), given here as DWARF columns.
const x86_64McontextOffset = 40

var x86_64Gregs = [...]int{8, 9, 10, 11, 12, 13, 14, 15, 5, 4, 6, 3, 1, 0, 2, 7, 16}

// sigcontextStep unwinds a signal trampoline frame st: the ucontext is at its stack pointer.
// It returns the interrupted stack pointer as the trampoline frame's CFA, as glibc's CFI does.
func (w *walker) sigcontextStep(st, next *state) (uint64, error) {
	if w.arch.machine != elf.EM_X86_64 {
		return 0, fmt.Errorf("signal frames of %v are not decoded", w.arch.machine)
	}
	sp, ok := st.get(w.arch.sp)
	if !ok {
		return 0, fmt.Errorf("signal frame: stack pointer unknown")
	}
	*next = state{exact: true, interrupted: true}
	base := sp + x86_64McontextOffset
	for i, col := range x86_64Gregs {
		v, err := w.word(base + uint64(8*i))
		if err != nil {
			return 0, err
		}
		next.set(col, v)
	}
	cfa, _ := next.get(w.arch.sp)
	return cfa, nil
}

// framelessStep is gdb's assumption for code in no known function on x86: the frame has not
// been set up, so the return address is at the stack pointer (the call of a null or wild
// function pointer, or a jump into data). It is accepted only when that address lies in a
// module.
func (w *walker) framelessStep(st, next *state) (uint64, error) {
	if w.arch.machine != elf.EM_X86_64 && w.arch.machine != elf.EM_386 {
		return 0, errNoFramePointer
	}
	sp, ok := st.get(w.arch.sp)
	if !ok {
		return 0, errNoFramePointer
	}
	ra, err := w.word(sp)
	if err != nil {
		return 0, err
	}
	if ra == 0 || w.mods.ModuleAt(ra) == nil {
		return 0, errNoFramePointer
	}
	*next = *st
	next.exact, next.interrupted, next.viaFP, next.minSP = false, false, false, 0
	cfa := w.trunc(sp + uint64(w.arch.ptrSize))
	next.set(w.arch.sp, cfa)
	next.set(w.arch.pc, ra)
	return cfa, nil
}
