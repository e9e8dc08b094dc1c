package armprologue

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Core register numbers (also their DWARF numbers, AADWARF32 section 4.1).
const (
	regR7 = 7
	regFP = 11 // r11, the ARM-state frame pointer
	regSP = 13
	regLR = 14
	regPC = 15
)

// MaxSlots bounds the stack words one analysis tracks; code that stores more is not a prologue.
const MaxSlots = 1024

// ErrTooManyStores is returned for code that stores more than MaxSlots distinct stack words.
var ErrTooManyStores = errors.New("too many stack stores for a prologue")

// Frame is the layout of a function's frame at one instruction. The CFA is the stack pointer at
// the function's entry (the caller's stack pointer at the call).
type Frame struct {
	// SPBased has bit r set when register r holds the CFA plus SPOffset[r] (a negative number
	// once the function has allocated its frame), so the CFA is r's value minus SPOffset[r].
	SPBased  uint16
	SPOffset [16]int32
	// Saved has bit r set when the entry value of register r is stored at CFA + SavedAt[r].
	// Bit 14 (lr) gives the return address. r13 and r15 are never reported.
	Saved   uint16
	SavedAt [16]int32
	// Changed has bit r set when r may no longer hold its entry value: a register that is
	// neither saved nor changed still holds the caller's value.
	Changed uint16
	// End is the offset of the first instruction not analysed: the pc offset given to
	// Analyze, or the instruction that may change the pc (a branch, a call, a pop into pc).
	End int
	// Stop says why the analysis ended before the pc ("branch at 0x1c"), "" when it reached it.
	Stop string
}

// CFA computes the CFA from the registers of the frame. It tries the frame pointers first (r11,
// then r7: they stay valid when the stack pointer moves after the prologue, as gdb prefers
// them), then sp, skipping any register reg does not know. It returns the register used.
func (f *Frame) CFA(reg func(r int) (uint32, bool)) (cfa uint32, used int, ok bool) {
	for _, r := range [...]int{regFP, regR7, regSP} {
		if f.SPBased&(1<<r) == 0 {
			continue
		}
		v, known := reg(r)
		if !known {
			continue
		}
		return v - uint32(f.SPOffset[r]), r, true
	}
	return 0, 0, false
}

// Analyze reads a function's code from its start and returns the frame's layout just before
// the instruction at offset pc (pc itself is not executed). Bytes after pc are read only as
// literal pool data. thumb selects Thumb (T32) or ARM (A32) code. Instructions are little-endian
// (ARMv7 BE8 images keep code little-endian too); order is the byte order of literal data.
func Analyze(code []byte, pc int, thumb bool, order binary.ByteOrder) (*Frame, error) {
	align := 4
	if thumb {
		align = 2
	}
	switch {
	case pc < 0 || pc > len(code):
		return nil, fmt.Errorf("pc offset %d outside %d bytes of code", pc, len(code))
	case pc%align != 0:
		return nil, fmt.Errorf("pc offset %#x is not %d-byte aligned", pc, align)
	}
	m := newMachine(code, order)
	var stop string
	off := 0
	for off < pc {
		var n int
		var ok bool
		if thumb {
			n, ok = m.thumb(off, pc)
		} else {
			n, ok = m.arm(off)
		}
		if m.err != nil {
			return nil, m.err
		}
		if !ok {
			stop = fmt.Sprintf("%s at %#x", m.why, off)
			break
		}
		off += n
	}
	return m.frame(off, stop), nil
}

// kind of an abstract value.
const (
	unknown  = iota
	constant // k
	entry    // the value register reg had at the function's entry, plus k
)

// value is what the analysis knows of a register or stack word.
type value struct {
	kind uint8
	reg  uint8
	k    uint32
}

func (v value) is(o value) bool { return v == o }

func cst(k uint32) value  { return value{kind: constant, k: k} }
func entryOf(r int) value { return value{kind: entry, reg: uint8(r)} }
func (v value) plus(k uint32) value {
	if v.kind == unknown {
		return v
	}
	v.k += k
	return v
}

func add(a, b value) value {
	switch {
	case b.kind == constant:
		return a.plus(b.k)
	case a.kind == constant:
		return b.plus(a.k)
	}
	return value{}
}

func sub(a, b value) value {
	switch {
	case b.kind == constant:
		return a.plus(-b.k)
	case a.kind == entry && b.kind == entry && a.reg == b.reg:
		return cst(a.k - b.k)
	}
	return value{}
}

// op is a data-processing operation, common to the ARM and Thumb-2 encodings.
type op int

const (
	opOther   op = iota // writes a value the analysis does not follow
	opCompare           // sets flags only
	opAdd
	opSub
	opRsb
	opMov
	opMvn
	opAnd
	opOrr
	opEor
	opBic
)

func apply(o op, a, b value) value {
	switch o {
	case opAdd:
		return add(a, b)
	case opSub:
		return sub(a, b)
	case opRsb:
		return sub(b, a)
	case opMov:
		return b
	}
	if b.kind != constant || o != opMvn && a.kind != constant {
		return value{}
	}
	switch o {
	case opMvn:
		return cst(^b.k)
	case opAnd:
		return cst(a.k & b.k)
	case opOrr:
		return cst(a.k | b.k)
	case opEor:
		return cst(a.k ^ b.k)
	case opBic:
		return cst(a.k &^ b.k)
	}
	return value{}
}

type slot struct {
	v   value
	seq int // order of the store, to report a register's first save
}

// machine is the abstract state of the function's registers and stack.
type machine struct {
	code  []byte
	order binary.ByteOrder
	regs  [16]value
	stack map[uint32]slot // by offset from the entry sp (word-aligned)
	seq   int
	// cond makes the current instruction conditional: whatever it writes becomes unknown
	// unless it writes what was there.
	cond bool
	// itLeft counts the instructions still inside a Thumb IT block.
	itLeft int
	why    string // why the last instruction stopped the analysis
	err    error
}

func newMachine(code []byte, order binary.ByteOrder) *machine {
	m := &machine{code: code, order: order, stack: map[uint32]slot{}}
	for r := range m.regs {
		m.regs[r] = entryOf(r)
	}
	return m
}

// get returns a register's value; pc reads are handled by the decoders (literal loads).
func (m *machine) get(r int) value {
	if r < 0 || r > 14 {
		return value{}
	}
	return m.regs[r]
}

// set writes a register (never pc: the decoders stop before an instruction that writes it).
func (m *machine) set(r int, v value) {
	if r < 0 || r > 14 {
		return
	}
	if m.cond && !m.regs[r].is(v) {
		v = value{}
	}
	m.regs[r] = v
}

// forget marks registers as holding values the analysis does not follow.
func (m *machine) forget(rs ...int) {
	for _, r := range rs {
		if r >= 0 && r <= 14 {
			m.regs[r] = value{}
		}
	}
}

// stackOffset returns addr's offset from the entry stack pointer when it is known.
func stackOffset(addr value) (uint32, bool) {
	return addr.k, addr.kind == entry && addr.reg == regSP
}

// store records a store of size bytes of v at addr. Stores to addresses not known to be in the
// frame are ignored (they go to globals or other objects).
func (m *machine) store(addr value, size int, v value) {
	off, ok := stackOffset(addr)
	if !ok {
		return
	}
	whole := size == 4 && off%4 == 0
	if whole && !m.cond {
		if _, ok := m.stack[off]; !ok && len(m.stack) >= MaxSlots {
			m.err = ErrTooManyStores
			return
		}
		m.seq++
		m.stack[off] = slot{v: v, seq: m.seq}
		return
	}
	if whole && m.stack[off].v.is(v) {
		return // a conditional store of what is there already
	}
	// A partial or conditional write leaves the words it touches unknown.
	for w := off &^ 3; w != (off+uint32(size)+3)&^3; w += 4 {
		if _, ok := m.stack[w]; ok {
			m.stack[w] = slot{}
		}
	}
}

// load returns the value loaded by a word load from addr.
func (m *machine) load(addr value) value {
	off, ok := stackOffset(addr)
	if !ok || off%4 != 0 {
		return value{}
	}
	return m.stack[off].v
}

// literal reads the word at code offset off (a literal pool entry); unknown outside the code.
func (m *machine) literal(off int) value {
	if off < 0 || off > len(m.code)-4 {
		return value{}
	}
	return cst(m.order.Uint32(m.code[off:]))
}

// transferMultiple runs LDM/STM (and PUSH/POP): registers in list, the lowest at the lowest
// address, starting at base (incrementing or decrementing, before or after), with writeback.
// It returns false for a load into pc.
func (m *machine) transferMultiple(rn int, list uint16, load, increment, before, writeback bool) bool {
	n := uint32(0)
	for r := 0; r < 16; r++ {
		if list&(1<<r) != 0 {
			n++
		}
	}
	if load && list&(1<<regPC) != 0 {
		m.why = "load into pc"
		return false
	}
	base := m.get(rn)
	var start value
	switch {
	case increment && before:
		start = base.plus(4)
	case increment:
		start = base
	case before:
		start = base.plus(-(4 * n))
	default:
		start = base.plus(4 - 4*n)
	}
	var vals [16]value
	for r := range vals {
		vals[r] = m.get(r)
	}
	if writeback {
		if increment {
			m.set(rn, base.plus(4*n))
		} else {
			m.set(rn, base.plus(-(4 * n)))
		}
	}
	addr := start
	for r := 0; r < 16; r++ {
		if list&(1<<r) == 0 {
			continue
		}
		if load {
			m.set(r, m.load(addr))
		} else {
			m.store(addr, 4, vals[r])
		}
		addr = addr.plus(4)
	}
	return true
}

// single runs a load or store of one register (size 1, 2 or 4 bytes; 8 for LDRD/STRD of rt
// and rt2) at rn + offset, pre- or post-indexed, with writeback. It returns false for a load
// into pc.
func (m *machine) single(load bool, size int, rt, rt2, rn int, offset value, pre, writeback bool) bool {
	if load && (rt == regPC || size == 8 && rt2 == regPC) {
		m.why = "load into pc"
		return false
	}
	base := m.get(rn)
	moved := add(base, offset)
	addr := base
	if pre {
		addr = moved
	}
	vt, vt2 := m.get(rt), m.get(rt2)
	if writeback {
		m.set(rn, moved)
	}
	switch {
	case load && size == 4:
		m.set(rt, m.load(addr))
	case load && size == 8:
		m.set(rt, m.load(addr))
		m.set(rt2, m.load(addr.plus(4)))
	case load:
		m.forget(rt)
	case size == 8:
		m.store(addr, 4, vt)
		m.store(addr.plus(4), 4, vt2)
	default:
		m.store(addr, size, vt)
	}
	return true
}

// coprocessor runs the instructions of the coprocessor space (VFP, Advanced SIMD, MRC and the
// like), shared by ARM (bits 27-0, after the condition) and Thumb-2 (hw1:hw2): only their
// effects on core registers matter. insn has bits 27-25 = 110 or 111.
func (m *machine) coprocessor(insn uint32) {
	rn := int(insn>>16) & 15
	rt := int(insn>>12) & 15
	switch {
	case insn&0x0e000000 == 0x0c000000: // 110P UDWL: LDC/STC, VLDM/VSTM/VPUSH/VPOP, VLDR/VSTR, MCRR
		p, u, w := insn&(1<<24) != 0, insn&(1<<23) != 0, insn&(1<<21) != 0
		if !p && !u && !w {
			if insn&(1<<22) != 0 && insn&(1<<20) != 0 { // MRRC, VMOV to two core registers
				m.forget(rt, rn)
			}
			return
		}
		if w && rn != regPC {
			imm := (insn & 0xff) * 4
			if u {
				m.set(rn, m.get(rn).plus(imm))
			} else {
				m.set(rn, m.get(rn).plus(-imm))
			}
		}
	case insn&0x0f000010 == 0x0e000010 && insn&(1<<20) != 0: // MRC, VMOV/VMRS to a core register
		if rt != regPC {
			m.forget(rt)
		}
	}
}

// frame summarises the state reached.
func (m *machine) frame(end int, stop string) *Frame {
	f := &Frame{End: end, Stop: stop}
	for r := 0; r < 16; r++ {
		v := m.regs[r]
		if v.kind == entry && v.reg == regSP {
			f.SPBased |= 1 << r
			f.SPOffset[r] = int32(v.k)
		}
		if r != regSP && r != regPC && !v.is(entryOf(r)) {
			f.Changed |= 1 << r
		}
	}
	first := [16]int{}
	for off, s := range m.stack {
		v := s.v
		if v.kind != entry || v.k != 0 || v.reg == regSP || v.reg == regPC {
			continue
		}
		r := v.reg
		if f.Saved&(1<<r) == 0 || s.seq < first[r] {
			f.Saved |= 1 << r
			f.SavedAt[r] = int32(off)
			first[r] = s.seq
		}
	}
	return f
}
