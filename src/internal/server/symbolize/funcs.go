package symbolize

import (
	"cmp"
	"debug/dwarf"
	"fmt"
	"slices"
	"sort"
	"sync"
)

// unitState is what one compile unit knows about its addresses, built on
// the first lookup that lands in the unit.
type unitState struct {
	lines *lineTable // nil when the unit has no line program
	funcs []span     // concrete functions, sorted by lo
	// funcsMax[i] = max(funcs[:i+1].hi), to walk back over overlapping ranges.
	funcsMax []uint64
	// nodes: functions, then the inlined calls of each function's body, read when a
	// lookup first lands in it (expand). Guarded by rw once the unit is built.
	nodes  []node
	bodies []body
	rw     sync.RWMutex
	x      *dwarfIndex
	du     *dieUnit
	lang   int64
	decls  map[dwarf.Offset]*declInfo
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
	body     int32 // a function's index in unitState.bodies, or -1
}

// body is where a function's children start, for reading its inlined calls on demand.
type body struct {
	start int // offset in the compact copy of its first child
	done  bool
	err   error
}

// declInfo is what naming needs from a subprogram DIE.
type declInfo struct {
	name, linkage string
	spec, origin  dwarf.Offset
	scope         string // enclosing namespaces/classes, "::"-joined
}

type nameResult struct{ function, mangled string }

func (x *dwarfIndex) buildUnit(u *unit) (*unitState, error) {
	st := &unitState{decls: map[dwarf.Offset]*declInfo{}, names: map[int32]nameResult{}, x: x, lang: u.lang}
	// The line table and the DIEs are independent reads (of .debug_line and .debug_info):
	// the line table is run on a goroutine of its own while this one walks the DIEs. Both
	// are big in the units of Rust's std and Go's runtime.
	var lines *lineTable
	var lineErr error
	var lineCrash any
	linesDone := make(chan struct{})
	go func() {
		defer close(linesDone)
		defer func() { lineCrash = recover() }()
		lines, lineErr = x.unitLines(u)
	}()
	waited := false
	defer func() {
		if !waited {
			<-linesDone // the walk panicked: the line goroutine does not outlive this call
		}
	}()
	walkErr := x.walkUnit(u, st)
	<-linesDone
	waited = true
	if lineCrash != nil {
		panic(lineCrash) // the caller's recover turns it into an error
	}
	if lineErr != nil {
		return nil, lineErr
	}
	if walkErr != nil {
		return nil, walkErr
	}
	st.lines = lines
	slices.SortStableFunc(st.funcs, bySpanLo)
	st.funcsMax = make([]uint64, len(st.funcs))
	var m uint64
	for i, s := range st.funcs {
		m = max(m, s.hi)
		st.funcsMax[i] = m
	}
	return st, nil
}

// unitLines runs the unit's line program and folds its rows (nil: the unit has none).
func (x *dwarfIndex) unitLines(u *unit) (*lineTable, error) {
	if u.stmtList < 0 {
		return nil, nil
	}
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
	return foldLines(h, rows, primary, u.low), nil
}

// sortKids orders the inlined calls of nodes[from:] for chain.
func (st *unitState) sortKids(from int) {
	for i := from; i < len(st.nodes); i++ {
		n := &st.nodes[i]
		slices.SortStableFunc(n.kids, bySpanLo)
		n.kidsMax = make([]uint64, len(n.kids))
		var m uint64
		for j, k := range n.kids {
			m = max(m, k.hi)
			n.kidsMax[j] = m
		}
	}
}

// expand reads the inlined calls in the body of function node fn, once.
func (st *unitState) expand(fn int32) error {
	st.rw.RLock()
	b := st.nodes[fn].body
	if b < 0 || st.bodies[b].done {
		var err error
		if b >= 0 {
			err = st.bodies[b].err
		}
		st.rw.RUnlock()
		return err
	}
	st.rw.RUnlock()
	st.rw.Lock()
	defer st.rw.Unlock()
	bd := &st.bodies[b]
	if !bd.done {
		from := len(st.nodes)
		r := st.du.reader()
		r.off = bd.start
		bd.err = st.x.walk(st, r, []level{{node: fn}}, true)
		if bd.err != nil {
			bd.err = fmt.Errorf("function at %#x: %w", st.nodes[fn].die, bd.err)
		}
		bd.done = true
		st.sortKids(from)
		st.sortKids(int(fn))
	}
	return bd.err
}

// node returns a copy of node id.
func (st *unitState) node(id int32) node {
	st.rw.RLock()
	defer st.rw.RUnlock()
	return st.nodes[id]
}

// maxScope caps the length of a qualified scope name; deeper scopes are
// left out of it.
const maxScope = 4096

// scopeTags name a scope for the functions declared inside them.
var scopeTags = map[dwarf.Tag]bool{
	dwarf.TagNamespace: true, dwarf.TagClassType: true, dwarf.TagStructType: true,
	dwarf.TagUnionType: true, dwarf.TagInterfaceType: true, dwarf.TagEnumerationType: true,
}

// level is one open DIE of a walk.
type level struct {
	scope string
	node  int32
	die   dwarf.Offset // nearest enclosing C++ scope DIE (the unit's at the top)
}

// walkUnit reads every DIE of the unit once, collecting subprogram declarations (for names),
// C++ scopes and the functions with code. The inlined calls inside a function are read when a
// lookup first lands in it (expand): that is most of a unit's DIEs (Rust's std, Go's runtime),
// and a core needs few functions.
func (x *dwarfIndex) walkUnit(u *unit, st *unitState) error {
	du, err := x.dieUnitOf(u)
	if err != nil {
		return err
	}
	st.du = du
	r, root, ok := du.children()
	if !ok {
		return r.err
	}
	return x.walk(st, r, []level{{node: -1, die: root.offset()}}, false)
}

// walk reads DIEs from r until the levels of stack are closed. The first walk of a unit
// (inlines false) records declarations, scopes and functions, and where each function's body
// starts; a walk of one body (inlines true, the function's level on the stack) records its
// inlined calls and skips nested functions (they have bodies of their own). Both go through
// the same DIEs, so that the nodes come out as one walk that does both would make them.
func (x *dwarfIndex) walk(st *unitState, r *dieReader, stack []level, inlines bool) error {
	lang := st.lang
	cxx := cxxLangs[lang]
	members := scopedLangs[lang]
	// Names are kept for every subprogram: share equal strings, cap long
	// ones, and charge what is kept to the file's name budget.
	interned := map[string]string{}
	keep := func(b []byte) (string, error) {
		if len(b) == 0 {
			return "", nil
		}
		if v, ok := interned[string(b)]; ok {
			return v, nil
		}
		v := string(b[:min(len(b), maxSymbolName)])
		if !x.names.take(len(v)) {
			return "", fmt.Errorf("names of unit at %#x over budget", r.u.first)
		}
		interned[string(b)] = v
		return v, nil
	}
	// Names in .debug_str are shared with the section (no copy, nothing to charge); others
	// (DW_FORM_string) are kept.
	keepName := func(b []byte, shared bool) (string, error) {
		if shared {
			return sharedString(b[:min(len(b), maxSymbolName)]), nil
		}
		return keep(b)
	}
	var rbuf [][2]uint64 // ranges of the DIE at hand
	var verr error       // the first attribute value that failed to decode
	var e rawDIE
	var err error
	for len(stack) > 0 && r.next(&e) {
		if e.ab == nil {
			stack = stack[:len(stack)-1]
			continue
		}
		tag := e.ab.tag
		top := stack[len(stack)-1]
		next := top
		switch {
		case inlines && tag == dwarf.TagSubprogram:
			r.skipChildren(&e) // its own body, or no code: no inlined call of ours inside
			continue
		case inlines && tag == dwarf.TagInlinedSubroutine:
			next.node = -1
			if top.node < 0 {
				break
			}
			if !e.has(dwarf.AttrCallFile) || !e.has(dwarf.AttrCallLine) {
				// gdb reads an inlined call without its call site as a
				// lexical block: no frame; calls inside it belong to the
				// enclosing function (read_func_scope).
				next.node = top.node
				break
			}
			if rbuf, err = x.dieRanges(&e, rbuf[:0]); err != nil {
				return fmt.Errorf("inlined subroutine at %#x: %w", e.off, err)
			}
			n := node{die: e.refVal(dwarf.AttrAbstractOrigin, &verr), inlined: true, body: -1}
			n.callFile = e.intVal(dwarf.AttrCallFile, &verr)
			n.callLine = e.intVal(dwarf.AttrCallLine, &verr)
			n.callCol = e.intVal(dwarf.AttrCallColumn, &verr)
			id := int32(len(st.nodes))
			st.nodes = append(st.nodes, n)
			parent := &st.nodes[top.node]
			for _, rg := range rbuf {
				if rg[0] < rg[1] {
					parent.kids = append(parent.kids, span{rg[0], rg[1], id})
				}
			}
			next.node = id
		case inlines:
		case cxx && cxxScopeTags[tag]:
			st.scopes = append(st.scopes, scopeEntry{off: e.offset(), parent: top.die, tag: tag})
			next.die = e.offset()
		}
		switch {
		case inlines:
		case scopeTags[tag]:
			name := e.str(dwarf.AttrName, &verr)
			if len(name) == 0 && tag == dwarf.TagNamespace {
				name = anonymousNamespace
			}
			if len(name) != 0 && len(top.scope)+len(name) < maxScope {
				q := name
				if top.scope != "" {
					q = append(append([]byte(top.scope), "::"...), name...)
				}
				if next.scope, err = keep(q); err != nil {
					return err
				}
			}
		case tag == dwarf.TagSubprogram:
			d := &declInfo{scope: top.scope}
			if d.name, err = keepName(e.strVal(dwarf.AttrName, &verr)); err != nil {
				return err
			}
			if d.linkage, err = keepName(e.linkage(&verr)); err != nil {
				return err
			}
			d.spec = e.refVal(dwarf.AttrSpecification, &verr)
			d.origin = e.refVal(dwarf.AttrAbstractOrigin, &verr)
			st.decls[e.offset()] = d
			next.node = -1
			if rbuf, err = x.dieRanges(&e, rbuf[:0]); err != nil {
				return fmt.Errorf("subprogram at %#x: %w", e.off, err)
			}
			if rs := x.keepRanges(rbuf); len(rs) > 0 {
				id := int32(len(st.nodes))
				n := node{die: e.offset(), body: -1}
				if e.ab.children {
					n.body = int32(len(st.bodies))
					st.bodies = append(st.bodies, body{start: r.off})
				}
				st.nodes = append(st.nodes, n)
				for _, rg := range rs {
					st.funcs = append(st.funcs, span{rg[0], rg[1], id})
				}
				next.node = id
			}
		case tag == dwarf.TagInlinedSubroutine:
			next.node = -1 // its calls are read with its function's body
		}
		if verr != nil {
			return verr
		}
		if e.ab.children {
			if skipChildren(tag, members) {
				r.skipChildren(&e)
				continue
			}
			stack = append(stack, next)
		}
	}
	return r.err
}

// anonymousNamespace is gdb's name of a namespace without DW_AT_name.
var anonymousNamespace = []byte("(anonymous namespace)")

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

// chain returns the nodes at pc, innermost first, ending with the function;
// an error when the function's body cannot be read.
func (st *unitState) chain(pc uint64) ([]int32, error) {
	var fn *span
	i := sort.Search(len(st.funcs), func(i int) bool { return st.funcs[i].lo > pc }) - 1
	for ; i >= 0 && st.funcsMax[i] > pc; i-- {
		s := &st.funcs[i]
		if pc < s.hi && (fn == nil || s.hi-s.lo < fn.hi-fn.lo) {
			fn = s
		}
	}
	if fn == nil {
		return nil, nil
	}
	if err := st.expand(fn.node); err != nil {
		return nil, err
	}
	st.rw.RLock()
	defer st.rw.RUnlock()
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
	return out, nil
}

// attrMIPSLinkageName is DW_AT_MIPS_linkage_name, what gcc emitted before
// DWARF 4 standardised DW_AT_linkage_name.
const attrMIPSLinkageName dwarf.Attr = 0x2007
