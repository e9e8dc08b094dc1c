package symbolize

import (
	"cmp"
	"debug/elf"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
)

// symbol is one code symbol from .symtab or .dynsym.
type symbol struct {
	addr, size   uint64
	name         string
	secLo, secHi uint64 // the section the symbol belongs to
	isFunc       bool
	global       bool // STB_GLOBAL, STB_WEAK or STB_GNU_UNIQUE
	// zeroAlias is the best zero-sized symbol at the same address as a sized
	// one: gdb falls back to it for addresses past the sized symbol's end.
	zeroAlias string
}

// symtab is every code symbol, one per address, sorted by address.
// prevSized[i] is the index of the nearest symbol at or before i with a
// non-zero size, or -1. A big table is read on its first lookup (load).
type symtab struct {
	syms      []symbol
	prevSized []int32
	names     *nameIndex // every symbol by name, for call-site targets (symnames.go)

	once sync.Once
	load func() (*symtab, error) // nil once read
}

const maxSymbolName = 1 << 16 // longer names are cut; nothing real comes close

// loadSymbols reads .symtab and .dynsym: now when they are small, else on
// the first lookup (their headers are checked now). Counts come from
// section sizes that were checked against the file, so allocation is
// bounded by the file. A table that fails to read later has no symbols.
func loadSymbols(r io.ReaderAt, f *elf.File, fileSize int64) (*symtab, error) {
	n := uint64(0)
	for _, s := range f.Sections {
		if s.Type != elf.SHT_SYMTAB && s.Type != elf.SHT_DYNSYM {
			continue
		}
		if _, err := symbolStrings(f, s); err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Name, err)
		}
		for _, sec := range []*elf.Section{s, f.Sections[s.Link]} {
			if sec.Type == elf.SHT_NOBITS {
				continue
			}
			if fileSize >= 0 && (sec.Offset > uint64(fileSize) || sec.FileSize > uint64(fileSize)-sec.Offset) {
				return nil, fmt.Errorf("read %s: section %s: %#x bytes at %#x extend past end of file (%#x)", s.Name, sec.Name, sec.FileSize, sec.Offset, fileSize)
			}
			n += sec.FileSize
		}
	}
	if n <= eagerBytes {
		return readSymbols(r, f, fileSize)
	}
	return &symtab{load: func() (*symtab, error) { return readSymbols(r, f, fileSize) }}, nil
}

// table returns the read table (empty when reading failed).
func (st *symtab) table() *symtab {
	st.once.Do(func() {
		if st.load == nil {
			return
		}
		t, err := st.load()
		st.load = nil
		if err == nil {
			st.syms, st.prevSized, st.names = t.syms, t.prevSized, t.names
		}
	})
	return st
}

func readSymbols(r io.ReaderAt, f *elf.File, fileSize int64) (*symtab, error) {
	var all []symbol
	budget := &debugSections{}
	for i, s := range f.Sections {
		if s.Type != elf.SHT_SYMTAB && s.Type != elf.SHT_DYNSYM {
			continue
		}
		var err error
		var names []string
		if all, names, err = readSymbolSection(r, f, s, fileSize, budget, all, s.Type == elf.SHT_DYNSYM); err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Name, err)
		}
		if s.Type == elf.SHT_DYNSYM {
			plt, err := pltSymbols(r, f, fileSize, i, names, budget)
			if err != nil {
				return nil, err
			}
			all = append(all, plt...)
		}
	}
	return newSymtab(all), nil
}

// symbolStrings checks a symbol table's header and returns its string table.
func symbolStrings(f *elf.File, s *elf.Section) (*elf.Section, error) {
	entSize := uint64(elf.Sym64Size)
	if f.Class == elf.ELFCLASS32 {
		entSize = elf.Sym32Size
	}
	if s.Entsize != 0 && s.Entsize != entSize {
		return nil, fmt.Errorf("entry size %d, want %d", s.Entsize, entSize)
	}
	if int(s.Link) <= 0 || int(s.Link) >= len(f.Sections) {
		return nil, fmt.Errorf("string table index %d out of range", s.Link)
	}
	strSec := f.Sections[s.Link]
	if strSec.Type != elf.SHT_STRTAB {
		return nil, fmt.Errorf("linked section %d is not a string table", s.Link)
	}
	return strSec, nil
}

// readSymbolSection appends the code symbols of a symbol table to out, and
// returns the name of every entry by index (for relocations) when asked.
func readSymbolSection(r io.ReaderAt, f *elf.File, s *elf.Section, fileSize int64, budget *debugSections, out []symbol, withNames bool) ([]symbol, []string, error) {
	entSize := uint64(elf.Sym64Size)
	if f.Class == elf.ELFCLASS32 {
		entSize = elf.Sym32Size
	}
	strSec, err := symbolStrings(f, s)
	if err != nil {
		return out, nil, err
	}
	data, err := sectionBytes(r, f, s, fileSize, budget)
	if err != nil {
		return nil, nil, err
	}
	strBytes, err := sectionBytes(r, f, strSec, fileSize, budget)
	if err != nil {
		return out, nil, err
	}
	strs := string(strBytes) // names are substrings of it: no copy per symbol
	order := f.ByteOrder
	n := uint64(len(data)) / entSize
	var names []string
	if withNames {
		names = make([]string, n)
	}
	entry := func(i uint64) (nameOff uint32, info uint8, shndx uint16, value, size uint64) {
		e := data[i*entSize : (i+1)*entSize]
		if f.Class == elf.ELFCLASS32 {
			return order.Uint32(e[0:4]), e[12], order.Uint16(e[14:16]), uint64(order.Uint32(e[4:8])), uint64(order.Uint32(e[8:12]))
		}
		return order.Uint32(e[0:4]), e[4], order.Uint16(e[6:8]), order.Uint64(e[8:16]), order.Uint64(e[16:24])
	}
	code := func(info uint8, shndx uint16) (*elf.Section, bool) {
		switch elf.SymType(info & 0xf) {
		case elf.STT_FUNC, sttGNUIFunc, elf.STT_NOTYPE, elf.STT_OBJECT:
		default:
			return nil, false
		}
		if shndx == uint16(elf.SHN_UNDEF) || shndx >= uint16(elf.SHN_LORESERVE) || int(shndx) >= len(f.Sections) {
			return nil, false
		}
		sec := f.Sections[shndx]
		return sec, sec.Flags&elf.SHF_ALLOC != 0 && sec.Flags&elf.SHF_EXECINSTR != 0
	}
	// Room for every code symbol at once: most of a big table is not code.
	k := 0
	for i := uint64(1); i < n; i++ {
		_, info, shndx, _, _ := entry(i)
		if _, ok := code(info, shndx); ok {
			k++
		}
	}
	out = slices.Grow(out, k)
	for i := uint64(1); i < n; i++ { // entry 0 is the null symbol
		nameOff, info, shndx, value, size := entry(i)
		typ := elf.SymType(info & 0xf)
		sec, ok := code(info, shndx)
		if !ok && !withNames {
			continue
		}
		name := cString(strs, uint64(nameOff))
		if withNames {
			names[i] = name
		}
		if !ok || name == "" || isSpecialSymbol(name) {
			continue
		}
		if f.Machine == elf.EM_ARM && (typ == elf.STT_FUNC || typ == sttGNUIFunc) {
			value &^= 1 // Thumb bit
		}
		secHi := sec.Addr + sec.Size
		if secHi < sec.Addr {
			secHi = ^uint64(0)
		}
		out = append(out, symbol{
			addr: value, size: size, name: name,
			secLo: sec.Addr, secHi: secHi,
			isFunc: typ == elf.STT_FUNC || typ == sttGNUIFunc,
			global: isGlobal(elf.SymBind(info >> 4)),
		})
	}
	return out, names, nil
}

// cString returns the NUL-terminated string at off (a substring of s, at
// most maxSymbolName bytes), or "" when off is out of range.
func cString(s string, off uint64) string {
	if off >= uint64(len(s)) {
		return ""
	}
	s = s[off:]
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if len(s) > maxSymbolName {
		s = s[:maxSymbolName]
	}
	return s
}

// isSpecialSymbol reports ARM/AArch64 mapping symbols ($a, $t, $d, $x, with an
// optional ".suffix") and assembler-local labels, which name no function.
func isSpecialSymbol(name string) bool {
	if len(name) >= 2 && name[0] == '$' && (len(name) == 2 || name[2] == '.') {
		switch name[1] {
		case 'a', 't', 'd', 'x':
			return true
		}
	}
	return len(name) > 2 && name[0] == '.' && name[1] == 'L'
}

// better reports whether a should represent an address rather than b. Like
// gdb: a sized symbol over a zero-sized one, then (our addition) FUNC over
// other types, then the greatest name, which is the one gdb's sort by
// (address, name) leaves last.
func better(a, b *symbol) bool {
	if (a.size != 0) != (b.size != 0) {
		return a.size != 0
	}
	if a.isFunc != b.isFunc {
		return a.isFunc
	}
	return a.name > b.name
}

func newSymtab(all []symbol) *symtab {
	// Sorted by address, stably: through indexes, as symbols are big to move.
	order := make([]int32, len(all))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		if c := cmp.Compare(all[a].addr, all[b].addr); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	st := &symtab{syms: make([]symbol, 0, len(all)), names: newNameIndex(all)}
	for _, i := range order {
		s := &all[i]
		if n := len(st.syms); n > 0 && st.syms[n-1].addr == s.addr {
			kept := &st.syms[n-1]
			var zero string
			switch {
			case kept.size == 0 && s.size != 0:
				zero = kept.name
			case kept.size != 0 && s.size == 0:
				zero = s.name
			}
			if better(s, kept) {
				alias := kept.zeroAlias
				*kept = *s
				kept.zeroAlias = alias
			}
			if zero != "" && zero > kept.zeroAlias {
				kept.zeroAlias = zero
			}
			continue
		}
		st.syms = append(st.syms, *s)
	}
	st.prevSized = make([]int32, len(st.syms))
	last := int32(-1)
	for i := range st.syms {
		if st.syms[i].size != 0 {
			last = int32(i)
		}
		st.prevSized[i] = last
	}
	return st
}

// lookup returns the symbol covering pc, following gdb's minimal-symbol rule:
// a sized symbol covers [addr, addr+size); past its end only a zero-sized
// symbol at a higher address (still at or below pc, in the same section)
// covers pc, up to the next symbol.
func (st *symtab) lookup(pc uint64) *symbol {
	st = st.table()
	i := sort.Search(len(st.syms), func(i int) bool { return st.syms[i].addr > pc }) - 1
	if i < 0 {
		return nil
	}
	s := &st.syms[i]
	if s.size != 0 {
		if pc-s.addr < s.size {
			return s
		}
		// gdb scans same-address symbols from the greatest name down and
		// remembers a zero-sized one only when it sorts above the sized one.
		if s.zeroAlias > s.name && pc < s.secHi {
			return &symbol{addr: s.addr, name: s.zeroAlias, secLo: s.secLo, secHi: s.secHi}
		}
		return nil
	}
	if j := st.prevSized[i]; j >= 0 {
		if t := &st.syms[j]; pc-t.addr < t.size {
			return t
		}
	}
	if pc >= s.secLo && pc < s.secHi {
		return s
	}
	return nil
}

// sttGNUIFunc is STT_GNU_IFUNC (debug/elf names it only from Go 1.23).
const sttGNUIFunc elf.SymType = 10
