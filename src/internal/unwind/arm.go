package unwind

import (
	"debug/elf"
	"errors"
	"fmt"

	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/unwind/armprologue"
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
	prologue:     armPrologue,
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

// Prologue analysis bounds: the code scanned from a function's start (the analysis stops at the
// first branch, which real prologues reach long before), and the bytes after it read for
// literal pools (ldr rN, [pc, #imm] reaches 4095 bytes ahead).
const (
	maxPrologueScan = 4096
	maxLiteralReach = 4096
)

var errNoFunctionStart = errors.New("no function symbol holds the pc")

// armPrologue unwinds a frame that has no unwind tables (no exidx entry, or EXIDX_CANTUNWIND:
// noreturn and hand-written code) the way gdb's ARM prologue analyzer does: from the start of
// its function (Tables.FuncStart), it follows the code up to the pc or the first branch
// (package armprologue) to learn the frame's size and where lr and the other registers were
// saved. link is the link-time lookup address (pc-1 for a return address).
func armPrologue(w *walker, st, next *state, mod *Module, link uint64) (uint64, error) {
	start, ok := mod.Tables.FuncStart(link)
	if !ok {
		return 0, errNoFunctionStart
	}
	pc, _ := st.get(armPCCol)
	thumb := pc&1 != 0
	end := pc&^1 - mod.Bias // instructions before the pc have run
	align := uint64(4)
	if thumb {
		align = 2
	}
	if start%align != 0 || end < start {
		return 0, fmt.Errorf("function start %#x does not fit the pc", start)
	}
	scan := min(end-start, maxPrologueScan)
	code := w.readCode(mod, start, int(scan)+maxLiteralReach)
	if uint64(len(code)) < scan {
		return 0, fmt.Errorf("code at %#x unreadable", start+uint64(len(code)))
	}
	fr, err := armprologue.Analyze(code, int(scan), thumb, w.order)
	if err != nil {
		return 0, fmt.Errorf("function at %#x: %w", start, err)
	}
	c, _, ok := fr.CFA(func(r int) (uint32, bool) {
		v, ok := st.get(r)
		return uint32(v), ok
	})
	if !ok {
		return 0, fmt.Errorf("function at %#x: no register holds the frame's address", start)
	}
	cfa := uint64(c)
	sp, _ := st.get(armSPCol)
	if cfa < sp || cfa-sp > maxFrameSize || cfa%4 != 0 {
		return 0, fmt.Errorf("function at %#x: frame address %#x does not fit sp %#x", start, cfa, sp)
	}
	var regs state
	for r := 0; r < 16; r++ {
		switch {
		case r == armSPCol || r == armPCCol:
		case fr.Saved&(1<<r) != 0:
			v, err := w.word(cfa + uint64(int64(fr.SavedAt[r])))
			if err != nil {
				return 0, err
			}
			regs.set(r, v)
		case fr.Changed&(1<<r) == 0:
			if v, ok := st.get(r); ok {
				regs.set(r, v)
			}
		}
	}
	if fr.Saved&(1<<14) == 0 && !st.exact {
		// A caller's lr is the return address of its own call: without a save, the return
		// address of this frame is lost.
		return 0, fmt.Errorf("function at %#x: return address not saved before %#x", start, start+uint64(fr.End))
	}
	ra, ok := regs.get(14)
	if !ok {
		return 0, fmt.Errorf("function at %#x: return address unknown", start)
	}
	if c := ra &^ 1; c != 0 && w.mods.ModuleAt(c) == nil {
		return 0, fmt.Errorf("function at %#x: return address %#x in no module", start, ra)
	}
	*next = regs
	next.set(armSPCol, cfa)
	next.set(armPCCol, ra)
	return cfa, nil
}

// readCode reads up to n bytes of a module's code from link-time address addr: from the
// process's memory when it holds them (a device reading /proc/<pid>/mem, a core with the pages),
// else from the module's file.
func (w *walker) readCode(mod *Module, addr uint64, n int) []byte {
	fromMem := make([]byte, n)
	got, _ := w.mem.ReadMemory(fromMem, addr+mod.Bias)
	if got == n {
		return fromMem
	}
	fromFile := make([]byte, n)
	if f := mod.Tables.ReadCode(fromFile, addr); f > got {
		return fromFile[:f]
	}
	return fromMem[:got]
}
