package unwind

import "debug/elf"

// x86-64: DWARF register numbers from the System V AMD64 psABI, figure 3.36 "DWARF Register
// Number Mapping" (https://gitlab.com/x86-psABIs/x86-64-ABI). Column 16 is the return address
// column, which holds rip.
var archX86_64 = &arch{
	machine: elf.EM_X86_64, class: elf.ELFCLASS64, ptrSize: 8,
	columns: []string{"rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
		"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"},
	sp: 7, pc: 16,
	cleanPC:      identity,
	framePointer: x86FramePointer(6),
}

// x86FramePointer follows the rbp/ebp chain: push %rbp; mov %rsp,%rbp leaves the caller's frame
// pointer at [fp] and the return address at [fp+word].
func x86FramePointer(fpCol int) func(w *walker, st, next *state) (uint64, error) {
	return func(w *walker, st, next *state) (uint64, error) {
		ws := uint64(w.arch.ptrSize)
		fp, ok := st.get(fpCol)
		if !ok {
			return 0, errNoFramePointer
		}
		if err := w.saneFramePointer(st, fp); err != nil {
			return 0, err
		}
		callerFP, err := w.word(fp)
		if err != nil {
			return 0, err
		}
		ra, err := w.word(fp + ws)
		if err != nil {
			return 0, err
		}
		*next = state{}
		cfa := fp + 2*ws
		next.set(w.arch.sp, cfa)
		next.set(fpCol, callerFP)
		next.set(w.arch.pc, ra)
		return cfa, nil
	}
}
