package capture

import (
	"debug/elf"
)

// Signal frames. A handler that runs on an alternate signal stack (sigaltstack: every Go
// program, and C programs that catch stack overflows) leaves the interrupted code's stack
// elsewhere: the thread's stack pointer is on the signal stack, and a backtrace that goes
// through the signal frame needs the interrupted stack too. The kernel saved the interrupted
// registers in a ucontext on the signal stack; the threads strategy finds it there and keeps
// the interrupted stack as well.
//
// Only x86-64 frames are recognised so far; the ucontext layouts of the other machines differ.

// maxSignalFrames bounds the nested signal frames followed per thread.
const maxSignalFrames = 8

// x86-64 struct rt_sigframe (arch/x86/include/asm/sigframe.h) from the handler's return
// address: pretcode, then struct ucontext: uc_flags, uc_link, uc_stack {ss_sp, ss_flags,
// ss_size}, uc_mcontext (struct sigcontext: r8-r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp,
// rip, eflags, {cs, gs, fs, ss}, err, trapno, oldmask, cr2, fpstate), offsets in words from uc.
const (
	x64UcFlags   = 0
	x64UcLink    = 1
	x64SSFlags   = 3
	x64RSP       = 5 + 15
	x64RIP       = 5 + 16
	x64Segments  = 5 + 18
	x64FPState   = 5 + 23
	x64UcWords   = x64FPState + 1
	x64UserCS    = 0x33 // __USER_CS: 64-bit user code segment
	maxUcFlags   = 0x7  // UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS
	maxFPStateUp = 64 << 10
)

// signalFrames scans the captured stack [start, end) of a thread for kernel signal frames and
// adds the stack of each interrupted context.
func (t *threads) signalFrames(start, end, maxThreadSize uint64, redZone uint64) {
	if t.in.Core.Header.Machine != elf.EM_X86_64 || t.ws != 8 {
		return
	}
	seen := 0
	start = (start + 7) &^ 7
	const chunk = 4096
	for base := start; base < end && seen < maxSignalFrames; base += chunk {
		n := min(chunk+x64UcWords*8+8, end-base)
		b, err := t.read(base, int(n))
		if err != nil {
			continue
		}
		for off := uint64(8); off+x64UcWords*8 <= n && off < chunk+8 && seen < maxSignalFrames; off += 8 {
			uc := base + off
			w := func(i int) uint64 { return t.word(b[off+uint64(i)*8:]) }
			if !t.isX64Ucontext(uc, w, t.word(b[off-8:])) {
				continue
			}
			seen++
			rsp := w(x64RSP)
			seg, ok := t.loadAt(rsp)
			if !ok {
				continue
			}
			s := rsp - min(redZone, rsp-seg.Vaddr)
			e := min(seg.End(), rsp+maxThreadSize)
			if s >= start && e <= end {
				continue // the interrupted stack is the one already captured
			}
			t.logf("signal frame at %#x: interrupted stack at %#x kept", uc, rsp)
			t.add(s, e)
		}
	}
}

// isX64Ucontext checks a candidate ucontext at uc: the fields the kernel always sets to known
// values, a return address (the handler's restorer) and an interrupted pc in executable
// mappings, and a stack pointer in a mapping.
func (t *threads) isX64Ucontext(uc uint64, w func(int) uint64, pretcode uint64) bool {
	if w(x64UcLink) != 0 || w(x64UcFlags) > maxUcFlags || w(x64Segments)&0xffff != x64UserCS {
		return false
	}
	if f := w(x64SSFlags) & 0xffffffff; f != 0 && f != 1 && f != 2 && f != 1<<31 && f != 1<<31|1 {
		return false
	}
	if fp := w(x64FPState); fp != 0 && (fp <= uc || fp-uc > maxFPStateUp) {
		return false
	}
	if !t.executable(pretcode) || !t.executable(w(x64RIP)) {
		return false
	}
	_, ok := t.loadAt(w(x64RSP))
	return ok
}

func (t *threads) executable(addr uint64) bool {
	p, ok := t.loadAt(addr)
	return ok && p.Flags&elf.PF_X != 0
}
