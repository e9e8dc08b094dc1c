package symbolize

import (
	"debug/dwarf"
	"fmt"
	"sync"
)

// This file indexes DWARF call-site information (DW_TAG_call_site of DWARF 5
// and its GNU predecessor DW_TAG_GNU_call_site), which a debugger needs to
// show the frames of functions that left by a tail call: see the worker's
// tailcall.go for the search. The facts restated from gdb (dwarf2/read.c
// read_call_site_scope, dwarf2/loc.c, gdbtypes.h):
//
//   - a call site is keyed by its return address (DW_AT_call_return_pc, or
//     DW_AT_low_pc for the GNU form) inside the unit that holds the address
//     just before it; the first site at an address wins;
//   - its target is, in this order, DW_AT_call_target or
//     DW_AT_GNU_call_site_target (a DWARF expression: known only at run time),
//     then DW_AT_call_origin or DW_AT_abstract_origin (a DIE). A DIE that is a
//     declaration names a symbol; one with DW_AT_ranges gives the start of
//     every range; one with a low and high pc gives its low pc; anything else
//     (an abstract instance without code, no target at all) is unknown;
//   - a site marked DW_AT_call_tail_call / DW_AT_GNU_tail_call belongs to the
//     tail-call list of the nearest enclosing DW_TAG_subprogram, but only when
//     that subprogram says its call sites are complete (DW_AT_call_all_calls,
//     DW_AT_GNU_all_call_sites, DW_AT_call_all_tail_calls or
//     DW_AT_GNU_all_tail_call_sites, also through its specification or
//     abstract origin). gdb prepends to that list, so it runs from the last
//     site in DIE order to the first;
//   - call sites are read only inside code that gdb reads: subprograms and
//     inlined subroutines with a valid address range, lexical blocks whose
//     range is valid or absent;
//   - a function's entry is the start of its first range, in the order the
//     DIE lists them.

// CallSite is one call instruction described by DWARF. Addresses are
// link-time addresses of the file.
type CallSite struct {
	PC      uint64   // return address
	Targets []uint64 // entry addresses of the callee (several for a function split into ranges)
	Symbol  string   // the callee is a declaration: the symbol that names it
	Unknown bool     // the callee is computed at run time, or its DIE gives no address
	Tail    bool     // a tail call (a jump that leaves the caller)
}

// Limits on one unit's call-site index. Real units hold far fewer (glibc's
// largest has about 3,000 call sites); past them the unit is an error.
const (
	maxUnitCallSites = 1 << 20
	maxTargetRanges  = 64 // entries of one callee's DW_AT_ranges kept as targets
)

// unitSites is a unit's call sites and complete tail-call lists, built on the
// first call-site query that lands in the unit.
type unitSites struct {
	once  sync.Once
	err   error
	sites []CallSite
	byPC  map[uint64]int32
	// tails holds, per subprogram DIE with a complete list, its tail-call
	// sites (indexes into sites) in gdb's order: last in DIE order first.
	tails map[dwarf.Offset][]int32
}

// sitesOf builds (once) and returns the call-site index of u.
func (x *dwarfIndex) sitesOf(u *unit) (*unitSites, error) {
	v, _ := x.sites.LoadOrStore(u, &unitSites{})
	us := v.(*unitSites)
	us.once.Do(func() {
		us.err = x.walkCallSites(u, us)
		if us.err != nil {
			us.err = fmt.Errorf("call sites of compile unit %q at %#x: %w", u.name, u.bounds.first, us.err)
			us.sites, us.byPC, us.tails = nil, nil, nil
		}
	})
	return us, us.err
}

// siteLevel is one open DIE of the walk: the nearest enclosing subprogram
// (0 outside any).
type siteLevel struct {
	sub dwarf.Offset
}

// siteWalk is the state of one unit's walk.
type siteWalk struct {
	us       *unitSites
	targets  map[dwarf.Offset]CallSite // resolved callee DIEs
	interned map[string]string
	complete map[dwarf.Offset]bool // subprograms that list all their calls
}

func (x *dwarfIndex) walkCallSites(u *unit, us *unitSites) error {
	us.byPC = map[uint64]int32{}
	us.tails = map[dwarf.Offset][]int32{}
	du, err := x.dieUnitOf(u)
	if err != nil {
		return err
	}
	if !du.abbrevs.callSites {
		return nil // no DIE of the unit can be a call site (Go's, for one)
	}
	r, e, ok := du.children()
	if !ok {
		return r.err
	}
	w := &siteWalk{us: us, targets: map[dwarf.Offset]CallSite{}, interned: map[string]string{}, complete: map[dwarf.Offset]bool{}}
	stack := []siteLevel{{}}
	for len(stack) > 0 && r.next(&e) {
		if e.ab == nil {
			stack = stack[:len(stack)-1]
			continue
		}
		top := stack[len(stack)-1]
		next, descend := top, false
		switch e.ab.tag {
		case dwarf.TagSubprogram:
			descend = x.validCode(&e, false)
			next = siteLevel{sub: e.offset()}
		case dwarf.TagInlinedSubroutine:
			descend = x.validCode(&e, false)
		case dwarf.TagLexDwarfBlock:
			descend = x.validCode(&e, true)
		case dwarf.TagNamespace, dwarf.TagClassType, dwarf.TagStructType, dwarf.TagUnionType, dwarf.TagInterfaceType:
			descend = true
		case tagCallSite, tagGNUCallSite:
			if err := x.addCallSite(&e, top, w); err != nil {
				return err
			}
		}
		if e.ab.children {
			if !descend {
				r.skipChildren(&e)
				continue
			}
			stack = append(stack, next)
		}
	}
	if r.err != nil {
		return r.err
	}
	// gdb's lists run from the last site to the first.
	for _, l := range us.tails {
		for a, b := 0, len(l)-1; a < b; a, b = a+1, b-1 {
			l[a], l[b] = l[b], l[a]
		}
	}
	return nil
}

// validCode reports whether gdb reads the children of a code DIE: its range
// must be valid (an unreadable one is not); a lexical block may also have
// none at all.
func (x *dwarfIndex) validCode(e *rawDIE, absentOK bool) bool {
	if absentOK && !e.has(dwarf.AttrLowpc) && !e.has(dwarf.AttrHighpc) && !e.has(dwarf.AttrRanges) {
		return true
	}
	rs, err := x.dieRanges(e, nil)
	return err == nil && len(x.keepRanges(rs)) > 0
}

// DWARF 4 GNU extensions about call sites.
const (
	attrGNUCallSiteTarget   dwarf.Attr = 0x2113
	attrGNUTailCall         dwarf.Attr = 0x2115
	attrGNUAllTailCallSites dwarf.Attr = 0x2116
	attrGNUAllCallSites     dwarf.Attr = 0x2117
	maxCallSiteOriginHops              = 8
	maxCallSiteSymbolLength            = maxSymbolName
)

// allCallsKnown reports whether a subprogram lists all its (tail) calls,
// looking through its specification and abstract origin like gdb. Each flag
// counts where it is first found along that chain.
func (x *dwarfIndex) allCallsKnown(e *dwarf.Entry) bool {
	flags := []dwarf.Attr{dwarf.AttrCallAllCalls, attrGNUAllCallSites, dwarf.AttrCallAllTailCalls, attrGNUAllTailCallSites}
	seen := make([]bool, len(flags))
	for hop := 0; e != nil && hop <= maxCallSiteOriginHops; hop++ {
		for i, a := range flags {
			if f := e.AttrField(a); f != nil && !seen[i] {
				if v, ok := f.Val.(bool); ok && v {
					return true
				}
				seen[i] = true
			}
		}
		e = x.originOf(e)
	}
	return false
}

// originOf returns the DIE that e's DW_AT_specification or
// DW_AT_abstract_origin points to (the last of the two in e's attribute
// order, as gdb's attribute lookup follows), or nil.
func (x *dwarfIndex) originOf(e *dwarf.Entry) *dwarf.Entry {
	var next dwarf.Offset
	for i := range e.Field {
		f := &e.Field[i]
		if (f.Attr == dwarf.AttrSpecification || f.Attr == dwarf.AttrAbstractOrigin) && f.Class == dwarf.ClassReference {
			next, _ = f.Val.(dwarf.Offset)
		}
	}
	if next == 0 {
		return nil
	}
	return x.entryAt(next)
}

// attrThroughOrigins finds attr on e or, failing that, on the DIE its
// DW_AT_specification or DW_AT_abstract_origin points to (the last of the two
// in e's attribute order), and so on for a bounded number of hops.
func (x *dwarfIndex) attrThroughOrigins(e *dwarf.Entry, attr dwarf.Attr) *dwarf.Field {
	for hop := 0; e != nil && hop <= maxCallSiteOriginHops; hop++ {
		if f := e.AttrField(attr); f != nil {
			return f
		}
		e = x.originOf(e)
	}
	return nil
}

// entryAt reads the DIE at off (nil when off is not a DIE of a known unit).
func (x *dwarfIndex) entryAt(off dwarf.Offset) *dwarf.Entry {
	_, e, _ := x.readerAt(off)
	return e
}

// readerAt reads the DIE at off and returns it with a reader positioned after it and the end
// of its unit (nil entry when off is not a DIE of a known unit).
func (x *dwarfIndex) readerAt(off dwarf.Offset) (*dwarf.Reader, *dwarf.Entry, dwarf.Offset) {
	b, ok := x.boundsOf(off)
	if !ok {
		return nil, nil, 0
	}
	r := x.data.Reader()
	// The unit's own entry first: it carries the bases of indexed forms.
	r.Seek(b.first)
	if _, err := r.Next(); err != nil {
		return nil, nil, 0
	}
	if off != b.first {
		r.Seek(off)
	}
	e, err := r.Next()
	if err != nil || e == nil || e.Offset != off {
		return nil, nil, 0
	}
	return r, e, b.end
}

func (x *dwarfIndex) addCallSite(e *rawDIE, top siteLevel, w *siteWalk) error {
	us := w.us
	var verr error
	val := func(a dwarf.Attr) dieVal {
		v := e.val(a)
		if v.err != nil && verr == nil {
			verr = v.err
		}
		return v
	}
	pc, ok := val(dwarf.AttrCallReturnPC).uint64()
	if !ok {
		if pc, ok = val(dwarf.AttrLowpc).uint64(); !ok {
			if verr != nil {
				return verr
			}
			return nil // gdb: a complaint, and the site is ignored
		}
	}
	if _, dup := us.byPC[pc]; dup {
		return verr
	}
	if len(us.sites) >= maxUnitCallSites {
		return fmt.Errorf("over %d call sites", maxUnitCallSites)
	}
	cs := CallSite{PC: pc}
	cs.Tail = val(dwarf.AttrCallTailCall).flag() || val(attrGNUTailCall).flag()
	f, found := dieVal{}, false
	for _, a := range []dwarf.Attr{dwarf.AttrCallTarget, attrGNUCallSiteTarget, dwarf.AttrCallOrigin, dwarf.AttrAbstractOrigin} {
		if e.has(a) {
			f, found = val(a), true
			break
		}
	}
	if verr != nil {
		return verr
	}
	switch {
	case !found:
		cs.Unknown = true
	case f.isReference():
		off, _ := f.ref()
		t, ok := w.targets[off]
		if !ok {
			var err error
			if t, err = x.callee(off, w.interned); err != nil {
				return err
			}
			w.targets[off] = t
		}
		cs.Targets, cs.Symbol, cs.Unknown = t.Targets, t.Symbol, t.Unknown
	default: // an expression (exprloc, block), empty or not: known only at run
		// time; or a reference into another file (dwz, type units): not read
		cs.Unknown = true
	}
	id := int32(len(us.sites))
	us.sites = append(us.sites, cs)
	us.byPC[pc] = id
	if cs.Tail && top.sub != 0 {
		sub := top.sub
		complete, ok := w.complete[sub]
		if !ok {
			complete = x.allCallsKnown(x.entryAt(sub))
			w.complete[sub] = complete
		}
		if complete {
			us.tails[sub] = append(us.tails[sub], id)
		}
	}
	return nil
}

func flagSet(e *dwarf.Entry, a dwarf.Attr) bool {
	v, ok := e.Val(a).(bool)
	return ok && v
}

// callee resolves a call site's DW_AT_call_origin DIE to what gdb makes of
// it: a symbol name (declarations), range starts, a low pc, or unknown.
func (x *dwarfIndex) callee(off dwarf.Offset, interned map[string]string) (CallSite, error) {
	t := x.entryAt(off)
	if t == nil {
		return CallSite{Unknown: true}, nil
	}
	decl := false
	if f := x.attrThroughOrigins(t, dwarf.AttrDeclaration); f != nil {
		decl, _ = f.Val.(bool)
	}
	if decl && x.attrThroughOrigins(t, dwarf.AttrSpecification) == nil {
		name := ""
		for _, a := range []dwarf.Attr{dwarf.AttrLinkageName, attrMIPSLinkageName, dwarf.AttrName} {
			if f := x.attrThroughOrigins(t, a); f != nil {
				if s, ok := f.Val.(string); ok && s != "" {
					name = s
					break
				}
			}
		}
		if name == "" || len(name) > maxCallSiteSymbolLength {
			return CallSite{Unknown: true}, nil
		}
		if v, ok := interned[name]; ok {
			return CallSite{Symbol: v}, nil
		}
		if !x.names.take(len(name)) {
			return CallSite{}, fmt.Errorf("call-site names over budget")
		}
		interned[name] = name
		return CallSite{Symbol: name}, nil
	}
	rs, err := x.data.Ranges(t)
	if err != nil {
		return CallSite{Unknown: true}, nil // gdb: a complaint, no target
	}
	rs = x.keepRanges(rs)
	if t.AttrField(dwarf.AttrRanges) == nil && len(rs) > 1 {
		rs = rs[:1]
	}
	if len(rs) == 0 {
		return CallSite{Unknown: t.AttrField(dwarf.AttrRanges) == nil}, nil
	}
	out := make([]uint64, 0, min(len(rs), maxTargetRanges))
	for _, r := range rs[:min(len(rs), maxTargetRanges)] {
		out = append(out, r[0])
	}
	return CallSite{Targets: out}, nil
}

// CallSiteAt returns the call site whose return address is pc (a link-time
// address), looked up in the compile unit that holds pc-1 as gdb does. ok is
// false when DWARF describes no call there.
func (f *File) CallSiteAt(pc uint64) (cs CallSite, ok bool, err error) {
	if f.dw == nil || pc == 0 {
		return CallSite{}, false, nil
	}
	u := f.dw.unitFor(pc - 1)
	if u == nil {
		return CallSite{}, false, nil
	}
	us, err := f.dw.sitesOf(u)
	if err != nil {
		return CallSite{}, false, err
	}
	i, ok := us.byPC[pc]
	if !ok {
		return CallSite{}, false, nil
	}
	return us.sites[i], true, nil
}

// FunctionStart returns the entry of the function that contains pc, as gdb's
// get_pc_function_start: the first range of the DWARF subprogram (not an
// inlined one) around pc, else the start of the symbol-table symbol covering
// pc. ok is false when neither covers pc.
func (f *File) FunctionStart(pc uint64) (entry uint64, ok bool, err error) {
	if f.dw != nil {
		if u := f.dw.unitFor(pc); u != nil {
			st, err := f.dw.stateOf(u)
			if err != nil {
				return 0, false, err
			}
			chain, err := st.chain(pc)
			if err != nil {
				return 0, false, err
			}
			if len(chain) > 0 {
				if entry, ok := f.dw.entryOf(st.node(chain[len(chain)-1]).die); ok {
					return entry, true, nil
				}
			}
		}
	}
	if s := f.syms.lookup(pc); s != nil {
		return s.addr, true, nil
	}
	return 0, false, nil
}

// entryOf returns the entry address of the subprogram DIE at off: the start
// of its first valid range, in DIE order.
func (x *dwarfIndex) entryOf(off dwarf.Offset) (uint64, bool) {
	e := x.entryAt(off)
	if e == nil {
		return 0, false
	}
	rs, err := x.data.Ranges(e)
	if err != nil {
		return 0, false
	}
	if rs = x.keepRanges(rs); len(rs) == 0 {
		return 0, false
	}
	return rs[0][0], true
}

// TailCalls returns the tail-call sites of the function whose entry is
// exactly entry (gdb's func_addr_to_tail_call_list), in gdb's order. ok is
// false when no DWARF function starts there; a function that does not list
// all its calls has no tail calls.
func (f *File) TailCalls(entry uint64) (sites []CallSite, ok bool, err error) {
	if f.dw == nil {
		return nil, false, nil
	}
	u := f.dw.unitFor(entry)
	if u == nil {
		return nil, false, nil
	}
	st, err := f.dw.stateOf(u)
	if err != nil {
		return nil, false, err
	}
	chain, err := st.chain(entry)
	if err != nil {
		return nil, false, err
	}
	if len(chain) == 0 {
		return nil, false, nil
	}
	die := st.node(chain[len(chain)-1]).die
	if e, ok := f.dw.entryOf(die); !ok || e != entry {
		return nil, false, nil
	}
	us, err := f.dw.sitesOf(u)
	if err != nil {
		return nil, false, err
	}
	ids := us.tails[die]
	out := make([]CallSite, len(ids))
	for i, id := range ids {
		out[i] = us.sites[id]
	}
	return out, true, nil
}
