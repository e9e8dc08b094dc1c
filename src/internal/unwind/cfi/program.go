package cfi

// RuleKind says how to recover a caller's register (DWARF 5 section 6.4.1).
type RuleKind uint8

const (
	// RuleUnspecified: the program says nothing about the register. Unwinders treat it as
	// "same value" (for the stack pointer: the CFA).
	RuleUnspecified   RuleKind = iota
	RuleUndefined              // the value is lost; for the return address column: outermost frame
	RuleSameValue              // the caller's value is the current value
	RuleOffset                 // saved at CFA+Offset
	RuleValOffset              // the value is CFA+Offset
	RuleRegister               // saved in register Reg
	RuleExpression             // saved at the address Expr computes, with the CFA pushed first
	RuleValExpression          // the value is what Expr computes, with the CFA pushed first
)

var ruleNames = [...]string{"unspecified", "undefined", "same_value", "offset", "val_offset", "register", "expression", "val_expression"}

func (k RuleKind) String() string {
	if int(k) < len(ruleNames) {
		return ruleNames[k]
	}
	return "rule(" + hex(uint64(k)) + ")"
}

// Rule is the rule of one register column.
type Rule struct {
	Kind   RuleKind
	Reg    uint64
	Offset int64
	Expr   []byte
}

// CFARule defines the canonical frame address: Reg+Offset, or the value of Expr when Expr is
// not nil (DW_CFA_def_cfa_expression).
type CFARule struct {
	Reg    uint64
	Offset int64
	Expr   []byte
}

// Row is one row of the CFA table: the rules in force at a pc.
type Row struct {
	Loc      uint64 // first address the row applies to
	CFA      CFARule
	RAColumn uint64 // from the CIE
	Signal   bool   // the FDE describes a signal frame (CIE augmentation 'S')
	// RASigned records DW_CFA_AARCH64_negate_ra_state toggles (an odd count means the return
	// address is signed with pointer authentication); the program itself treats the opcode as a
	// no-op.
	RASigned bool
	ArgsSize uint64 // DW_CFA_GNU_args_size
	regs     []regRule
	buf      [8]regRule // backing store of regs for the usual handful of columns
}

type regRule struct {
	reg  uint64
	rule Rule
}

// Rule returns the rule of a register column.
func (r *Row) Rule(reg uint64) Rule {
	for i := range r.regs {
		if r.regs[i].reg == reg {
			return r.regs[i].rule
		}
	}
	return Rule{}
}

// Columns returns the registers that have an explicit rule, in the order they got one.
func (r *Row) Columns() []uint64 {
	out := make([]uint64, len(r.regs))
	for i := range r.regs {
		out[i] = r.regs[i].reg
	}
	return out
}

func (r *Row) set(reg uint64, rule Rule) {
	for i := range r.regs {
		if r.regs[i].reg == reg {
			r.regs[i].rule = rule
			return
		}
	}
	r.regs = append(r.regs, regRule{reg, rule})
}

// Limits of the CFA program interpreter.
const (
	// MaxRememberDepth bounds DW_CFA_remember_state nesting (gcc and clang use one level).
	MaxRememberDepth = 64
	// maxColumns bounds the distinct register columns of one row.
	maxColumns = 512
)

// DW_CFA_* opcodes (DWARF 5 table 7.29 and the GNU and AArch64 extensions).
const (
	cfaAdvanceLoc       = 0x40
	cfaOffset           = 0x80
	cfaRestore          = 0xc0
	cfaNop              = 0x00
	cfaSetLoc           = 0x01
	cfaAdvanceLoc1      = 0x02
	cfaAdvanceLoc2      = 0x03
	cfaAdvanceLoc4      = 0x04
	cfaOffsetExtended   = 0x05
	cfaRestoreExtended  = 0x06
	cfaUndefined        = 0x07
	cfaSameValue        = 0x08
	cfaRegister         = 0x09
	cfaRememberState    = 0x0a
	cfaRestoreState     = 0x0b
	cfaDefCFA           = 0x0c
	cfaDefCFARegister   = 0x0d
	cfaDefCFAOffset     = 0x0e
	cfaDefCFAExpression = 0x0f
	cfaExpression       = 0x10
	cfaOffsetExtendedSF = 0x11
	cfaDefCFASF         = 0x12
	cfaDefCFAOffsetSF   = 0x13
	cfaValOffset        = 0x14
	cfaValOffsetSF      = 0x15
	cfaValExpression    = 0x16
	cfaMIPSAdvanceLoc8  = 0x1d
	cfaGNUWindowSave    = 0x2d // DW_CFA_AARCH64_negate_ra_state on AArch64
	cfaGNUArgsSize      = 0x2e
	cfaGNUNegOffsetExt  = 0x2f
)

// RowAt runs the CIE's initial instructions and the FDE's instructions up to pc (a link-time
// address inside the FDE) and returns the row in force there.
func (f *FDE) RowAt(pc uint64) (*Row, error) {
	if pc < f.Start || pc >= f.End {
		return nil, ErrNoFDE
	}
	c := f.CIE
	row := &Row{Loc: f.Start, RAColumn: c.RAColumn, Signal: c.Signal}
	row.regs = row.buf[:0]
	m := machine{cie: c, fde: f, row: row, pc: pc}
	if err := m.run(c.initial, c.initialOff, true); err != nil {
		return nil, err
	}
	m.initial = append(m.initialBuf[:0], row.regs...)
	if err := m.run(f.insns, f.insnOff, false); err != nil {
		return nil, err
	}
	return row, nil
}

type savedState struct {
	cfa  CFARule
	regs []regRule
}

type machine struct {
	cie        *CIE
	fde        *FDE
	row        *Row
	pc         uint64
	initial    []regRule
	initialBuf [8]regRule
	stack      []savedState
}

// advance moves the row's location; it reports true when the new location lies past pc, which
// ends the program with the current row.
func (m *machine) advance(delta uint64) bool {
	loc := m.row.Loc + delta*m.cie.CodeAlign
	if m.cie.AddrSize == 4 {
		loc &= 0xffffffff
	}
	if loc > m.pc {
		return true
	}
	m.row.Loc = loc
	return false
}

func (m *machine) run(insns []byte, base uint64, inCIE bool) error {
	t := m.cie.table
	r := &reader{b: insns, base: base, order: t.cfg.Order, section: t.section}
	fail := func(format string, args ...any) error {
		r.fail(format, args...)
		return r.err
	}
	da := m.cie.DataAlign
	for r.left() > 0 && r.err == nil {
		opOff := r.pos()
		op := r.u8()
		var operand uint64
		hi := op & 0xc0
		if hi != 0 {
			operand = uint64(op & 0x3f)
			op = hi
		}
		switch op {
		case cfaAdvanceLoc:
			if m.advance(operand) {
				return nil
			}
		case cfaAdvanceLoc1:
			if m.advance(uint64(r.u8())) && r.err == nil {
				return nil
			}
		case cfaAdvanceLoc2:
			if m.advance(uint64(r.u16())) && r.err == nil {
				return nil
			}
		case cfaAdvanceLoc4:
			if m.advance(uint64(r.u32())) && r.err == nil {
				return nil
			}
		case cfaMIPSAdvanceLoc8:
			if m.advance(r.u64()) && r.err == nil {
				return nil
			}
		case cfaSetLoc:
			var loc uint64
			if inCIE {
				return fail("DW_CFA_set_loc in a CIE")
			}
			if t.section == "eh_frame" {
				ctx := &pointerCtx{bases: t.cfg.Bases, addrSize: m.cie.AddrSize, funcBase: m.fde.Start, deref: t.cfg.Deref}
				var ind bool
				loc, ind = r.pointer(m.cie.FDEEncoding, ctx)
				if ind {
					return fail("indirect DW_CFA_set_loc")
				}
			} else {
				loc = r.word(m.cie.AddrSize)
			}
			if r.err != nil {
				return r.err
			}
			if loc > m.pc {
				return nil
			}
			m.row.Loc = loc
		case cfaOffset:
			m.row.set(operand, Rule{Kind: RuleOffset, Offset: int64(r.uleb()) * da})
		case cfaOffsetExtended:
			reg := r.uleb()
			m.row.set(reg, Rule{Kind: RuleOffset, Offset: int64(r.uleb()) * da})
		case cfaOffsetExtendedSF:
			reg := r.uleb()
			m.row.set(reg, Rule{Kind: RuleOffset, Offset: r.sleb() * da})
		case cfaGNUNegOffsetExt:
			reg := r.uleb()
			m.row.set(reg, Rule{Kind: RuleOffset, Offset: -int64(r.uleb()) * da})
		case cfaValOffset:
			reg := r.uleb()
			m.row.set(reg, Rule{Kind: RuleValOffset, Offset: int64(r.uleb()) * da})
		case cfaValOffsetSF:
			reg := r.uleb()
			m.row.set(reg, Rule{Kind: RuleValOffset, Offset: r.sleb() * da})
		case cfaRestore:
			m.restore(operand, inCIE)
		case cfaRestoreExtended:
			m.restore(r.uleb(), inCIE)
		case cfaUndefined:
			m.row.set(r.uleb(), Rule{Kind: RuleUndefined})
		case cfaSameValue:
			m.row.set(r.uleb(), Rule{Kind: RuleSameValue})
		case cfaRegister:
			reg := r.uleb()
			m.row.set(reg, Rule{Kind: RuleRegister, Reg: r.uleb()})
		case cfaRememberState:
			if len(m.stack) >= MaxRememberDepth {
				return fail("DW_CFA_remember_state nested deeper than %d", MaxRememberDepth)
			}
			m.stack = append(m.stack, savedState{cfa: m.row.CFA, regs: append([]regRule(nil), m.row.regs...)})
		case cfaRestoreState:
			if len(m.stack) == 0 {
				return fail("DW_CFA_restore_state without DW_CFA_remember_state")
			}
			s := m.stack[len(m.stack)-1]
			m.stack = m.stack[:len(m.stack)-1]
			m.row.CFA, m.row.regs = s.cfa, s.regs
		case cfaDefCFA:
			reg := r.uleb()
			m.row.CFA = CFARule{Reg: reg, Offset: int64(r.uleb())}
		case cfaDefCFASF:
			reg := r.uleb()
			m.row.CFA = CFARule{Reg: reg, Offset: r.sleb() * da}
		case cfaDefCFARegister:
			reg := r.uleb()
			if m.row.CFA.Expr != nil {
				return fail("DW_CFA_def_cfa_register while the CFA is an expression")
			}
			m.row.CFA.Reg = reg
		case cfaDefCFAOffset:
			off := int64(r.uleb())
			if m.row.CFA.Expr != nil {
				return fail("DW_CFA_def_cfa_offset while the CFA is an expression")
			}
			m.row.CFA.Offset = off
		case cfaDefCFAOffsetSF:
			off := r.sleb() * da
			if m.row.CFA.Expr != nil {
				return fail("DW_CFA_def_cfa_offset_sf while the CFA is an expression")
			}
			m.row.CFA.Offset = off
		case cfaDefCFAExpression:
			e := r.bytes(r.uleb(), "DW_CFA_def_cfa_expression block")
			if r.err == nil {
				m.row.CFA = CFARule{Expr: nonNil(e)}
			}
		case cfaExpression:
			reg := r.uleb()
			e := r.bytes(r.uleb(), "DW_CFA_expression block")
			m.row.set(reg, Rule{Kind: RuleExpression, Expr: nonNil(e)})
		case cfaValExpression:
			reg := r.uleb()
			e := r.bytes(r.uleb(), "DW_CFA_val_expression block")
			m.row.set(reg, Rule{Kind: RuleValExpression, Expr: nonNil(e)})
		case cfaGNUArgsSize:
			m.row.ArgsSize = r.uleb()
		case cfaGNUWindowSave:
			m.row.RASigned = !m.row.RASigned
		case cfaNop:
		default:
			r.off-- // report the opcode's own offset
			return fail("unknown DW_CFA opcode %#x (at %#x)", op, opOff)
		}
		if len(m.row.regs) > maxColumns {
			return fail("more than %d register columns", maxColumns)
		}
	}
	return r.err
}

// restore resets a column to its rule after the CIE's initial instructions.
func (m *machine) restore(reg uint64, inCIE bool) {
	if inCIE {
		m.row.set(reg, Rule{})
		return
	}
	for _, rr := range m.initial {
		if rr.reg == reg {
			m.row.set(reg, rr.rule)
			return
		}
	}
	m.row.set(reg, Rule{})
}

// nonNil keeps an empty expression distinguishable from "no expression".
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
