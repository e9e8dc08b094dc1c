package elfcore

import "debug/elf"

// Arch describes the general-purpose register set that a core's NT_PRSTATUS notes carry for one
// ELF machine. It is keyed by the core's e_machine and class, never by the host's GOARCH, so a
// server on amd64 reads arm64 cores.
type Arch struct {
	Name       string
	Machine    elf.Machine
	Class      elf.Class
	Regs       []string // pr_reg, in kernel order
	RegSize    int      // bytes per register in pr_reg
	RegsOffset int      // offset of pr_reg inside struct elf_prstatus
	SP, PC, FP int      // indexes into Regs
	// RedZone is how far below the stack pointer a leaf function may keep data (the x86-64
	// System V ABI's 128-byte red zone).
	RedZone uint64
}

// Register sets. pr_reg follows struct elf_prstatus_common, whose size is 112 bytes with 64-bit
// longs and 72 with 32-bit ones (include/linux/elfcore.h).
var (
	// arch/x86/include/asm/user_64.h, struct user_regs_struct.
	archX86_64 = &Arch{
		Name: "x86_64", Machine: elf.EM_X86_64, Class: elf.ELFCLASS64,
		Regs: []string{"r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
			"rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss",
			"fs_base", "gs_base", "ds", "es", "fs", "gs"},
		RegSize: 8, RegsOffset: 112, SP: 19, PC: 16, FP: 4, RedZone: 128,
	}
	// arch/arm64/include/uapi/asm/ptrace.h, struct user_pt_regs.
	archAArch64 = &Arch{
		Name: "aarch64", Machine: elf.EM_AARCH64, Class: elf.ELFCLASS64,
		Regs: []string{"x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10",
			"x11", "x12", "x13", "x14", "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22",
			"x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30", "sp", "pc", "pstate"},
		RegSize: 8, RegsOffset: 112, SP: 31, PC: 32, FP: 29,
	}
	// arch/arm/include/asm/user.h, struct user_regs (also what arm64 writes for a compat task).
	archARM = &Arch{
		Name: "arm", Machine: elf.EM_ARM, Class: elf.ELFCLASS32,
		Regs: []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10",
			"r11", "r12", "sp", "lr", "pc", "cpsr", "orig_r0"},
		RegSize: 4, RegsOffset: 72, SP: 13, PC: 15, FP: 11,
	}
	// arch/x86/include/asm/user_32.h, struct user_regs_struct (also for ia32 tasks on x86-64).
	archI386 = &Arch{
		Name: "i386", Machine: elf.EM_386, Class: elf.ELFCLASS32,
		Regs: []string{"ebx", "ecx", "edx", "esi", "edi", "ebp", "eax", "ds", "es", "fs",
			"gs", "orig_eax", "eip", "cs", "eflags", "esp", "ss"},
		RegSize: 4, RegsOffset: 72, SP: 15, PC: 12, FP: 5,
	}
)

var arches = []*Arch{archX86_64, archAArch64, archARM, archI386}

// ArchFor returns the register layout of a machine and class, or nil if unsupported.
func ArchFor(m elf.Machine, c elf.Class) *Arch {
	for _, a := range arches {
		if a.Machine == m && a.Class == c {
			return a
		}
	}
	return nil
}
