package symbolize

import (
	"debug/dwarf"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/ianlancetaylor/demangle"
)

// This file names C++ functions the way gdb does (gdb/dwarf2/read.c:
// new_symbol, dwarf2_physname, dwarf2_compute_name, determine_prefix,
// dwarf2_name; gdb/stack.c: find_frame_funname):
//
//   - A function's print name is its demangled linkage name, parameters
//     included and a template function's return type dropped, when the DIE
//     (or one it refers to by DW_AT_specification / DW_AT_abstract_origin)
//     has a linkage name. A linkage name that does not demangle is the
//     print name itself.
//   - Without a linkage name (functions in anonymous namespaces, lambdas,
//     templates instantiated with local types, main), gdb builds the name
//     from DWARF: the DW_AT_name, canonicalized, qualified by the enclosing
//     namespaces and classes (each class named the same way, an unnamed
//     namespace being "(anonymous namespace)"), template arguments from the
//     DIE's children when the name has none, and, for an out-of-line
//     function, its parameter types as gdb prints them ("long",
//     "struct {...} &") with " const" for a const method. The whole is
//     canonicalized; a part that does not parse stays as it is.
//   - The frame name is the print name without its parameters when it
//     parses as a function (cp_remove_params), else the whole print name.
//
// Reading DWARF here is bounded per name: DIE reads, type nesting and the
// length of what is printed.

// cxxLangs are the DW_AT_language values gdb reads as C++.
var cxxLangs = map[int64]bool{
	0x04: true, // DW_LANG_C_plus_plus
	0x19: true, // DW_LANG_C_plus_plus_03
	0x1a: true, // DW_LANG_C_plus_plus_11
	0x21: true, // DW_LANG_C_plus_plus_14
	0x2a: true, // DW_LANG_C_plus_plus_17
	0x2b: true, // DW_LANG_C_plus_plus_20
}

// Limits of one name's computation.
const (
	maxCxxReads     = 4096 // DIEs read
	maxCxxTypeDepth = 64   // nested types, scopes (two levels each) and template arguments
	maxCxxNameLen   = 1 << 14
	maxCxxChildren  = 1024
)

// scopeEntry places a DIE that can name a scope or a type in the DIE tree:
// its parent is the nearest enclosing DIE that is itself a scopeEntry (or
// the unit), passing over lexical blocks and the like, as gdb's
// determine_prefix does.
type scopeEntry struct {
	off, parent dwarf.Offset
	tag         dwarf.Tag
}

// cxxScopeTags are the DIEs recorded as scopeEntries in C++ units.
var cxxScopeTags = map[dwarf.Tag]bool{
	dwarf.TagNamespace: true, dwarf.TagClassType: true, dwarf.TagStructType: true,
	dwarf.TagUnionType: true, dwarf.TagInterfaceType: true, dwarf.TagEnumerationType: true,
	dwarf.TagSubprogram: true, dwarf.TagTypedef: true,
}

// scopeOf returns the scope entry of the DIE at off (in any unit).
func (x *dwarfIndex) scopeOf(off dwarf.Offset) (scopeEntry, bool) {
	u := x.unitAt(off)
	if u == nil {
		return scopeEntry{}, false
	}
	st, err := x.stateOf(u)
	if err != nil {
		return scopeEntry{}, false
	}
	j := sort.Search(len(st.scopes), func(j int) bool { return st.scopes[j].off >= off })
	if j == len(st.scopes) || st.scopes[j].off != off {
		return scopeEntry{}, false
	}
	return st.scopes[j], true
}

// cxxNamer computes one name; reads counts the DIEs it may still read.
type cxxNamer struct {
	x     *dwarfIndex
	reads int
}

func (x *dwarfIndex) newCxxNamer() *cxxNamer { return &cxxNamer{x: x, reads: maxCxxReads} }

// entry reads the DIE at off, or nil.
func (c *cxxNamer) entry(off dwarf.Offset) *dwarf.Entry {
	if c.reads <= 0 {
		return nil
	}
	c.reads--
	return c.x.entryAt(off)
}

// children reads the direct children of the DIE at off.
func (c *cxxNamer) children(off dwarf.Offset) []*dwarf.Entry {
	if c.reads <= 0 {
		return nil
	}
	c.reads--
	r, e, end := c.x.readerAt(off)
	if e == nil || !e.Children {
		return nil
	}
	var out []*dwarf.Entry
	for len(out) < maxCxxChildren && c.reads > 0 {
		k, err := r.Next()
		if err != nil || k == nil || k.Tag == 0 || k.Offset >= end {
			break
		}
		c.reads--
		out = append(out, k)
		if k.Children {
			r.SkipChildren()
		}
	}
	return out
}

// follow is the DIE that e refers to for attributes it lacks: its
// DW_AT_specification or DW_AT_abstract_origin.
func follow(e *dwarf.Entry) dwarf.Offset {
	if o, ok := e.Val(dwarf.AttrSpecification).(dwarf.Offset); ok {
		return o
	}
	o, _ := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
	return o
}

// attr is gdb's dwarf2_attr: the attribute of e, or of the DIEs e refers
// to.
func (c *cxxNamer) attr(e *dwarf.Entry, a dwarf.Attr) any {
	for hop := 0; e != nil && hop < maxNameHops; hop++ {
		if v := e.Val(a); v != nil {
			return v
		}
		next := follow(e)
		if next == 0 {
			return nil
		}
		e = c.entry(next)
	}
	return nil
}

// specification is gdb's die_specification: the DIE named by the first
// DW_AT_specification along e's references, else e's abstract origin.
func (c *cxxNamer) specification(e *dwarf.Entry) dwarf.Offset {
	if o, ok := c.attr(e, dwarf.AttrSpecification).(dwarf.Offset); ok {
		return o
	}
	o, _ := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
	return o
}

func joinScope(prefix, name string) string {
	if prefix == "" || name == "" {
		return prefix + name
	}
	return prefix + "::" + name
}

// prefix is gdb's determine_prefix for the DIE e: the qualified name of
// the scope it is declared in ("" at the top level or inside a function of
// the top level).
func (c *cxxNamer) prefix(e *dwarf.Entry, depth int) string {
	if e == nil || depth > maxCxxTypeDepth {
		return ""
	}
	at := e.Offset
	if s := c.specification(e); s != 0 {
		at = s
	}
	se, ok := c.x.scopeOf(at)
	if !ok {
		return ""
	}
	parent, ok := c.x.scopeOf(se.parent)
	if !ok {
		return "" // the unit
	}
	pe := c.entry(parent.off)
	if pe == nil {
		return ""
	}
	switch parent.tag {
	case dwarf.TagNamespace:
		name := c.rawName(pe)
		if name == "" {
			name = "(anonymous namespace)"
		}
		full := joinScope(c.prefix(pe, depth+1), name)
		if full == "::" {
			return ""
		}
		return full
	case dwarf.TagClassType, dwarf.TagStructType, dwarf.TagUnionType, dwarf.TagInterfaceType:
		name, _ := c.typeName(pe, depth+1)
		return name
	case dwarf.TagEnumerationType:
		if f, _ := pe.Val(attrEnumClass).(bool); f {
			name, _ := c.typeName(pe, depth+1)
			return name
		}
	case dwarf.TagSubprogram:
		return "" // a class local to a function has no prefix in gdb 13
	}
	return c.prefix(pe, depth+1)
}

// DW_AT_enum_class (DWARF 4).
const attrEnumClass dwarf.Attr = 0x6d

// rawName is the DW_AT_name of e or of what it refers to.
func (c *cxxNamer) rawName(e *dwarf.Entry) string {
	s, _ := c.attr(e, dwarf.AttrName).(string)
	return s
}

// typeName is gdb's name of a class, union, enumeration or typedef type:
// dwarf2_full_name, canonicalized. ok is false for an unnamed type.
func (c *cxxNamer) typeName(e *dwarf.Entry, depth int) (string, bool) {
	if v, ok := c.x.cxxTypeNames.Load(e.Offset); ok {
		s := v.(string)
		return s, s != ""
	}
	name := c.rawName(e)
	switch e.Tag {
	case dwarf.TagClassType, dwarf.TagStructType, dwarf.TagUnionType, dwarf.TagInterfaceType:
		// GCC's names for unnamed aggregates are no names to gdb.
		if strings.HasPrefix(name, "._") || strings.HasPrefix(name, "<anonymous") {
			name = ""
		}
	}
	if name == "" {
		c.x.cxxTypeNames.Store(e.Offset, "")
		return "", false
	}
	if e.Tag != dwarf.TagEnumerationType {
		name = cpCanonicalize(name)
	}
	full := joinScope(c.prefix(e, depth+1), name)
	if !strings.Contains(name, "<") {
		full += c.templateArgs(e, depth+1)
	}
	full = cpCanonicalize(capName(full))
	if c.x.names.take(len(full)) {
		c.x.cxxTypeNames.Store(e.Offset, full)
	}
	return full, true
}

func capName(s string) string {
	if len(s) > maxCxxNameLen {
		return s[:maxCxxNameLen]
	}
	return s
}

// templateArgs is the "<...>" gdb appends to a name without template
// arguments from the DIE's DW_TAG_template_*_param children; "" when it
// has none.
func (c *cxxNamer) templateArgs(e *dwarf.Entry, depth int) string {
	if !e.Children {
		return ""
	}
	var args []string
	for _, k := range c.children(e.Offset) {
		switch k.Tag {
		case dwarf.TagTemplateTypeParameter:
			t, ok := k.Val(dwarf.AttrType).(dwarf.Offset)
			if !ok {
				args = append(args, "UNKNOWN_TYPE")
				continue
			}
			args = append(args, cPrint(c.resolveType(t, depth+1)))
		case dwarf.TagTemplateValueParameter:
			t, ok := k.Val(dwarf.AttrType).(dwarf.Offset)
			v := k.Val(dwarf.AttrConstValue)
			if !ok || v == nil {
				args = append(args, "UNKNOWN_VALUE")
				continue
			}
			args = append(args, c.constValue(c.resolveType(t, depth+1), v))
		}
	}
	if len(args) == 0 {
		return ""
	}
	s := "<" + strings.Join(args, ", ")
	if strings.HasSuffix(s, ">") {
		return s + " >"
	}
	return s + ">"
}

// constValue prints a template value argument as gdb does: a character
// as a character literal, other integers (bool too) in decimal.
func (c *cxxNamer) constValue(t *cType, v any) string {
	var u uint64
	switch x := v.(type) {
	case int64:
		u = uint64(x)
	case uint64:
		u = x
	default:
		return "?"
	}
	size := t.size
	if size > 0 && size < 8 {
		u &= 1<<(8*size) - 1
	}
	switch t.encoding {
	case encNoSign:
		return charLiteral(byte(u))
	case encSigned:
		if size > 0 && size < 8 && u&(1<<(8*size-1)) != 0 {
			u |= ^uint64(0) << (8 * size)
		}
		return strconv.FormatInt(int64(u), 10)
	}
	return strconv.FormatUint(u, 10)
}

// charLiteral prints a character as gdb's C printer does.
func charLiteral(b byte) string {
	switch b {
	case '\\', '\'':
		return `'\` + string(b) + `'`
	case '\a':
		return `'\a'`
	case '\b':
		return `'\b'`
	case '\f':
		return `'\f'`
	case '\n':
		return `'\n'`
	case '\r':
		return `'\r'`
	case '\t':
		return `'\t'`
	case '\v':
		return `'\v'`
	case 033:
		return `'\033'`
	}
	if b >= 0x20 && b < 0x7f {
		return "'" + string(b) + "'"
	}
	return fmt.Sprintf(`'\%03o'`, b)
}

// cType is a type as gdb's C printer sees it.
type cType struct {
	kind     cKind
	name     string // cNamed: "long", "std::string", "struct {...}"
	cv       int    // qConst, qVolatile, qRestrict, qAtomic
	target   *cType // pointee, referent, element, return or member type
	params   []cParam
	varargs  bool
	dim      string // cArray: the element count, or ""
	class    string // cMemberPtr, cMethodPtr
	size     int64  // byte size of a base type, for values
	encoding int
}

type cParam struct {
	t          *cType
	artificial bool
}

type cKind int

const (
	cNamed cKind = iota
	cPtr
	cRef
	cRRef
	cArray
	cFunc
	cMemberPtr
	cMethodPtr
)

const qAtomic = qRestrict << 1

// Value encodings of base types that matter for printing values.
const (
	encUnsigned = iota
	encSigned
	encNoSign // plain char
)

var cUnknown = &cType{name: "?"}

// DWARF tags debug/dwarf does not name.
const (
	tagRvalueReferenceType dwarf.Tag = 0x42
	tagAtomicType          dwarf.Tag = 0x47
)

// resolveType reads the type DIE at off.
func (c *cxxNamer) resolveType(off dwarf.Offset, depth int) *cType {
	if off == 0 {
		return &cType{name: "void"}
	}
	if depth > maxCxxTypeDepth {
		return cUnknown
	}
	e := c.entry(off)
	if e == nil {
		return cUnknown
	}
	target := func() *cType {
		t, _ := e.Val(dwarf.AttrType).(dwarf.Offset)
		return c.resolveType(t, depth+1)
	}
	switch e.Tag {
	case dwarf.TagBaseType:
		name, _ := e.Val(dwarf.AttrName).(string)
		if name == "" {
			return cUnknown
		}
		t := &cType{name: cpCanonicalize(name)}
		t.size, _ = e.Val(dwarf.AttrByteSize).(int64)
		switch enc, _ := e.Val(dwarf.AttrEncoding).(int64); {
		case name == "char":
			t.encoding = encNoSign
		case enc == 0x05 || enc == 0x06 || enc == 0x0d: // signed, signed_char, signed_fixed
			t.encoding = encSigned
		}
		return t
	case dwarf.TagUnspecifiedType:
		name, _ := e.Val(dwarf.AttrName).(string)
		return &cType{name: cpCanonicalize(name)}
	case dwarf.TagTypedef:
		if name, ok := c.typeName(e, depth+1); ok {
			return &cType{name: name}
		}
		return target()
	case dwarf.TagClassType, dwarf.TagStructType, dwarf.TagUnionType, dwarf.TagInterfaceType, dwarf.TagEnumerationType:
		if name, ok := c.typeName(e, depth+1); ok {
			return &cType{name: name}
		}
		switch e.Tag {
		case dwarf.TagClassType:
			return &cType{name: "class {...}"}
		case dwarf.TagUnionType:
			return &cType{name: "union {...}"}
		case dwarf.TagEnumerationType:
			return &cType{name: "enum {...}"}
		}
		return &cType{name: "struct {...}"}
	case dwarf.TagConstType, dwarf.TagVolatileType, dwarf.TagRestrictType, tagAtomicType:
		q := map[dwarf.Tag]int{dwarf.TagConstType: qConst, dwarf.TagVolatileType: qVolatile,
			dwarf.TagRestrictType: qRestrict, tagAtomicType: qAtomic}[e.Tag]
		t := *target()
		t.cv |= q
		return &t
	case dwarf.TagPointerType:
		return &cType{kind: cPtr, target: target()}
	case dwarf.TagReferenceType:
		return &cType{kind: cRef, target: target()}
	case tagRvalueReferenceType:
		return &cType{kind: cRRef, target: target()}
	case dwarf.TagPtrToMemberType:
		class := "?"
		if o, ok := e.Val(dwarf.AttrContainingType).(dwarf.Offset); ok {
			class = cPrint(c.resolveType(o, depth+1))
		}
		m := target()
		if m.kind == cFunc {
			return &cType{kind: cMethodPtr, target: m, class: class}
		}
		return &cType{kind: cMemberPtr, target: m, class: class}
	case dwarf.TagSubroutineType:
		f := &cType{kind: cFunc, target: target()}
		c.params(e, f, depth+1)
		return f
	case dwarf.TagArrayType:
		elem := target()
		var dims []string
		for _, k := range c.children(e.Offset) {
			if k.Tag != dwarf.TagSubrangeType {
				continue
			}
			d := ""
			if n, ok := k.Val(dwarf.AttrCount).(int64); ok {
				d = strconv.FormatInt(n, 10)
			} else if hi, ok := k.Val(dwarf.AttrUpperBound).(int64); ok {
				lo, _ := k.Val(dwarf.AttrLowerBound).(int64)
				d = strconv.FormatInt(hi-lo+1, 10)
			}
			dims = append(dims, d)
		}
		if len(dims) == 0 {
			dims = []string{""}
		}
		t := elem
		for i := len(dims) - 1; i >= 0; i-- {
			t = &cType{kind: cArray, target: t, dim: dims[i]}
		}
		return t
	}
	return cUnknown
}

// params reads the formal parameters of the subprogram or subroutine
// type e into f.
func (c *cxxNamer) params(e *dwarf.Entry, f *cType, depth int) {
	objectPointer, _ := c.attr(e, dwarf.AttrObjectPointer).(dwarf.Offset)
	for _, k := range c.children(e.Offset) {
		switch k.Tag {
		case dwarf.TagFormalParameter:
			t, _ := c.attr(k, dwarf.AttrType).(dwarf.Offset)
			art, _ := c.attr(k, dwarf.AttrArtificial).(bool)
			p := cParam{t: c.resolveType(t, depth), artificial: art}
			// gdb makes "this" a const pointer (GCC leaves the const out
			// of declarations): the artificial object pointer, or one
			// named "this", or an unnamed artificial first parameter.
			if art && p.t.cv&qConst == 0 {
				name, _ := c.attr(k, dwarf.AttrName).(string)
				if objectPointer != 0 && objectPointer == k.Offset || objectPointer == 0 &&
					(name == "this" || name == "" && len(f.params) == 0) {
					u := *p.t
					u.cv |= qConst
					p.t = &u
				}
			}
			f.params = append(f.params, p)
		case dwarf.TagUnspecifiedParameters:
			f.varargs = true
		}
	}
}

// cPrint prints a type as gdb's c_print_type does for a type without a
// variable name.
func cPrint(t *cType) string {
	var b strings.Builder
	cBase(&b, t, 0)
	if t.kind != cNamed {
		b.WriteByte(' ')
	}
	cPrefix(&b, t, false, 0)
	cSuffix(&b, t, false, 0)
	return capName(b.String())
}

func cvPrefix(b *strings.Builder, q int) {
	if q&qConst != 0 {
		b.WriteString("const ")
	}
	if q&qVolatile != 0 {
		b.WriteString("volatile ")
	}
	if q&qRestrict != 0 {
		b.WriteString("__restrict__ ")
	}
	if q&qAtomic != 0 {
		b.WriteString("_Atomic ")
	}
}

func cvSuffix(b *strings.Builder, q int) {
	if q&qConst != 0 {
		b.WriteString(" const")
	}
	if q&qVolatile != 0 {
		b.WriteString(" volatile")
	}
	if q&qRestrict != 0 {
		b.WriteString(" __restrict__")
	}
	if q&qAtomic != 0 {
		b.WriteString(" _Atomic")
	}
}

// The three parts of gdb's C declarator printing (c-typeprint.c:
// c_type_print_base, c_type_print_varspec_prefix and _suffix).
func cBase(b *strings.Builder, t *cType, depth int) {
	for t.kind != cNamed {
		if t.target == nil || depth > maxCxxTypeDepth || b.Len() > maxCxxNameLen {
			return
		}
		t = t.target
		depth++
	}
	cvPrefix(b, t.cv)
	b.WriteString(t.name)
}

func cPrefix(b *strings.Builder, t *cType, passedPtr bool, depth int) {
	if t == nil || depth > maxCxxTypeDepth || b.Len() > maxCxxNameLen {
		return
	}
	switch t.kind {
	case cPtr, cRef, cRRef:
		cPrefix(b, t.target, true, depth+1)
		b.WriteString(map[cKind]string{cPtr: "*", cRef: "&", cRRef: "&&"}[t.kind])
		cvSuffix(b, t.cv)
	case cMemberPtr:
		cPrefix(b, t.target, false, depth+1)
		b.WriteString(t.class)
		b.WriteString("::*")
	case cMethodPtr:
		cPrefix(b, t.target, false, depth+1)
		b.WriteString("(")
		b.WriteString(t.class)
		b.WriteString("::*")
	case cFunc, cArray:
		cPrefix(b, t.target, false, depth+1)
		if passedPtr {
			b.WriteByte('(')
		}
	}
}

func cSuffix(b *strings.Builder, t *cType, passedPtr bool, depth int) {
	if t == nil || depth > maxCxxTypeDepth || b.Len() > maxCxxNameLen {
		return
	}
	switch t.kind {
	case cArray:
		if passedPtr {
			b.WriteByte(')')
		}
		b.WriteString("[" + t.dim + "]")
		cSuffix(b, t.target, false, depth+1)
	case cPtr, cRef, cRRef:
		cSuffix(b, t.target, true, depth+1)
	case cMemberPtr:
		cSuffix(b, t.target, false, depth+1)
	case cMethodPtr:
		b.WriteByte(')')
		cSuffix(b, t.target, false, depth+1)
	case cFunc:
		if passedPtr {
			b.WriteByte(')')
		}
		cArgs(b, t, false)
		cSuffix(b, t.target, false, depth+1)
	}
}

// cArgs is gdb's c_type_print_args for C++. For a function's own name
// (linkage) it leaves out artificial parameters ("this") and the
// top-level qualifiers of parameter types.
func cArgs(b *strings.Builder, f *cType, linkage bool) {
	b.WriteByte('(')
	printed := 0
	for _, p := range f.params {
		if p.artificial && linkage {
			continue
		}
		if printed > 0 {
			b.WriteString(", ")
		}
		t := p.t
		if linkage && t.cv != 0 {
			u := *t
			u.cv = 0
			t = &u
		}
		b.WriteString(cPrint(t))
		printed++
		if b.Len() > maxCxxNameLen {
			break
		}
	}
	switch {
	case printed > 0 && f.varargs:
		b.WriteString(", ...")
	case printed == 0:
		b.WriteString("void")
	}
	b.WriteByte(')')
}

// physname is gdb's print name of a C++ function DIE without a linkage
// name (dwarf2_compute_name with physname set). e is the function's DIE;
// for an inlined call, e is its abstract origin: the call itself has
// neither parameters nor template arguments to add, and its scope is the
// origin's (die_specification of the call leads to the same DIE).
func (c *cxxNamer) physname(e *dwarf.Entry, inlined bool) string {
	name := cpCanonicalize(c.rawName(e))
	var b strings.Builder
	b.WriteString(joinScope(c.prefix(e, 0), name))
	if inlined {
		return cpCanonicalize(capName(b.String()))
	}
	if !strings.Contains(name, "<") {
		b.WriteString(c.templateArgs(e, 0))
	}
	f := &cType{kind: cFunc}
	c.params(e, f, 0)
	cArgs(&b, f, true)
	if len(f.params) > 0 && f.params[0].artificial {
		if p := f.params[0].t; p.kind == cPtr && p.target != nil && p.target.cv&qConst != 0 {
			b.WriteString(" const")
		}
	}
	return cpCanonicalize(capName(b.String()))
}

// gdbDemangle is gdb's gdb_demangle(name, DMGL_PARAMS | DMGL_ANSI |
// DMGL_RET_DROP): the demangled name with its parameters, without the
// return type of a template function; "" when name does not demangle.
func gdbDemangle(name string) string {
	if !looksMangled(name) {
		return ""
	}
	a, err := demangle.ToAST(name, demangleLimit)
	if err != nil {
		return ""
	}
	s, ok := cpPrint(dropReturn(libibertyStyle(a)))
	if !ok {
		return ""
	}
	return s
}

// dropReturn removes the return types of the function types that name
// the entity (not those inside its parameters).
func dropReturn(a demangle.AST) demangle.AST {
	switch n := a.(type) {
	case *demangle.Typed:
		return &demangle.Typed{Name: dropReturn(n.Name), Type: dropReturn(n.Type)}
	case *demangle.Qualified:
		if n.LocalName {
			return &demangle.Qualified{Scope: dropReturn(n.Scope), Name: dropReturn(n.Name), LocalName: true}
		}
	case *demangle.MethodWithQualifiers:
		return &demangle.MethodWithQualifiers{Method: dropReturn(n.Method), Qualifiers: n.Qualifiers, RefQualifier: n.RefQualifier}
	case *demangle.FunctionType:
		return &demangle.FunctionType{Args: n.Args, ForLocalName: n.ForLocalName}
	}
	return a
}

// cxxFrameName is gdb's frame name of a C++ function DIE: its print name
// without parameters when that parses, else the whole print name. print
// is the print name; linkage the linkage name used, if any.
func (x *dwarfIndex) cxxFrameName(off dwarf.Offset, inlined bool) (frame, print, linkage string) {
	c := x.newCxxNamer()
	e := c.entry(off)
	if e == nil {
		return "", "", ""
	}
	// gdb makes no symbol for a function without a name (the frame is
	// then named from the symbol table).
	if c.rawName(e) == "" {
		return "", "", ""
	}
	linkage, _ = c.attr(e, dwarf.AttrLinkageName).(string)
	if linkage == "" {
		linkage, _ = c.attr(e, attrMIPSLinkageName).(string)
	}
	if linkage != "" {
		print = gdbDemangle(linkage)
		if print == "" {
			print = linkage
		}
	} else {
		print = c.physname(e, inlined)
	}
	if f, ok := cpRemoveParams(print); ok {
		return f, print, linkage
	}
	return print, print, linkage
}
