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
	if n := st.node(id); cxxLangs[u.lang] {
		frame, _, linkage := x.cxxFrameName(n.die, n.inlined)
		r = nameResult{function: frame, mangled: mangledIfDifferent(frame, linkage)}
	} else {
		r = x.resolveName(u, st, n.die)
	}
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
	var d *declInfo
	if e := x.entryAt(off); e != nil {
		d = &declInfo{}
		d.name, _ = e.Val(dwarf.AttrName).(string)
		d.linkage = linkageName(e)
		d.spec, _ = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		d.origin, _ = e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if len(d.name) > maxSymbolName || len(d.linkage) > maxSymbolName || !x.names.take(len(d.name)+len(d.linkage)) {
			d.name, d.linkage = "", ""
		}
	} else if _, ok := x.boundsOf(off); !ok {
		return nil
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
	if !isRustLegacy(name) {
		if a, err := demangle.ToAST(name, demangleLimit); err == nil {
			if s, ok := cpPrint(libibertyStyle(a)); ok {
				return s
			}
		}
	}
	return demangle.Filter(name, demangleLimit)
}

// isRustLegacy recognises a Rust symbol of the legacy mangling, which
// looks like C++ but ends with a hash ("..17h0123456789abcdefE"), as the
// demangle package does.
func isRustLegacy(name string) bool {
	if !strings.HasPrefix(name, "_ZN") {
		return false
	}
	if pos := strings.LastIndex(name, "E."); pos > 0 {
		name = name[:pos+1]
	}
	return strings.HasSuffix(name, "E") && len(name) > 23 && name[len(name)-20:len(name)-17] == "17h"
}

// libibertyStyle rewrites a demangled C++ tree where the demangle
// package prints differently from libiberty (gdb's demangler):
// libiberty names an inheriting constructor after the base class it
// inherits from, and prints an argument list element by element, keeping
// the place of an empty pack that something follows ("f<, int>",
// "g<a, , b>") and dropping the empty ones at the end, also inside a pack.
// (libiberty also omits the space of "> >" after such a dropped pack; the
// demangle package's printer cannot do that.)
//
// A demangled tree shares the subtrees that substitutions repeat, and
// Copy walks them as a tree: a hostile name makes that exponential. The
// rewrite is only done when the tree, walked that way, is small and has
// something to change.
func libibertyStyle(a demangle.AST) demangle.AST {
	visits, change := 0, false
	a.Traverse(func(n demangle.AST) bool {
		visits++
		switch n := n.(type) {
		case *demangle.Constructor:
			change = change || n.Base != nil
		case *demangle.Template:
			change = change || hasEmptyArg(n.Args)
		case *demangle.ArgumentPack:
			change = change || hasEmptyArg(n.Args)
		case *demangle.FunctionType:
			change = change || hasEmptyArg(n.Args)
		}
		return visits <= maxStyleVisits
	})
	if !change || visits > maxStyleVisits {
		return a
	}
	out := a.Copy(func(n demangle.AST) demangle.AST {
		switch n := n.(type) {
		case *demangle.Constructor:
			if n.Base != nil {
				if last := lastName(n.Base); last != nil {
					return &demangle.Constructor{Name: last}
				}
			}
		case *demangle.Template:
			if args, ok := libibertyArgs(n.Args); ok {
				return &demangle.Template{Name: n.Name, Args: args}
			}
		case *demangle.ArgumentPack:
			if args, ok := libibertyArgs(n.Args); ok {
				return &demangle.ArgumentPack{Args: args}
			}
		case *demangle.FunctionType:
			if args, ok := libibertyArgs(n.Args); ok {
				return &demangle.FunctionType{Return: n.Return, Args: args, ForLocalName: n.ForLocalName}
			}
		}
		return nil
	}, func(demangle.AST) bool { return false })
	if out == nil {
		return a
	}
	return out
}

// maxStyleVisits bounds the tree libibertyStyle rewrites.
const maxStyleVisits = 1 << 14

func hasEmptyArg(args []demangle.AST) bool {
	for _, a := range args {
		if emptyArg(a) {
			return true
		}
	}
	return false
}

// lastName is the unqualified name at the end of a (maybe qualified,
// maybe template) name, as libiberty's last_name.
func lastName(a demangle.AST) demangle.AST {
	for i := 0; i < maxCPNameDepth; i++ {
		switch n := a.(type) {
		case *demangle.Qualified:
			a = n.Name
		case *demangle.Template:
			a = n.Name
		case *demangle.Name:
			return n
		default:
			return nil
		}
	}
	return nil
}

// libibertyArgs drops the empty elements at the end of an argument list
// and replaces the others by empty names, which print as nothing between
// commas; ok is false when there is nothing to change.
func libibertyArgs(args []demangle.AST) ([]demangle.AST, bool) {
	last := -1
	empties := 0
	for i, a := range args {
		if emptyArg(a) {
			empties++
		} else {
			last = i
		}
	}
	if empties == 0 {
		return nil, false
	}
	out := append([]demangle.AST(nil), args[:last+1]...)
	for i, a := range out {
		if emptyArg(a) {
			out[i] = &demangle.Name{Name: ""}
		}
	}
	return out, true
}

// emptyArg reports an argument that prints as nothing: an empty pack or
// expression list (looking at no more than 256 nodes: packs of packs can
// be shared).
func emptyArg(a demangle.AST) bool {
	budget := 256
	return emptyArgWithin(a, &budget)
}

func emptyArgWithin(a demangle.AST, budget *int) bool {
	if *budget--; *budget < 0 {
		return false
	}
	switch n := a.(type) {
	case *demangle.ArgumentPack:
		for _, x := range n.Args {
			if !emptyArgWithin(x, budget) {
				return false
			}
		}
		return true
	case *demangle.ExprList:
		return len(n.Exprs) == 0
	case *demangle.PackExpansion:
		return n.Pack != nil && emptyArgWithin(n.Base, budget)
	case *demangle.Name:
		return n.Name == ""
	}
	return false
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
