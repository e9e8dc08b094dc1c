package symbolize

import (
	"cmp"
	"debug/dwarf"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// unitState is what one compile unit knows about its addresses, built on
// the first lookup that lands in the unit.
type unitState struct {
	lines *lineTable // nil when the unit has no line program
	funcs []span     // concrete functions, sorted by lo
	// funcsMax[i] = max(funcs[:i+1].hi), to walk back over overlapping ranges.
	funcsMax []uint64
	nodes    []node
	decls    map[dwarf.Offset]*declInfo
	// scopes places the namespaces, types and functions of a C++ unit in
	// its DIE tree, sorted by offset (see cxxname.go).
	scopes []scopeEntry

	mu    sync.Mutex
	names map[int32]nameResult
}

func bySpanLo(a, b span) int { return cmp.Compare(a.lo, b.lo) }

// span maps an address range to a node.
type span struct {
	lo, hi uint64
	node   int32
}

// node is a function body or an inlined call inside one.
type node struct {
	die      dwarf.Offset // where the name comes from (the DIE or its abstract origin)
	inlined  bool
	callFile int64
	callLine int64
	callCol  int64
	kids     []span // inlined calls directly inside, sorted by lo
	kidsMax  []uint64
}

// declInfo is what naming needs from a subprogram DIE.
type declInfo struct {
	name, linkage string
	spec, origin  dwarf.Offset
	scope         string // enclosing namespaces/classes, "::"-joined
}

type nameResult struct{ function, mangled string }

func (x *dwarfIndex) buildUnit(u *unit) (*unitState, error) {
	st := &unitState{decls: map[dwarf.Offset]*declInfo{}, names: map[int32]nameResult{}}
	if u.stmtList >= 0 {
		env, err := x.lineEnv(u)
		if err != nil {
			return nil, err
		}
		h, rows, err := readLineProgram(env, uint64(u.stmtList))
		if err != nil {
			return nil, err
		}
		primary := u.name
		if primary != "" && primary[0] != '/' {
			primary = joinPath(u.compDir, primary)
		}
		st.lines = foldLines(h, rows, primary, u.low)
	}
	if err := x.walkUnit(u, st); err != nil {
		return nil, err
	}
	slices.SortStableFunc(st.funcs, bySpanLo)
	st.funcsMax = make([]uint64, len(st.funcs))
	var m uint64
	for i, s := range st.funcs {
		m = max(m, s.hi)
		st.funcsMax[i] = m
	}
	for i := range st.nodes {
		n := &st.nodes[i]
		slices.SortStableFunc(n.kids, bySpanLo)
		n.kidsMax = make([]uint64, len(n.kids))
		var m uint64
		for j, k := range n.kids {
			m = max(m, k.hi)
			n.kidsMax[j] = m
		}
	}
	return st, nil
}

// maxScope caps the length of a qualified scope name; deeper scopes are
// left out of it.
const maxScope = 4096

// scopeTags name a scope for the functions declared inside them.
var scopeTags = map[dwarf.Tag]bool{
	dwarf.TagNamespace: true, dwarf.TagClassType: true, dwarf.TagStructType: true,
	dwarf.TagUnionType: true, dwarf.TagInterfaceType: true, dwarf.TagEnumerationType: true,
}

// walkUnit reads every DIE of the unit once, collecting subprogram
// declarations (for names) and the tree of functions and inlined calls.
func (x *dwarfIndex) walkUnit(u *unit, st *unitState) error {
	r := x.data.Reader()
	r.Seek(u.bounds.first)
	cu, err := r.Next()
	if err != nil {
		return err
	}
	if cu == nil || !cu.Children {
		return nil
	}
	type level struct {
		scope string
		node  int32
		die   dwarf.Offset // nearest enclosing C++ scope DIE (the unit's at the top)
	}
	stack := []level{{node: -1, die: cu.Offset}}
	cxx := cxxLangs[u.lang]
	// Names are kept for every subprogram: share equal strings, cap long
	// ones, and charge what is kept to the file's name budget.
	interned := map[string]string{}
	keep := func(s string) (string, error) {
		if s == "" {
			return "", nil
		}
		if v, ok := interned[s]; ok {
			return v, nil
		}
		v := s
		if len(v) > maxSymbolName {
			v = strings.Clone(v[:maxSymbolName])
		}
		if !x.names.take(len(v)) {
			return "", fmt.Errorf("names of unit at %#x over budget", u.bounds.first)
		}
		interned[s] = v
		return v, nil
	}
	for len(stack) > 0 {
		e, err := r.Next()
		if pastEnd(err, u) {
			break // the unit ended without closing every level
		}
		if err != nil {
			return err
		}
		if e == nil || e.Offset >= u.bounds.end {
			break // the unit ended without closing every level
		}
		if e.Tag == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		top := stack[len(stack)-1]
		next := top
		if cxx && cxxScopeTags[e.Tag] {
			st.scopes = append(st.scopes, scopeEntry{off: e.Offset, parent: top.die, tag: e.Tag})
			next.die = e.Offset
		}
		switch {
		case scopeTags[e.Tag]:
			name, _ := e.Val(dwarf.AttrName).(string)
			if name == "" && e.Tag == dwarf.TagNamespace {
				name = "(anonymous namespace)"
			}
			if name != "" && len(top.scope)+len(name) < maxScope {
				if next.scope, err = keep(qualify(top.scope, name)); err != nil {
					return err
				}
			}
		case e.Tag == dwarf.TagSubprogram:
			d := &declInfo{scope: top.scope}
			name, _ := e.Val(dwarf.AttrName).(string)
			if d.name, err = keep(name); err != nil {
				return err
			}
			if d.linkage, err = keep(linkageName(e)); err != nil {
				return err
			}
			d.spec, _ = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
			d.origin, _ = e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
			st.decls[e.Offset] = d
			next.node = -1
			rs, err := x.data.Ranges(e)
			if err != nil {
				return fmt.Errorf("subprogram at %#x: %w", e.Offset, err)
			}
			if rs = x.keepRanges(rs); len(rs) > 0 {
				id := int32(len(st.nodes))
				st.nodes = append(st.nodes, node{die: e.Offset})
				for _, rg := range rs {
					st.funcs = append(st.funcs, span{rg[0], rg[1], id})
				}
				next.node = id
			}
		case e.Tag == dwarf.TagInlinedSubroutine:
			next.node = -1
			if top.node < 0 {
				break
			}
			if e.Val(dwarf.AttrCallFile) == nil || e.Val(dwarf.AttrCallLine) == nil {
				// gdb reads an inlined call without its call site as a
				// lexical block: no frame; calls inside it belong to the
				// enclosing function (read_func_scope).
				next.node = top.node
				break
			}
			rs, err := x.data.Ranges(e)
			if err != nil {
				return fmt.Errorf("inlined subroutine at %#x: %w", e.Offset, err)
			}
			origin, _ := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
			n := node{die: origin, inlined: true}
			n.callFile, _ = e.Val(dwarf.AttrCallFile).(int64)
			n.callLine, _ = e.Val(dwarf.AttrCallLine).(int64)
			n.callCol, _ = e.Val(dwarf.AttrCallColumn).(int64)
			id := int32(len(st.nodes))
			st.nodes = append(st.nodes, n)
			parent := &st.nodes[top.node]
			for _, rg := range rs {
				if rg[0] < rg[1] {
					parent.kids = append(parent.kids, span{rg[0], rg[1], id})
				}
			}
			next.node = id
		}
		if e.Children {
			if skipChildren(e.Tag, scopedLangs[u.lang]) {
				r.SkipChildren()
				continue
			}
			stack = append(stack, next)
		}
	}
	return nil
}

// skipChildren reports subtrees that hold no function or inlined call:
// call sites, parameters and variables, and (outside languages with member
// functions) aggregate types. Skipping them saves most of the decoding.
func skipChildren(tag dwarf.Tag, members bool) bool {
	switch tag {
	case dwarf.TagFormalParameter, dwarf.TagVariable, dwarf.TagEnumerationType,
		dwarf.TagArrayType, dwarf.TagSubroutineType, tagCallSite, tagGNUCallSite:
		return true
	case dwarf.TagStructType, dwarf.TagUnionType, dwarf.TagClassType:
		return !members
	}
	return false
}

// DW_TAG_call_site (DWARF 5) and its GNU predecessor.
const (
	tagCallSite    dwarf.Tag = 0x48
	tagGNUCallSite dwarf.Tag = 0x4109
)

func linkageName(e *dwarf.Entry) string {
	if s, ok := e.Val(dwarf.AttrLinkageName).(string); ok {
		return s
	}
	s, _ := e.Val(attrMIPSLinkageName).(string)
	return s
}

func qualify(scope, name string) string {
	if scope == "" {
		return name
	}
	return scope + "::" + name
}

// chain returns the nodes at pc, innermost first, ending with the function.
func (st *unitState) chain(pc uint64) []int32 {
	var fn *span
	i := sort.Search(len(st.funcs), func(i int) bool { return st.funcs[i].lo > pc }) - 1
	for ; i >= 0 && st.funcsMax[i] > pc; i-- {
		s := &st.funcs[i]
		if pc < s.hi && (fn == nil || s.hi-s.lo < fn.hi-fn.lo) {
			fn = s
		}
	}
	if fn == nil {
		return nil
	}
	out := []int32{fn.node}
	// Descend; every step goes to a node created after its parent, so this
	// ends within len(nodes) steps.
	for cur := fn.node; ; {
		n := &st.nodes[cur]
		j := sort.Search(len(n.kids), func(j int) bool { return n.kids[j].lo > pc }) - 1
		next := int32(-1)
		for ; j >= 0 && n.kidsMax[j] > pc; j-- {
			if pc < n.kids[j].hi {
				next = n.kids[j].node
				break
			}
		}
		if next < 0 || next <= cur {
			break
		}
		out = append(out, next)
		cur = next
	}
	// innermost first
	for a, b := 0, len(out)-1; a < b; a, b = a+1, b-1 {
		out[a], out[b] = out[b], out[a]
	}
	return out
}

// attrMIPSLinkageName is DW_AT_MIPS_linkage_name, what gcc emitted before
// DWARF 4 standardised DW_AT_linkage_name.
const attrMIPSLinkageName dwarf.Attr = 0x2007
