package symbolize

import (
	"debug/elf"
	"strings"
	"sync"
)

// SymbolMatch says what kind of symbol-table entry a name lookup found, in
// gdb's order of preference (lookup_minimal_symbol): a global definition, then
// a file-local one, then a PLT stub of the name.
type SymbolMatch int

const (
	NoSymbol         SymbolMatch = iota
	TrampolineSymbol             // name@plt
	LocalSymbol                  // STB_LOCAL
	GlobalSymbol                 // STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE
)

// nameIndex is every code symbol of a file by name. Names are substrings of
// the string tables (no copies); the index of names is made on its first use.
type nameIndex struct {
	once   sync.Once
	syms   []namedSym
	byName map[string]namedSym // the symbol lookup answers for each name
}

type namedSym struct {
	name string
	addr uint64
	kind SymbolMatch
}

// newNameIndex records the symbols as gdb's ELF reader names them: a
// versioned name ("f@@VER", "f@VER") also under its bare name, and a PLT stub
// "f@plt" as a trampoline named f.
func newNameIndex(all []symbol) *nameIndex {
	x := &nameIndex{syms: make([]namedSym, 0, len(all))}
	for i := range all {
		s := &all[i]
		kind := LocalSymbol
		if s.global {
			kind = GlobalSymbol
		}
		at := strings.IndexByte(s.name, '@')
		switch {
		case at > 0 && s.name[at:] == "@plt":
			x.syms = append(x.syms, namedSym{s.name[:at], s.addr, TrampolineSymbol})
			continue
		case at > 0:
			x.syms = append(x.syms, namedSym{s.name[:at], s.addr, kind})
		}
		x.syms = append(x.syms, namedSym{s.name, s.addr, kind})
	}
	return x
}

// lookup returns the address gdb's lookup_minimal_symbol picks for name in
// this file: among global definitions the highest address, else among local
// ones the lowest, else the highest PLT stub (the order in which gdb's hash
// chains, built in address order, leave them).
func (x *nameIndex) lookup(name string) (uint64, SymbolMatch) {
	x.once.Do(func() {
		x.byName = make(map[string]namedSym, len(x.syms))
		for _, s := range x.syms {
			best, ok := x.byName[s.name]
			switch {
			case !ok || s.kind > best.kind:
				x.byName[s.name] = s
			case s.kind < best.kind:
			case s.kind == LocalSymbol && s.addr < best.addr, s.kind != LocalSymbol && s.addr > best.addr:
				x.byName[s.name] = s
			}
		}
	})
	best := x.byName[name]
	return best.addr, best.kind
}

// SymbolAddress looks name up in the file's symbol tables (.symtab, .dynsym
// and PLT stubs) as gdb does for a call-site target that is a declaration.
// The kind says how good the match is (NoSymbol when there is none); across
// files gdb takes the first global match, else a local one, else a stub.
func (f *File) SymbolAddress(name string) (uint64, SymbolMatch) {
	if f.syms == nil || f.syms.table().names == nil || name == "" {
		return 0, NoSymbol
	}
	return f.syms.names.lookup(name)
}

func isGlobal(b elf.SymBind) bool {
	return b == elf.STB_GLOBAL || b == elf.STB_WEAK || b == 10 // STB_GNU_UNIQUE
}
