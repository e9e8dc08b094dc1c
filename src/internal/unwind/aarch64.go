package unwind

import "debug/elf"

// AArch64: DWARF register numbers from "DWARF for the Arm 64-bit Architecture" (AADWARF64),
// section 4.1 (https://github.com/ARM-software/abi-aa/blob/main/aadwarf64/aadwarf64.rst):
// x0-x30 are 0-30, sp 31, pc 32. The return address column is x30; frame records
// (AAPCS64 section 6.4.6, https://github.com/ARM-software/abi-aa/blob/main/aapcs64/aapcs64.rst)
// are x29 pointing at {caller's x29, x30}.
var archAArch64 = &arch{
	machine: elf.EM_AARCH64, class: elf.ELFCLASS64, ptrSize: 8,
	columns: []string{"x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10",
		"x11", "x12", "x13", "x14", "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22",
		"x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30", "sp", "pc"},
	sp: 31, pc: 32,
	cleanPC:      stripPAC,
	framePointer: aarch64FramePointer,
}

// stripPAC removes a pointer authentication code (and a top-byte tag) from a return address:
// Linux user addresses have 48 bits unless a process asks for more with mmap hints.
func stripPAC(pc uint64) uint64 { return pc & (1<<48 - 1) }

func aarch64FramePointer(w *walker, st, next *state) (uint64, error) {
	const fpCol, lrCol = 29, 30
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
	lr, err := w.word(fp + 8)
	if err != nil {
		return 0, err
	}
	// The record sits at the bottom of the callee's frame: fp+16 only bounds the caller's sp.
	*next = state{minSP: fp + 16}
	next.set(fpCol, callerFP)
	next.set(lrCol, lr)
	next.set(32, lr)
	return 0, nil
}
