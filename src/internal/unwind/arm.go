package unwind

import (
	"debug/elf"

	"meta-memfault-go/internal/elfcore"
)

// 32-bit ARM: DWARF register numbers from "DWARF for the Arm Architecture" (AADWARF32),
// section 4.1 (https://github.com/ARM-software/abi-aa/blob/main/aadwarf32/aadwarf32.rst): r0-r15
// are 0-15. Unwind tables without DWARF are the EHABI's (package cfi). A pc with bit 0 set is
// Thumb code; the walker keeps the bit in its registers and clears it for lookups and output.
var archARM = &arch{
	machine: elf.EM_ARM, class: elf.ELFCLASS32, ptrSize: 4,
	columns: []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10",
		"r11", "r12", "sp", "lr", "pc"},
	sp: 13, pc: 15,
	cleanPC:      func(pc uint64) uint64 { return pc &^ 1 },
	start:        armStart,
	framePointer: armFramePointer,
}

// armStart marks frame 0 as Thumb code when CPSR's T bit (bit 5) is set.
func armStart(core []uint64, a *elfcore.Arch, st *state) {
	for i, name := range a.Regs {
		if name == "cpsr" && i < len(core) && core[i]&(1<<5) != 0 {
			if pc, ok := st.get(15); ok {
				st.set(15, pc|1)
			}
		}
	}
}

// armFramePointer follows the frame pointer chain as far as it is sane: Thumb code built by
// gcc keeps r7 pointing at {caller's r7, lr}; ARM code uses r11, gcc pointing at the saved lr
// with the caller's r11 just below ({fp, lr} pushed, fp = sp + 4), clang pointing at
// {caller's r11, lr}. A candidate is accepted only when its return address lies in a module.
// Code that uses no frame pointer (the default at -O1 and above) makes every candidate fail.
func armFramePointer(w *walker, st, next *state) (uint64, error) {
	pc, _ := st.get(15)
	type layout struct {
		fpCol        int
		callerFP, ra int64 // offsets from fp
		cfaFromFP    int64
	}
	var layouts []layout
	if pc&1 != 0 {
		layouts = []layout{{7, 0, 4, 8}}
	} else {
		layouts = []layout{{11, -4, 0, 4}, {11, 0, 4, 8}}
	}
	err := errNoFramePointer
	for _, l := range layouts {
		fp, ok := st.get(l.fpCol)
		if !ok {
			continue
		}
		if err = w.saneFramePointer(st, fp); err != nil {
			continue
		}
		var callerFP, ra uint64
		if callerFP, err = w.word(fp + uint64(l.callerFP)); err != nil {
			continue
		}
		if ra, err = w.word(fp + uint64(l.ra)); err != nil {
			continue
		}
		if ra != 0 && w.mods.ModuleAt(ra&^1) == nil {
			err = errNoFramePointer
			continue
		}
		*next = state{}
		cfa := (fp + uint64(l.cfaFromFP)) & 0xffffffff
		next.set(13, cfa)
		next.set(l.fpCol, callerFP)
		next.set(14, ra)
		next.set(15, ra)
		return cfa, nil
	}
	return 0, err
}
