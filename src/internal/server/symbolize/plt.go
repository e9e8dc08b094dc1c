package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// PLT stubs have no symbols of their own; gdb (through BFD) names each one
// "sym@plt" after the GOT slot it jumps through, as a zero-sized symbol.
// We do the same for x86-64, i386, AArch64 and 32-bit ARM: decode the stub's
// GOT reference and find the dynamic relocation (JUMP_SLOT or GLOB_DAT) of
// that slot.

// Relocation types naming a GOT slot, per machine.
var gotRelocTypes = map[elf.Machine][2]uint32{
	elf.EM_X86_64:  {uint32(elf.R_X86_64_JMP_SLOT), uint32(elf.R_X86_64_GLOB_DAT)},
	elf.EM_386:     {uint32(elf.R_386_JMP_SLOT), uint32(elf.R_386_GLOB_DAT)},
	elf.EM_AARCH64: {uint32(elf.R_AARCH64_JUMP_SLOT), uint32(elf.R_AARCH64_GLOB_DAT)},
	elf.EM_ARM:     {uint32(elf.R_ARM_JUMP_SLOT), uint32(elf.R_ARM_GLOB_DAT)},
}

// gotNames maps GOT slot addresses to the dynamic symbol names relocated there.
func gotNames(r io.ReaderAt, f *elf.File, fileSize int64, dynsym int, names []string, budget *debugSections) (map[uint64]string, error) {
	types, ok := gotRelocTypes[f.Machine]
	if !ok {
		return nil, nil
	}
	out := map[uint64]string{}
	for _, s := range f.Sections {
		if (s.Type != elf.SHT_REL && s.Type != elf.SHT_RELA) || int(s.Link) != dynsym {
			continue
		}
		data, err := sectionBytes(r, f, s, fileSize, budget)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Name, err)
		}
		order := f.ByteOrder
		var size int
		switch {
		case f.Class == elf.ELFCLASS64 && s.Type == elf.SHT_RELA:
			size = 24
		case f.Class == elf.ELFCLASS64:
			size = 16
		case s.Type == elf.SHT_RELA:
			size = 12
		default:
			size = 8
		}
		for off := 0; off+size <= len(data); off += size {
			var where uint64
			var sym, typ uint32
			if f.Class == elf.ELFCLASS64 {
				where = order.Uint64(data[off:])
				info := order.Uint64(data[off+8:])
				sym, typ = uint32(info>>32), uint32(info)
			} else {
				where = uint64(order.Uint32(data[off:]))
				info := order.Uint32(data[off+4:])
				sym, typ = info>>8, info&0xff
			}
			if (typ == types[0] || typ == types[1]) && sym > 0 && int(sym) < len(names) && names[sym] != "" {
				out[where] = names[sym]
			}
		}
	}
	return out, nil
}

// pltSymbols synthesises "name@plt" symbols for the PLT stubs.
func pltSymbols(r io.ReaderAt, f *elf.File, fileSize int64, dynsym int, names []string, budget *debugSections) ([]symbol, error) {
	got, err := gotNames(r, f, fileSize, dynsym, names, budget)
	if err != nil || len(got) == 0 {
		return nil, err
	}
	var gotPlt uint64 // i386 PIC stubs address the GOT relative to .got.plt
	if s := f.Section(".got.plt"); s != nil {
		gotPlt = s.Addr
	} else if s := f.Section(".got"); s != nil {
		gotPlt = s.Addr
	}
	var out []symbol
	for _, s := range f.Sections {
		switch s.Name {
		case ".plt", ".plt.sec", ".plt.got":
		default:
			continue
		}
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_EXECINSTR == 0 {
			continue
		}
		data, err := sectionBytes(r, f, s, fileSize, budget)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Name, err)
		}
		add := func(off int, slot uint64) {
			if name, ok := got[slot]; ok {
				out = append(out, symbol{
					addr: s.Addr + uint64(off), name: name + "@plt",
					secLo: s.Addr, secHi: s.Addr + uint64(len(data)), isFunc: true,
				})
			}
		}
		switch f.Machine {
		case elf.EM_X86_64, elf.EM_386:
			x86Stubs(f.Machine, s, data, gotPlt, add)
		case elf.EM_AARCH64:
			arm64Stubs(s.Addr, data, f.ByteOrder, add)
		case elf.EM_ARM:
			armStubs(s.Addr, data, f.ByteOrder, add)
		}
	}
	return out, nil
}

// x86Stubs finds the indirect jump of each fixed-size stub:
// ff 25 disp32 (x86-64: rip-relative; i386: absolute) or ff a3 disp32
// (i386 PIC: relative to .got.plt), possibly after endbr and a bnd prefix.
func x86Stubs(m elf.Machine, s *elf.Section, data []byte, gotPlt uint64, add func(int, uint64)) {
	ent := int(s.Entsize)
	switch {
	case ent == 8 || ent == 16:
	case s.Name == ".plt.got":
		ent = 8
	default:
		ent = 16
	}
	for off := 0; off+ent <= len(data); off += ent {
		stub := data[off : off+ent]
		for p := 0; p+6 <= len(stub); p++ {
			if stub[p] != 0xff || (stub[p+1] != 0x25 && stub[p+1] != 0xa3) {
				continue
			}
			disp := binary.LittleEndian.Uint32(stub[p+2:])
			var slot uint64
			switch {
			case m == elf.EM_X86_64 && stub[p+1] == 0x25:
				slot = s.Addr + uint64(off+p+6) + uint64(int64(int32(disp)))
			case m == elf.EM_386 && stub[p+1] == 0x25:
				slot = uint64(disp)
			case m == elf.EM_386:
				slot = uint64(uint32(gotPlt) + disp)
			default:
				continue
			}
			add(off, slot)
			break
		}
	}
}

// arm64Stubs decodes "adrp x16, page; ldr x17, [x16, #off]" in 16-byte
// stubs after the 32-byte PLT header (BTI stubs start with "bti c").
func arm64Stubs(base uint64, data []byte, order binary.ByteOrder, add func(int, uint64)) {
	for off := 0; off+8 <= len(data); off += 4 {
		i0, i1 := order.Uint32(data[off:]), order.Uint32(data[off+4:])
		if i0&0x9f00001f != 0x90000010 || i1&0xffc003ff != 0xf9400211 {
			continue
		}
		immlo, immhi := uint64(i0>>29)&3, uint64(i0>>5)&0x7ffff
		imm := int64((immhi<<2|immlo)<<43) >> 31 // sign-extend 21 bits, times 4096
		pc := base + uint64(off)
		slot := (pc &^ 0xfff) + uint64(imm) + uint64((i1>>10)&0xfff)*8
		start := off
		if off >= 4 && order.Uint32(data[off-4:]) == 0xd503245f { // bti c
			start = off - 4
		}
		add(start, slot)
		off += 4
	}
}

// armStubs decodes "add ip, pc, #a; add ip, ip, #b; ldr pc, [ip, #c]!"
// (slot = stub + 8 + a + b + c), with an optional Thumb "bx pc; nop" before.
func armStubs(base uint64, data []byte, order binary.ByteOrder, add func(int, uint64)) {
	imm := func(ins uint32) uint64 { return uint64(bits.RotateLeft32(ins&0xff, -int(2*((ins>>8)&0xf)))) }
	for off := 0; off+12 <= len(data); off += 4 {
		i0, i1, i2 := order.Uint32(data[off:]), order.Uint32(data[off+4:]), order.Uint32(data[off+8:])
		if i0&0xfffff000 != 0xe28fc000 || i1&0xfffff000 != 0xe28cc000 || i2&0xfffff000 != 0xe5bcf000 {
			continue
		}
		slot := uint64(uint32(base+uint64(off)+8) + uint32(imm(i0)) + uint32(imm(i1)) + i2&0xfff)
		start := off
		if off >= 4 && order.Uint32(data[off-4:]) == 0x46c04778 { // Thumb bx pc; nop
			start = off - 4
		}
		add(start, slot)
		off += 8
	}
}
