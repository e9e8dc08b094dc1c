package unwind

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/unwind/cfi"
)

// Method says how a frame was found.
type Method string

const (
	MethodContext      Method = "context" // frame 0, from the thread's registers
	MethodCFI          Method = "cfi"     // DWARF call frame information of the callee
	MethodEXIDX        Method = "arm_exidx"
	MethodFramePointer Method = "frame_pointer"
	// MethodSigcontext: the callee was a signal trampoline recognised by its code; the
	// frame's registers come from the ucontext the kernel saved.
	MethodSigcontext Method = "sigcontext"
	// MethodFrameless: the callee's pc was in no module, so it was taken as a function not
	// yet set up, with the return address at the stack pointer (what gdb assumes there).
	MethodFrameless Method = "frameless"
	// MethodPrologue: the callee had no unwind tables for its pc; its code, read from the
	// function's start, says where it saved the return address (32-bit ARM only).
	MethodPrologue Method = "prologue"
)

// Frame is one frame of a thread's stack. PC is the instruction address for frame 0 and the
// return address for callers (as gdb prints them), with the ARM Thumb bit and AArch64 pointer
// authentication bits removed. CFA is the frame's canonical frame address (the caller's stack
// pointer at the call), 0 when unknown (the walk stopped there, or an AArch64 frame record
// gave the return address but not the frame's size).
// Signal marks a signal trampoline (gdb's "<signal handler called>"): the frame after it is
// the one the signal interrupted, whose PC is not a return address.
type Frame struct {
	PC, CFA uint64
	Method  Method
	Signal  bool
}

// Result is one thread's walk. Stop says in words why it ended: "end of stack", "no unwind
// information for 0x... (module+offset)" (on ARM followed by "; prologue analysis: ..." when
// one ran), "memory at 0x... unreadable", "not advancing", "limit of N frames", or what was
// wrong with the unwind information or registers.
type Result struct {
	Frames []Frame
	Stop   string
}

// DefaultMaxFrames is the frame limit when Options.MaxFrames is not set.
const DefaultMaxFrames = 1024

// Options tune a walk.
type Options struct {
	MaxFrames int // 0 means DefaultMaxFrames
	// Order is the byte order of the process's memory; nil means little-endian, which every
	// supported Linux ABI uses except the rare big-endian ARM ones.
	Order binary.ByteOrder
}

// maxFrameSize bounds how far above the stack pointer a frame pointer may point.
const maxFrameSize = 64 << 20

// maxSameSP bounds consecutive frames with one stack pointer (leaf functions on ARM and
// AArch64 keep it; a long run means the walk is stuck).
const maxSameSP = 16

var (
	errEndOfStack     = errors.New("end of stack")
	errNoFramePointer = errors.New("no usable frame pointer")
	errNotAdvancing   = errors.New("not advancing")
	errUnknownReg     = errors.New("is unknown")
)

type memError struct {
	addr uint64
	err  error
}

func (e *memError) Error() string { return fmt.Sprintf("memory at %#x unreadable", e.addr) }
func (e *memError) Unwrap() error { return e.err }

type noInfoError struct {
	pc  uint64
	mod *Module
	// prologue says why the prologue analysis did not help, when one ran.
	prologue error
}

func (e *noInfoError) Error() string {
	if e.mod == nil {
		return fmt.Sprintf("no unwind information for %#x (no module)", e.pc)
	}
	msg := fmt.Sprintf("no unwind information for %#x (%s+%#x)", e.pc, e.mod.Path, e.pc-e.mod.Bias)
	if e.prologue != nil {
		msg += "; prologue analysis: " + e.prologue.Error()
	}
	return msg
}

// state is the register file of one frame, by DWARF column.
type state struct {
	regs  [maxColumns]uint64
	valid uint64
	// exact says the pc is not a return address (frame 0, or the frame a signal interrupted),
	// so lookups use it as is instead of pc-1.
	exact bool
	// interrupted says the callee was a signal frame, so the stack may jump (sigaltstack).
	interrupted bool
	// viaFP says the frame was found by its callee's frame record: a zero frame pointer then
	// ends the chain.
	viaFP bool
	// minSP is a lower bound of the stack pointer when the register itself is unknown (an
	// AArch64 frame record sits at the bottom of its frame, so it does not give the caller's sp).
	minSP uint64
}

// stackPointer returns the stack pointer, or its lower bound when only that is known.
func (s *state) stackPointer(a *arch) (uint64, bool) {
	if sp, ok := s.get(a.sp); ok {
		return sp, true
	}
	return s.minSP, s.minSP != 0
}

func (s *state) get(col int) (uint64, bool) {
	if col < 0 || col >= maxColumns || s.valid&(1<<uint(col)) == 0 {
		return 0, false
	}
	return s.regs[col], true
}

func (s *state) set(col int, v uint64) {
	if col >= 0 && col < maxColumns {
		s.regs[col] = v
		s.valid |= 1 << uint(col)
	}
}

type walker struct {
	arch  *arch
	mem   elfcore.Memory
	mods  Modules
	order binary.ByteOrder
	// env evaluates DWARF expressions against cur, the frame being unwound.
	env cfi.ExprEnv
	cur *state
	buf [8]byte
}

type noModules struct{}

func (noModules) ModuleAt(uint64) *Module { return nil }

// Walk unwinds one thread. regs are the NT_PRSTATUS registers in elfcore.Arch order for
// (machine, class); mem is the process's memory; mods finds the module of a pc.
func Walk(machine elf.Machine, class elf.Class, regs []uint64, mem elfcore.Memory, mods Modules, opts Options) Result {
	a := archFor(machine, class)
	ea := elfcore.ArchFor(machine, class)
	if a == nil || ea == nil {
		return Result{Stop: fmt.Sprintf("unsupported machine %v (%v)", machine, class)}
	}
	if len(regs) != len(ea.Regs) {
		return Result{Stop: fmt.Sprintf("%d registers, %s has %d", len(regs), ea.Name, len(ea.Regs))}
	}
	limit := opts.MaxFrames
	if limit <= 0 {
		limit = DefaultMaxFrames
	}
	w := &walker{arch: a, mem: mem, mods: mods, order: opts.Order}
	if w.order == nil {
		w.order = binary.LittleEndian
	}
	if w.mods == nil {
		w.mods = noModules{}
	}
	w.env = cfi.ExprEnv{AddrSize: a.ptrSize, Order: w.order, Reg: w.exprReg, Mem: w.read}

	// Two register files, swapped after each frame.
	var files [2]state
	st, next := &files[0], &files[1]
	st.exact = true
	for i, col := range a.fromCore {
		if col >= 0 {
			st.set(col, w.trunc(regs[i]))
		}
	}
	if a.start != nil {
		a.start(regs, ea, st)
	}

	var res Result
	method := MethodContext
	// Loop detection: the stack pointer never decreases except across a signal frame, so a
	// repeated (pc, sp) can only occur within a run of frames with one stack pointer or after
	// such a crossing.
	var run [][2]uint64
	var crossings map[[2]uint64]struct{}
	for {
		pc, _ := st.get(a.pc)
		sp, _ := st.stackPointer(a)
		if len(res.Frames) >= limit {
			res.Stop = fmt.Sprintf("limit of %d frames", limit)
			break
		}
		res.Frames = append(res.Frames, Frame{PC: a.cleanPC(pc), Method: method})
		cfa, m, err := w.step(st, next)
		res.Frames[len(res.Frames)-1].CFA = cfa
		if err != nil {
			if _, tramp := w.trampoline(st); tramp {
				res.Frames[len(res.Frames)-1].Signal = true
			}
			res.Stop = stopReason(err)
			break
		}
		npc, ok1 := next.get(a.pc)
		nsp, ok2 := next.stackPointer(a)
		if !ok1 || a.cleanPC(npc) == 0 {
			res.Stop = errEndOfStack.Error()
			break
		}
		if !ok2 {
			res.Stop = "caller's stack pointer unknown"
			break
		}
		key := [2]uint64{a.cleanPC(npc), nsp}
		switch {
		case nsp > sp:
			run = run[:0]
		case nsp == sp:
			for _, k := range run {
				if k == key {
					res.Stop = errNotAdvancing.Error()
					return res
				}
			}
			if len(run) >= maxSameSP {
				res.Stop = errNotAdvancing.Error()
				return res
			}
			run = append(run, key)
		case !next.interrupted:
			// The stack grows down, so callers sit higher; only a signal frame may switch
			// stacks (sigaltstack).
			res.Stop = errNotAdvancing.Error()
			return res
		}
		if next.interrupted {
			if crossings == nil {
				crossings = map[[2]uint64]struct{}{}
			}
			if _, dup := crossings[key]; dup {
				res.Stop = errNotAdvancing.Error()
				return res
			}
			crossings[key] = struct{}{}
		}
		res.Frames[len(res.Frames)-1].Signal = next.interrupted
		st, next = next, st
		method = m
	}
	return res
}

func stopReason(err error) string {
	var me *memError
	var cme *cfi.MemoryError
	switch {
	case errors.As(err, &me):
		return me.Error()
	case errors.As(err, &cme):
		return (&memError{addr: cme.Addr}).Error()
	}
	return err.Error()
}

func (w *walker) trunc(v uint64) uint64 {
	if w.arch.ptrSize == 4 {
		return v & 0xffffffff
	}
	return v
}

// exprReg gives DWARF expressions the registers of the frame being unwound.
func (w *walker) exprReg(reg uint64) (uint64, error) {
	if reg >= maxColumns {
		return 0, fmt.Errorf("register %d is not tracked", reg)
	}
	v, ok := w.cur.get(int(reg))
	if !ok {
		return 0, fmt.Errorf("register %d %w", reg, errUnknownReg)
	}
	return v, nil
}

// read loads a value of size bytes (1, 2, 4 or 8) from memory.
func (w *walker) read(addr uint64, size int) (uint64, error) {
	b := w.buf[:]
	if addr+uint64(size) < addr {
		return 0, &memError{addr: addr}
	}
	n, err := w.mem.ReadMemory(b[:size], addr)
	if n < size {
		return 0, &memError{addr: addr, err: err}
	}
	switch size {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(w.order.Uint16(b)), nil
	case 4:
		return uint64(w.order.Uint32(b)), nil
	}
	return w.order.Uint64(b), nil
}

// word loads a pointer-sized value.
func (w *walker) word(addr uint64) (uint64, error) {
	return w.read(w.trunc(addr), w.arch.ptrSize)
}

// step unwinds the frame st into next: with the CFI of its module, else ARM exidx, else the
// analysis of the function's prologue (ARM), else frame pointers. It returns the frame's CFA and
// how the caller was found.
func (w *walker) step(st, next *state) (uint64, Method, error) {
	pc, _ := st.get(w.arch.pc)
	clean := w.arch.cleanPC(pc)
	lookup := clean
	if !st.exact && lookup > 0 {
		lookup-- // a return address: the call is the instruction before it
	}
	mod := w.mods.ModuleAt(lookup)
	if mod != nil && mod.Tables != nil {
		link := lookup - mod.Bias
		fde, err := mod.Tables.ehFrame.FDEFor(link)
		if err != nil {
			fde, err = mod.Tables.debugFrame.FDEFor(link)
		}
		if err == nil {
			cfa, err := w.cfiStep(st, next, fde, link)
			if errors.Is(err, errUnknownReg) && st.viaFP {
				// The frame record did not give every register the CFI needs: stay on the
				// frame pointer chain if it goes on.
				if c, fpErr := w.framePointerStep(st, next); fpErr == nil {
					return c, MethodFramePointer, nil
				}
			}
			if err != nil && !errors.Is(err, errEndOfStack) {
				var me *memError
				var cme *cfi.MemoryError
				if !errors.As(err, &me) && !errors.As(err, &cme) {
					err = fmt.Errorf("CFI for %#x (%s+%#x): %w", clean, mod.Path, link, err)
				}
			}
			return cfa, MethodCFI, err
		}
		if x := mod.Tables.exidx; x != nil {
			e, err := x.Lookup(link)
			switch {
			case err == nil && !e.CantUnwind:
				cfa, err := w.exidxStep(st, next, e)
				if errors.Is(err, cfi.ErrCantUnwind) {
					return 0, MethodEXIDX, errEndOfStack
				}
				if err != nil {
					var cme *cfi.MemoryError
					if !errors.As(err, &cme) {
						err = fmt.Errorf("ARM exidx for %#x (%s+%#x): %w", clean, mod.Path, link, err)
					}
				}
				return cfa, MethodEXIDX, err
			case err != nil && !errors.Is(err, cfi.ErrNoFDE):
				return 0, MethodEXIDX, fmt.Errorf("ARM exidx for %#x (%s+%#x): %w", clean, mod.Path, link, err)
			}
		}
	}
	if mod, ok := w.trampoline(st); ok {
		cfa, err := w.sigcontextStep(st, next)
		if err != nil {
			var me *memError
			if !errors.As(err, &me) {
				err = fmt.Errorf("signal frame at %s: %w", mod.offset(clean), err)
			}
		}
		return cfa, MethodSigcontext, err
	}
	if mod == nil {
		if cfa, err := w.framelessStep(st, next); err == nil {
			return cfa, MethodFrameless, nil
		}
	}
	var prologueErr error
	if w.arch.prologue != nil && mod != nil && mod.Tables != nil {
		cfa, err := w.arch.prologue(w, st, next, mod, lookup-mod.Bias)
		if err == nil {
			return cfa, MethodPrologue, nil
		}
		prologueErr = err
	}
	cfa, err := w.framePointerStep(st, next)
	if errors.Is(err, errEndOfStack) {
		return 0, MethodFramePointer, err
	}
	if err != nil {
		return 0, MethodFramePointer, &noInfoError{pc: clean, mod: mod, prologue: prologueErr}
	}
	return cfa, MethodFramePointer, nil
}

// framePointerStep unwinds by the frame pointer convention and accepts the result only when the
// return address lies in a known module.
func (w *walker) framePointerStep(st, next *state) (uint64, error) {
	cfa, err := w.arch.framePointer(w, st, next)
	if err != nil {
		return 0, err
	}
	npc, _ := next.get(w.arch.pc)
	if c := w.arch.cleanPC(npc); c != 0 && w.mods.ModuleAt(c) == nil {
		return 0, errNoFramePointer
	}
	next.viaFP = true
	return cfa, nil
}

// saneFramePointer checks that fp can be the frame record of the frame whose registers are st.
func (w *walker) saneFramePointer(st *state, fp uint64) error {
	if fp == 0 {
		if st.viaFP {
			return errEndOfStack // the outermost frame of a frame pointer chain clears it
		}
		return errNoFramePointer
	}
	sp, ok := st.stackPointer(w.arch)
	if !ok || fp%uint64(w.arch.ptrSize) != 0 || fp < sp || fp-sp > maxFrameSize {
		return errNoFramePointer
	}
	return nil
}

// cfiStep applies the CFA table row for link (a link-time address in fde).
func (w *walker) cfiStep(st, next *state, fde *cfi.FDE, link uint64) (uint64, error) {
	row, err := fde.RowAt(link)
	if err != nil {
		return 0, err
	}
	w.cur = st
	var cfa uint64
	if row.CFA.Expr != nil {
		if cfa, err = cfi.Eval(row.CFA.Expr, &w.env); err != nil {
			return 0, fmt.Errorf("CFA expression: %w", err)
		}
	} else {
		v, err := w.exprReg(row.CFA.Reg)
		if err != nil {
			return 0, fmt.Errorf("CFA: %w", err)
		}
		cfa = v + uint64(row.CFA.Offset)
	}
	cfa = w.trunc(cfa)

	*next = state{exact: row.Signal, interrupted: row.Signal}
	for col := range w.arch.columns {
		v, ok, err := w.ruleValue(st, row, cfa, uint64(col))
		if err != nil {
			return cfa, err
		}
		if ok {
			next.set(col, w.trunc(v))
		}
	}
	if row.Rule(uint64(w.arch.sp)).Kind == cfi.RuleUnspecified {
		next.set(w.arch.sp, cfa)
	}
	if row.Rule(row.RAColumn).Kind == cfi.RuleUndefined {
		return cfa, errEndOfStack
	}
	ra, ok, err := w.ruleValue(st, row, cfa, row.RAColumn)
	if err != nil {
		return cfa, err
	}
	if !ok {
		return cfa, fmt.Errorf("return address (column %d) is unknown", row.RAColumn)
	}
	next.set(w.arch.pc, w.trunc(ra))
	return cfa, nil
}

// ruleValue computes the caller's value of one register column.
func (w *walker) ruleValue(st *state, row *cfi.Row, cfa, col uint64) (uint64, bool, error) {
	rule := row.Rule(col)
	switch rule.Kind {
	case cfi.RuleUnspecified, cfi.RuleSameValue:
		if col >= maxColumns {
			return 0, false, nil
		}
		v, ok := st.get(int(col))
		return v, ok, nil
	case cfi.RuleUndefined:
		return 0, false, nil
	case cfi.RuleOffset:
		v, err := w.word(cfa + uint64(rule.Offset))
		return v, err == nil, err
	case cfi.RuleValOffset:
		return w.trunc(cfa + uint64(rule.Offset)), true, nil
	case cfi.RuleRegister:
		if rule.Reg >= maxColumns {
			return 0, false, nil
		}
		v, ok := st.get(int(rule.Reg))
		return v, ok, nil
	case cfi.RuleExpression:
		addr, err := cfi.Eval(rule.Expr, &w.env, cfa)
		if err != nil {
			return 0, false, fmt.Errorf("register %d expression: %w", col, err)
		}
		v, err := w.word(addr)
		return v, err == nil, err
	case cfi.RuleValExpression:
		v, err := cfi.Eval(rule.Expr, &w.env, cfa)
		if err != nil {
			return 0, false, fmt.Errorf("register %d expression: %w", col, err)
		}
		return v, true, nil
	}
	return 0, false, fmt.Errorf("register %d: unknown rule %v", col, rule.Kind)
}

// exidxStep runs an ARM EHABI unwind program on the frame's core registers.
func (w *walker) exidxStep(st, next *state, e *cfi.EHABIEntry) (uint64, error) {
	var regs [16]uint32
	for i := range regs {
		v, _ := st.get(i)
		regs[i] = uint32(v)
	}
	before := regs
	err := e.Unwind(&regs, w.read32)
	if err != nil {
		return 0, err
	}
	*next = state{}
	for i := range regs {
		if _, ok := st.get(i); ok || regs[i] != before[i] || i == armSPCol || i == armPCCol {
			next.set(i, uint64(regs[i]))
		}
	}
	return uint64(regs[armSPCol]), nil
}

func (w *walker) read32(addr uint32) (uint32, error) {
	v, err := w.read(uint64(addr), 4)
	return uint32(v), err
}

const (
	armSPCol = 13
	armPCCol = 15
)

// trampoline reports whether the frame st is at a signal trampoline recognised by its code.
// The pc is where the handler returned to, the trampoline's first instruction, so it is
// looked up as is.
func (w *walker) trampoline(st *state) (*Module, bool) {
	pc, _ := st.get(w.arch.pc)
	clean := w.arch.cleanPC(pc)
	mod := w.mods.ModuleAt(clean)
	if mod == nil || !mod.Tables.trampolineAt(w.arch.machine, clean-mod.Bias) {
		return nil, false
	}
	return mod, true
}
