package unwind

import (
	"debug/elf"
	"fmt"
	"sort"
)

// What a prologue analysis needs of an ELF file besides its unwind tables: where functions
// start (the function symbols of .symtab and .dynsym) and the bytes of their code (for cores,
// which rarely hold the pages of code the process never wrote).

// funcIndex holds the function symbols of a file, sorted by start; ends[i] == starts[i] when the
// symbol has no size.
type funcIndex struct {
	starts, ends []uint64
}

// sttGNUIFunc is STT_GNU_IFUNC (an indirect function's resolver), which debug/elf names only
// from Go 1.23 on.
const sttGNUIFunc = elf.SymType(10)

// maxFuncSymbols bounds the function symbols kept of one file.
const maxFuncSymbols = 1 << 22

// loadFuncIndex reads the STT_FUNC and STT_GNU_IFUNC symbols defined in executable sections of
// .symtab and .dynsym (their entries only: names are not needed). The ARM Thumb bit is
// cleared. Absent tables give an empty index.
func loadFuncIndex(f *elf.File) (*funcIndex, error) {
	x := &funcIndex{}
	entSize := 24
	if f.Class == elf.ELFCLASS32 {
		entSize = 16
	}
	for _, sec := range f.Sections {
		if sec.Type != elf.SHT_SYMTAB && sec.Type != elf.SHT_DYNSYM {
			continue
		}
		b, err := sectionBytes(sec)
		if err != nil {
			return nil, err
		}
		// Entry 0 is the undefined symbol.
		for off := entSize; off+entSize <= len(b); off += entSize {
			e := b[off : off+entSize]
			var value, size uint64
			var info byte
			var shndx elf.SectionIndex
			if entSize == 16 {
				value = uint64(f.ByteOrder.Uint32(e[4:]))
				size = uint64(f.ByteOrder.Uint32(e[8:]))
				info, shndx = e[12], elf.SectionIndex(f.ByteOrder.Uint16(e[14:]))
			} else {
				info, shndx = e[4], elf.SectionIndex(f.ByteOrder.Uint16(e[6:]))
				value = f.ByteOrder.Uint64(e[8:])
				size = f.ByteOrder.Uint64(e[16:])
			}
			typ := elf.ST_TYPE(info)
			if typ != elf.STT_FUNC && typ != sttGNUIFunc || shndx == elf.SHN_UNDEF ||
				shndx >= elf.SHN_LORESERVE || int(shndx) >= len(f.Sections) ||
				f.Sections[shndx].Flags&elf.SHF_EXECINSTR == 0 {
				continue
			}
			if len(x.starts) >= maxFuncSymbols {
				return nil, fmt.Errorf("more than %d function symbols", maxFuncSymbols)
			}
			if f.Machine == elf.EM_ARM {
				value &^= 1
			}
			x.starts = append(x.starts, value)
			x.ends = append(x.ends, value+size)
		}
	}
	idx := make([]int, len(x.starts))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool {
		sa, sb := x.starts[idx[a]], x.starts[idx[b]]
		return sa < sb || sa == sb && x.ends[idx[a]] > x.ends[idx[b]]
	})
	// One entry per start (aliases share it), keeping the largest size.
	starts, ends := make([]uint64, 0, len(idx)), make([]uint64, 0, len(idx))
	for _, i := range idx {
		if n := len(starts); n > 0 && starts[n-1] == x.starts[i] {
			continue
		}
		starts, ends = append(starts, x.starts[i]), append(ends, x.ends[i])
	}
	x.starts, x.ends = starts, ends
	return x, nil
}

// maxNestedLookback bounds how many symbols before pc a lookup examines for one that covers it.
const maxNestedLookback = 8

// lookup returns the start of the function symbol holding pc: the nearest one at or below pc
// whose size covers it (sized is true), else the nearest one without a size.
func (x *funcIndex) lookup(pc uint64) (start uint64, sized, ok bool) {
	if x == nil {
		return 0, false, false
	}
	i := sort.Search(len(x.starts), func(i int) bool { return x.starts[i] > pc }) - 1
	if i < 0 {
		return 0, false, false
	}
	for j := i; j >= 0 && j > i-maxNestedLookback; j-- {
		if x.ends[j] > pc {
			return x.starts[j], true, true
		}
	}
	if x.ends[i] == x.starts[i] {
		return x.starts[i], false, true
	}
	return 0, false, false
}

// codeRange is the content of one executable section at its link-time address.
type codeRange struct {
	addr uint64
	b    []byte
}

// loadCode copies the executable sections of f that have content in the file.
func loadCode(f *elf.File) ([]codeRange, error) {
	var out []codeRange
	for _, s := range f.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&(elf.SHF_ALLOC|elf.SHF_EXECINSTR) != elf.SHF_ALLOC|elf.SHF_EXECINSTR {
			continue
		}
		b, err := sectionBytes(s)
		if err != nil {
			return nil, err
		}
		if len(b) > 0 {
			out = append(out, codeRange{addr: s.Addr, b: b})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return out, nil
}

// readCode copies the code at link-time address addr into p and returns how many bytes it had
// (contiguous, from addr).
func readCode(code []codeRange, p []byte, addr uint64) int {
	total := 0
	for total < len(p) {
		a := addr + uint64(total)
		i := sort.Search(len(code), func(i int) bool { return code[i].addr+uint64(len(code[i].b)) > a })
		if i == len(code) || code[i].addr > a {
			break
		}
		total += copy(p[total:], code[i].b[a-code[i].addr:])
	}
	return total
}
