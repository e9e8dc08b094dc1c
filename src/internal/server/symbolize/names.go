package symbolize

import (
	"debug/dwarf"
	"strings"

	"github.com/ianlancetaylor/demangle"
)

// maxNameHops bounds DW_AT_specification / DW_AT_abstract_origin chains.
const maxNameHops = 8

// Languages whose DIE names are qualified by their enclosing scopes.
var scopedLangs = map[int64]bool{
	0x04: true, // DW_LANG_C_plus_plus
	0x11: true, // DW_LANG_ObjC_plus_plus
	0x13: true, // DW_LANG_D
	0x19: true, // DW_LANG_C_plus_plus_03
	0x1a: true, // DW_LANG_C_plus_plus_11
	0x1c: true, // DW_LANG_Rust
	0x21: true, // DW_LANG_C_plus_plus_14
	0x2a: true, // DW_LANG_C_plus_plus_17
	0x2b: true, // DW_LANG_C_plus_plus_20
}

// nodeName returns the display and linkage names of node id, cached.
func (x *dwarfIndex) nodeName(u *unit, st *unitState, id int32) nameResult {
	st.mu.Lock()
	r, ok := st.names[id]
	st.mu.Unlock()
	if ok {
		return r
	}
	r = x.resolveName(u, st, st.nodes[id].die)
	if x.names.take(len(r.function)) { // else answer without caching
		st.mu.Lock()
		st.names[id] = r
		st.mu.Unlock()
	}
	return r
}

const (
	langRust = 0x1c
	langGo   = 0x16
)

func mangledIfDifferent(function, linkage string) string {
	if function == linkage {
		return ""
	}
	return linkage
}

func (x *dwarfIndex) resolveName(u *unit, st *unitState, off dwarf.Offset) nameResult {
	var name, linkage, scope string
	for hop := 0; hop < maxNameHops && off != 0; hop++ {
		d := st.decls[off]
		if d == nil {
			d = x.declAt(off)
		}
		if d == nil {
			break
		}
		if linkage == "" {
			linkage = d.linkage
		}
		if name == "" && d.name != "" {
			name, scope = d.name, d.scope
		}
		if name != "" && linkage != "" {
			break
		}
		off = d.spec
		if off == 0 {
			off = d.origin
		}
	}
	// Like gdb: a linkage name wins (demangled when it is mangled: C++; as
	// is otherwise: C functions renamed by asm labels, such as glibc's
	// __GI_abort), except in Rust and Go, named by the DIE name qualified
	// by its enclosing scopes.
	if linkage != "" && ((u.lang != langRust && u.lang != langGo) || name == "") {
		if dm := demangleNoParams(linkage); dm != linkage || !scopedLangs[u.lang] {
			return nameResult{function: dm, mangled: mangledIfDifferent(dm, linkage)}
		}
	}
	if name == "" {
		return nameResult{function: linkage}
	}
	if scopedLangs[u.lang] {
		name = qualify(scope, name)
	}
	if linkage != "" && linkage != name {
		return nameResult{function: name, mangled: linkage}
	}
	return nameResult{function: name}
}

// declAt returns the subprogram DIE at off in another unit, from that
// unit's walk (which knows the DIE's scope), or else from reading the DIE
// alone.
func (x *dwarfIndex) declAt(off dwarf.Offset) *declInfo {
	if u := x.unitAt(off); u != nil {
		if st, err := x.stateOf(u); err == nil {
			if d := st.decls[off]; d != nil {
				return d
			}
		}
	}
	return x.foreignDecl(off)
}

// foreignDecl reads a subprogram DIE outside the current unit walk (a
// DW_FORM_ref_addr into another unit). Its scope is not known.
func (x *dwarfIndex) foreignDecl(off dwarf.Offset) *declInfo {
	if v, ok := x.foreign.Load(off); ok {
		return v.(*declInfo)
	}
	u := x.unitAt(off)
	if u == nil {
		return nil
	}
	b := u.bounds
	r := x.data.Reader()
	// Read the unit's own entry first: it carries the bases that indexed
	// forms (strx, addrx) in its other DIEs need.
	r.Seek(b.first)
	if _, err := r.Next(); err != nil {
		return nil
	}
	if off != b.first {
		r.Seek(off)
	}
	var d *declInfo
	if e, err := r.Next(); err == nil && e != nil && e.Offset == off {
		d = &declInfo{}
		d.name, _ = e.Val(dwarf.AttrName).(string)
		d.linkage = linkageName(e)
		d.spec, _ = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		d.origin, _ = e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if len(d.name) > maxSymbolName || len(d.linkage) > maxSymbolName || !x.names.take(len(d.name)+len(d.linkage)) {
			d.name, d.linkage = "", ""
		}
	}
	if d == nil {
		d = &declInfo{}
	}
	v, _ := x.foreign.LoadOrStore(off, d)
	return v.(*declInfo)
}

// Names longer than this are not demangled (nothing real comes close; the
// limit keeps hostile names from costing much).
const maxDemangleInput = 1 << 14

var demangleLimit = demangle.MaxLength(17)

// Demangle returns the readable form of a C++ (Itanium ABI) or Rust (legacy
// or v0) symbol name, with parameters, as gdb prints symbol-table names.
// Other names, including Go and C names, come back unchanged.
func Demangle(name string) string {
	if base, ok := strings.CutSuffix(name, "@plt"); ok {
		return Demangle(base) + "@plt"
	}
	if !looksMangled(name) {
		return name
	}
	return demangle.Filter(name, demangleLimit)
}

// demangleNoParams is Demangle without the function's parameters (and
// without clone suffixes), as gdb prints functions known from DWARF.
func demangleNoParams(name string) string {
	if !looksMangled(name) {
		return name
	}
	return demangle.Filter(name, demangle.NoParams, demangleLimit)
}

func looksMangled(name string) bool {
	return len(name) <= maxDemangleInput && (strings.HasPrefix(name, "_Z") || strings.HasPrefix(name, "_R") ||
		strings.HasPrefix(name, "__Z") || strings.HasPrefix(name, "__R"))
}
