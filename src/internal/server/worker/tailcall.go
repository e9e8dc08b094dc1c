package worker

import (
	"debug/elf"
	"errors"

	"meta-memfault-go/internal/server/symbolize"
	"meta-memfault-go/internal/server/symstore"
	"meta-memfault-go/internal/unwind"
)

// MethodTailCall marks a frame that is not on the stack: a function that left by a tail call
// (a jump), shown between its callee and its caller from DWARF call-site information.
const MethodTailCall = "tailcall"

// Tail-call frames, as gdb synthesizes them (dwarf2/frame-tailcall.c, call_site_find_chain in
// dwarf2/loc.c), restated:
//
//   - Only a frame unwound by DWARF CFI is a candidate callee (gdb's dwarf2 unwinder looks for
//     the chain; the prologue analyzers, ARM exception tables and frame pointers do not), and
//     it needs a caller frame.
//   - The callee's function starts at the entry of the DWARF function (not an inlined one)
//     around its pc (pc-1 for a frame that is not the innermost), else at its symbol.
//   - The caller's return address must be a call site. If one of the call site's targets is
//     the callee's function start, there is nothing to add. Otherwise every target must be the
//     exact entry of a DWARF function, and the search goes on, depth first, through that
//     function's tail-call sites (listed only when the function says its calls are complete),
//     never through one call site twice on one path, until a site targets the callee's
//     function. Each such path is a possible chain.
//   - Any unknown target met on the way (an indirect call, no target, an abstract function
//     without code, a symbol no file defines, an address that is no function's entry) makes
//     the whole answer "no frames".
//   - The possible chains are intersected: the common head (the callers side) and the common
//     tail (the callees side) are kept. When both are empty the answer is ambiguous: no
//     frames. Otherwise the frames are the tail, innermost first, then the head; a middle
//     that differs between chains is left out. (gdb's intersection keeps a longer head or tail
//     than a shorter later chain has; that is kept too.)
//   - A frame's pc is its call site's return address (just past the jump); its function and
//     line are those of the innermost function at pc-1, inlined or not, without the inlined
//     calls around it.
//
// gdb bounds nothing; here the search has a step budget per frame and per core (hostile DWARF
// can make it exponential), and beyond it no frames are added.
const (
	maxTailSteps     = 4096    // call sites entered while searching one frame's chain
	maxTailCoreSteps = 1 << 20 // for a whole core
	maxTailDepth     = 256     // tail calls in one chain
	maxTailTargets   = 64      // entry addresses of one call site
)

var errNoChain = errors.New("no unambiguous tail-call chain")

// tailCalls finds the tail-call frames of one core. It caches per (return address, callee
// entry) pair, so threads parked in the same place cost one search.
type tailCalls struct {
	set     *unwind.ModuleSet
	mods    []*unwind.Module // the order in which symbol names are resolved
	syms    map[*unwind.Module]*symstore.Symbols
	machine elf.Machine
	left    int // steps left for the core
	memo    map[[2]uint64][]uint64
	names   map[string]nameTarget
	lists   map[uint64][]site // tail-call sites by function entry; nil: no DWARF function there
	// exhausted is set once the core's budget ran out (the trace gets a note).
	exhausted bool
}

type nameTarget struct {
	addr uint64
	ok   bool
}

func newTailCalls(set *unwind.ModuleSet, mods []*unwind.Module, syms map[*unwind.Module]*symstore.Symbols, machine elf.Machine) *tailCalls {
	return &tailCalls{set: set, mods: mods, syms: syms, machine: machine, left: maxTailCoreSteps,
		memo: map[[2]uint64][]uint64{}, names: map[string]nameTarget{}, lists: map[uint64][]site{}}
}

// fileAt returns the module and symbol file holding a runtime address.
func (tc *tailCalls) fileAt(pc uint64) (*unwind.Module, *symbolize.File) {
	m := tc.set.ModuleAt(pc)
	if m == nil {
		return nil, nil
	}
	sy := tc.syms[m]
	if sy == nil || sy.Sym == nil {
		return m, nil
	}
	return m, sy.Sym
}

// frames returns the tail-call frames between callee and caller, innermost first, symbolized
// like the return address of a call: the innermost function at pc-1 (gdb shows no inlined
// calls around it). exact says the callee's pc is not a return address (frame 0, or a frame a
// signal interrupted).
func (tc *tailCalls) frames(exact bool, callee, caller unwind.Frame, missing map[string]bool) []Frame {
	if caller.Method != unwind.MethodCFI {
		return nil // callee was not unwound by CFI
	}
	pcs := tc.chain(exact, callee, caller)
	out := make([]Frame, 0, len(pcs))
	for _, pc := range pcs {
		f := symbolizeFrame(false, unwind.Frame{PC: pc, Method: unwind.Method(MethodTailCall)}, tc.set, tc.syms, tc.machine, missing)[0]
		f.Inlined = false
		out = append(out, f)
	}
	return out
}

func (tc *tailCalls) chain(exact bool, callee, caller unwind.Frame) []uint64 {
	pc, ret := callee.PC, caller.PC
	if tc.machine == elf.EM_ARM {
		pc, ret = pc&^1, ret&^1
	}
	if !exact {
		pc-- // a return address: the call is before it
	}
	if pc == 0 || ret == 0 {
		return nil
	}
	m, f := tc.fileAt(pc)
	if f == nil {
		return nil
	}
	start, ok, err := f.FunctionStart(pc - m.Bias)
	if err != nil || !ok {
		return nil
	}
	start += m.Bias
	key := [2]uint64{ret, start}
	if pcs, ok := tc.memo[key]; ok {
		return pcs
	}
	pcs := tc.search(ret, start)
	tc.memo[key] = pcs
	return pcs
}

// site is a call site in runtime addresses.
type site struct {
	pc      uint64
	targets []uint64
}

// search runs gdb's chain search from the call site returning to ret, towards the function
// that starts at callee; it returns the frames' pcs, innermost first.
func (tc *tailCalls) search(ret, callee uint64) []uint64 {
	m, f := tc.fileAt(ret - 1)
	if f == nil {
		return nil
	}
	cs, ok, err := f.CallSiteAt(ret - m.Bias)
	if err != nil || !ok {
		return nil
	}
	first, err := tc.resolve(m, cs)
	if err != nil {
		return nil
	}
	s := &chainSearch{tc: tc, callee: callee, onPath: map[uint64]bool{}, dead: map[uint64]bool{}, steps: maxTailSteps}
	if err := s.visit(first); err != nil || s.res == nil {
		return nil
	}
	return s.res.frames()
}

// resolve turns a call site of module m into runtime addresses.
func (tc *tailCalls) resolve(m *unwind.Module, cs symbolize.CallSite) (site, error) {
	s := site{pc: cs.PC + m.Bias}
	switch {
	case cs.Unknown:
		return s, errNoChain
	case cs.Symbol != "":
		a, ok := tc.symbol(cs.Symbol)
		if !ok {
			return s, errNoChain
		}
		s.targets = []uint64{a}
	default:
		if len(cs.Targets) > maxTailTargets {
			return s, errNoChain
		}
		s.targets = make([]uint64, len(cs.Targets))
		for i, t := range cs.Targets {
			s.targets[i] = t + m.Bias
		}
	}
	return s, nil
}

// symbol resolves a declaration's name like gdb's lookup_minimal_symbol over all files: the
// first global definition in module order, else the local one of the last module that has
// one, else the first PLT stub.
func (tc *tailCalls) symbol(name string) (uint64, bool) {
	if r, ok := tc.names[name]; ok {
		return r.addr, r.ok
	}
	var found, local, stub nameTarget
	for _, m := range tc.mods {
		sy := tc.syms[m]
		if sy == nil || sy.Sym == nil {
			continue
		}
		a, kind := sy.Sym.SymbolAddress(name)
		switch kind {
		case symbolize.GlobalSymbol:
			found = nameTarget{a + m.Bias, true}
		case symbolize.LocalSymbol:
			local = nameTarget{a + m.Bias, true}
		case symbolize.TrampolineSymbol:
			if !stub.ok {
				stub = nameTarget{a + m.Bias, true}
			}
		}
		if found.ok {
			break
		}
	}
	if !found.ok {
		found = local
	}
	if !found.ok {
		found = stub
	}
	tc.names[name] = found
	return found.addr, found.ok
}

// tailSites returns the tail-call sites of the function whose entry is addr (runtime), or
// errNoChain when no DWARF function starts exactly there.
func (tc *tailCalls) tailSites(addr uint64) ([]site, error) {
	if l, ok := tc.lists[addr]; ok {
		if l == nil {
			return nil, errNoChain
		}
		return l, nil
	}
	l, err := tc.readTailSites(addr)
	if err == nil && l == nil {
		l = []site{}
	}
	tc.lists[addr] = l
	return l, err
}

func (tc *tailCalls) readTailSites(addr uint64) ([]site, error) {
	m, f := tc.fileAt(addr)
	if f == nil {
		return nil, errNoChain
	}
	list, ok, err := f.TailCalls(addr - m.Bias)
	if err != nil || !ok {
		return nil, errNoChain
	}
	out := make([]site, 0, len(list))
	for _, cs := range list {
		s, err := tc.resolve(m, cs)
		if err != nil {
			// gdb resolves a site's targets when it enters the site, and fails then: keep
			// the site without targets (visit fails on it).
			s.targets = nil
		}
		out = append(out, s)
	}
	return out, nil
}

// chainSearch is one depth-first search (gdb's call_site_find_chain_2).
type chainSearch struct {
	tc     *tailCalls
	callee uint64
	path   []uint64 // return addresses of the tail-call sites entered
	onPath map[uint64]bool
	steps  int
	res    *chainResult
	// found counts the chains met and skips the sites passed over for being on the path. A
	// function whose exploration changed neither leads nowhere from any path: dead keeps
	// it from being explored again (the same answer as gdb's, without its exponential walk).
	found, skips int
	dead         map[uint64]bool
}

func (s *chainSearch) visit(cs site) error {
	if cs.targets == nil {
		return errNoChain // an unknown target
	}
	for _, t := range cs.targets {
		if t == s.callee {
			return s.candidate()
		}
	}
	for _, t := range cs.targets {
		if s.dead[t] {
			continue
		}
		sites, err := s.tc.tailSites(t)
		if err != nil {
			return err
		}
		found, skips := s.found, s.skips
		for _, next := range sites {
			if s.onPath[next.pc] {
				s.skips++
				continue
			}
			if s.steps--; s.steps < 0 || len(s.path) >= maxTailDepth {
				return errNoChain
			}
			if s.tc.left--; s.tc.left < 0 {
				s.tc.exhausted = true
				return errNoChain
			}
			s.onPath[next.pc] = true
			s.path = append(s.path, next.pc)
			if err := s.visit(next); err != nil {
				return err
			}
			s.path = s.path[:len(s.path)-1]
			delete(s.onPath, next.pc)
		}
		if s.found == found && s.skips == skips {
			s.dead[t] = true
		}
	}
	return nil
}

// chainResult is the intersection of the chains found so far (gdb's call_site_chain): pcs of
// the first chain, outermost first, of which the first callers and the last callees are
// common to every chain.
type chainResult struct {
	pcs              []uint64
	callers, callees int
}

// candidate intersects the current path with the chains found before (chain_candidate).
func (s *chainSearch) candidate() error {
	s.found++
	if s.res == nil {
		s.res = &chainResult{pcs: append([]uint64(nil), s.path...), callers: len(s.path), callees: len(s.path)}
		return nil
	}
	r, c := s.res, s.path
	for i := 0; i < min(r.callers, len(c)); i++ {
		if r.pcs[i] != c[i] {
			r.callers = i
			break
		}
	}
	for i := 0; i < min(r.callees, len(c)); i++ {
		if r.pcs[len(r.pcs)-1-i] != c[len(c)-1-i] {
			r.callees = i
			break
		}
	}
	if r.callers == 0 && r.callees == 0 {
		s.res = nil
		return errNoChain // ambiguous
	}
	return nil
}

// frames lists the synthesized frames' pcs, innermost first (gdb's pretend_pc).
func (r *chainResult) frames() []uint64 {
	n := len(r.pcs)
	levels := r.callers + r.callees
	if r.callers == n && r.callees == n {
		levels = n
	}
	out := make([]uint64, 0, levels)
	for k := 0; k < levels; k++ {
		switch j := k - r.callees; {
		case k < r.callees:
			out = append(out, r.pcs[n-1-k])
		case r.callees != n && j < r.callers:
			out = append(out, r.pcs[r.callers-1-j])
		default:
			return out // gdb would assert here; no chain reaches it
		}
	}
	return out
}
