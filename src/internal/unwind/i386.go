package unwind

import "debug/elf"

// i386: DWARF register numbers from the System V Intel386 psABI, table 2.14 "DWARF Register
// Number Mapping" (https://gitlab.com/x86-psABIs/i386-ABI). Column 8 is the return address
// column, which holds eip.
var archI386 = &arch{
	machine: elf.EM_386, class: elf.ELFCLASS32, ptrSize: 4,
	columns: []string{"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip"},
	sp:      4, pc: 8,
	cleanPC:      identity,
	framePointer: x86FramePointer(5),
}
