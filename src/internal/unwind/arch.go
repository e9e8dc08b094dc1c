package unwind

import (
	"debug/elf"

	"meta-memfault-go/internal/elfcore"
)

// maxColumns is the number of DWARF register columns the walker can track (a bit mask).
const maxColumns = 64

// arch is what the walker needs to know about one ELF machine: how DWARF register numbers map
// to the core's registers, and its frame pointer convention. One file per machine
// (x86_64.go, aarch64.go, arm.go, i386.go: not arch_arm.go, which Go would
// build only for GOARCH=arm) defines it with a link to its ABI document.
type arch struct {
	machine elf.Machine
	class   elf.Class
	ptrSize int
	// columns names the register of every DWARF column the walker tracks, in elfcore's
	// spelling; "" for a column without a core register.
	columns []string
	sp, pc  int // DWARF columns of the stack pointer and the program counter
	// cleanPC turns a register or stack value into the address of an instruction (ARM: clear
	// the Thumb bit; AArch64: strip a pointer authentication code).
	cleanPC func(uint64) uint64
	// start adjusts frame 0 after the core's registers are loaded (ARM: Thumb state from CPSR).
	start func(core []uint64, a *elfcore.Arch, st *state)
	// framePointer unwinds one frame by the frame pointer convention into next and returns the
	// frame's CFA (0 when the convention does not give it).
	framePointer func(w *walker, st, next *state) (uint64, error)
	// prologue, when set, unwinds a frame whose pc has no unwind tables by analysing the code
	// of its function (in mod, holding link, the link-time lookup address) into next, and
	// returns the frame's CFA.
	prologue func(w *walker, st, next *state, mod *Module, link uint64) (uint64, error)

	fromCore []int // elfcore register index -> DWARF column, -1 for none
}

var arches = []*arch{archX86_64, archAArch64, archARM, archI386}

func init() {
	for _, a := range arches {
		ea := elfcore.ArchFor(a.machine, a.class)
		if len(a.columns) > maxColumns || ea == nil {
			panic("unwind: bad arch table for " + a.machine.String())
		}
		a.fromCore = make([]int, len(ea.Regs))
		for i, name := range ea.Regs {
			a.fromCore[i] = -1
			for col, c := range a.columns {
				if c == name {
					a.fromCore[i] = col
				}
			}
		}
	}
}

func archFor(m elf.Machine, c elf.Class) *arch {
	for _, a := range arches {
		if a.machine == m && a.class == c {
			return a
		}
	}
	return nil
}

func identity(pc uint64) uint64 { return pc }
