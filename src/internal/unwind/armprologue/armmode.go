package armprologue

import (
	"encoding/binary"
	"math/bits"
)

// ARM (A32) decoding, after the Arm Architecture Reference Manual for A-profile (ARMv7-A,
// chapter A5, "ARM Instruction Set Encoding"):
// https://developer.arm.com/documentation/ddi0406/latest/

// armDataOp maps the 4-bit opcode of ARM data processing to an operation.
var armDataOp = [16]op{
	opAnd, opEor, opSub, opRsb, opAdd, opOther, opOther, opOther,
	opCompare, opCompare, opCompare, opCompare, opOrr, opMov, opBic, opMvn,
}

// arm runs the instruction at off and returns its size, or false when the analysis ends there.
func (m *machine) arm(off int) (int, bool) {
	if off+4 > len(m.code) {
		m.why = "code ends"
		return 0, false
	}
	insn := binary.LittleEndian.Uint32(m.code[off:])
	cond := insn >> 28
	m.cond = cond != 0xe && cond != 0xf
	if cond == 0xf {
		return 4, m.armUnconditional(insn)
	}
	return 4, m.armConditional(off, insn)
}

// armUnconditional runs the instructions with condition field 0b1111.
func (m *machine) armUnconditional(insn uint32) bool {
	switch {
	case insn&0x0e000000 == 0x0a000000: // BLX #imm
		m.why = "call"
		return false
	case insn&0x0e000000 == 0x08000000: // SRS, RFE
		m.why = "SRS/RFE"
		return false
	case insn&0x0c000000 == 0x0c000000: // LDC2/STC2, MCRR2/MRRC2, MCR2/MRC2, CDP2
		m.coprocessor(insn)
	case insn&0x0f100000 == 0x04000000: // Advanced SIMD element or structure load/store
		rn := int(insn>>16) & 15
		if rm := int(insn & 15); rm == 13 {
			m.forget(rn)
		} else if rm != 15 {
			m.set(rn, add(m.get(rn), m.get(rm)))
		}
	}
	// CPS, SETEND, PLD/PLI, barriers, CLREX, Advanced SIMD data processing: no effect on
	// core registers.
	return true
}

// armShifted returns the operand of an immediate-shifted register (bits 11-0), followed only
// without a shift.
func (m *machine) armShifted(insn uint32) value {
	if insn&0xff0 != 0 {
		return value{}
	}
	if insn&15 == regPC {
		return value{} // pc-relative values are not followed
	}
	return m.get(int(insn & 15))
}

func (m *machine) armConditional(off int, insn uint32) bool {
	rn := int(insn>>16) & 15
	rd := int(insn>>12) & 15
	switch (insn >> 25) & 7 {
	case 0:
		if insn&0x90 == 0x90 {
			return m.armMultiplyExtra(insn, rn, rd)
		}
		opcode := (insn >> 21) & 15
		if opcode&0xc == 0x8 && insn&(1<<20) == 0 {
			return m.armMisc(insn, rn, rd)
		}
		b := value{}
		if insn&0x10 == 0 { // shift by immediate; by register is not followed
			b = m.armShifted(insn)
		}
		return m.armData(armDataOp[opcode], rn, rd, b)
	case 1:
		opcode := (insn >> 21) & 15
		imm := bits.RotateLeft32(insn&0xff, -int(insn>>8&15)*2)
		if opcode&0xc == 0x8 && insn&(1<<20) == 0 {
			imm16 := (insn>>4)&0xf000 | insn&0xfff
			switch opcode {
			case 8: // MOVW
				return m.dataProc(opMov, rd, value{}, cst(imm16))
			case 10: // MOVT
				v := m.get(rd)
				if v.kind == constant {
					v = cst(v.k&0xffff | imm16<<16)
				} else {
					v = value{}
				}
				return m.dataProc(opMov, rd, value{}, v)
			}
			return true // MSR #imm, hints
		}
		return m.armData(armDataOp[opcode], rn, rd, cst(imm))
	case 2, 3: // load/store word or byte
		if insn&(1<<25) != 0 && insn&0x10 != 0 {
			return m.armMedia(insn, rn, rd)
		}
		var offset value
		if insn&(1<<25) == 0 {
			offset = cst(insn & 0xfff)
		} else {
			offset = m.armShifted(insn)
		}
		up := insn&(1<<23) != 0
		if !up {
			offset = sub(cst(0), offset)
		}
		size := 4
		if insn&(1<<22) != 0 {
			size = 1
		}
		load := insn&(1<<20) != 0
		pre := insn&(1<<24) != 0
		wb := !pre || insn&(1<<21) != 0
		if rn == regPC {
			if !load {
				return true
			}
			if rd == regPC {
				m.why = "load into pc"
				return false
			}
			if size == 4 && insn&(1<<25) == 0 && pre {
				at := off + 8
				if up {
					at += int(insn & 0xfff)
				} else {
					at -= int(insn & 0xfff)
				}
				m.set(rd, m.literal(at))
			} else {
				m.forget(rd)
			}
			return true
		}
		return m.single(load, size, rd, 0, rn, offset, pre, wb)
	case 4: // LDM/STM
		return m.transferMultiple(rn, uint16(insn), insn&(1<<20) != 0, insn&(1<<23) != 0, insn&(1<<24) != 0, insn&(1<<21) != 0)
	case 5: // B, BL
		m.why = "branch"
		return false
	case 6:
		m.coprocessor(insn)
	case 7:
		if insn&(1<<24) != 0 {
			m.why = "SVC"
			return false
		}
		m.coprocessor(insn)
	}
	return true
}

// armData runs ARM data processing: rd = rn <op> b.
func (m *machine) armData(o op, rn, rd int, b value) bool {
	a := value{}
	if rn != regPC {
		a = m.get(rn)
	}
	return m.dataProc(o, rd, a, b)
}

// armMisc runs the miscellaneous instructions of the data-processing space (opcode 10xx, S=0).
func (m *machine) armMisc(insn uint32, rn, rd int) bool {
	if insn&0x80 != 0 { // halfword multiplies SMLA<x><y>, SMLAW<y>, SMULW<y>, SMLAL<x><y>, SMUL<x><y>
		m.forget(rn)
		if (insn>>21)&3 == 2 {
			m.forget(rd)
		}
		return true
	}
	switch (insn >> 4) & 7 {
	case 0: // MRS, MSR
		if insn&(1<<21) == 0 {
			m.forget(rd)
		}
	case 1: // BX, CLZ
		if (insn>>21)&3 == 3 {
			m.forget(rd)
			return true
		}
		m.why = "branch"
		return false
	case 5: // QADD, QSUB, QDADD, QDSUB
		m.forget(rd)
	default: // BXJ, BLX, ERET, BKPT, HVC, SMC
		m.why = "branch or exception"
		return false
	}
	return true
}

// armMultiplyExtra runs multiplies, synchronization primitives and the extra load/store
// instructions (halfword, signed byte, doubleword).
func (m *machine) armMultiplyExtra(insn uint32, rn, rd int) bool {
	if insn&0x60 == 0 {
		switch {
		case insn&(1<<24) == 0 && insn&(1<<23) == 0: // MUL, MLA, MLS, UMAAL
			m.forget(rn)
			if (insn>>20)&15 == 4 { // UMAAL: RdHi, RdLo
				m.forget(rd)
			}
		case insn&(1<<24) == 0: // UMULL, UMLAL, SMULL, SMLAL
			m.forget(rn, rd)
		default: // SWP, LDREX*, STREX*
			m.forget(rd)
			if insn&0x00f00000 == 0x00b00000 { // LDREXD
				m.forget(rd + 1)
			}
		}
		return true
	}
	load := insn&(1<<20) != 0
	op2 := (insn >> 5) & 3
	size := 2
	rt2 := 0
	switch {
	case load && op2 != 1: // LDRSB, LDRSH
		if op2 == 2 {
			size = 1
		}
	case !load && op2 == 2: // LDRD
		load, size, rt2 = true, 8, rd+1
	case !load && op2 == 3: // STRD
		size, rt2 = 8, rd+1
	}
	var offset value
	if insn&(1<<22) != 0 {
		offset = cst((insn>>4)&0xf0 | insn&15)
	} else if insn&15 != regPC {
		offset = m.get(int(insn & 15))
	}
	if insn&(1<<23) == 0 {
		offset = sub(cst(0), offset)
	}
	pre := insn&(1<<24) != 0
	if rn == regPC {
		if load {
			m.forget(rd, rt2)
		}
		return true
	}
	if size == 8 && (rd&1 != 0 || rd == 14) {
		if load {
			m.forget(rd, rt2)
		}
		return true // unpredictable register pair
	}
	return m.single(load, size, rd, rt2, rn, offset, pre, !pre || insn&(1<<21) != 0)
}

// armMedia runs the media instructions (bits 27-25 = 011, bit 4 = 1).
func (m *machine) armMedia(insn uint32, rn, rd int) bool {
	op1 := (insn >> 20) & 0x1f
	switch {
	case op1 == 0x1f && (insn>>5)&7 == 7: // UDF
		m.why = "undefined instruction"
		return false
	case op1&0x18 == 0x10: // signed multiplies, SDIV, UDIV: Rd in bits 19-16
		m.forget(rn)
		if op1 == 0x14 { // SMLALD, SMLSLD
			m.forget(rd)
		}
	case op1 == 0x18 && (insn>>5)&7 == 0: // USAD8, USADA8
		m.forget(rn)
	default: // parallel add/subtract, packing, saturation, reversal, bit fields
		if rd != regPC {
			m.forget(rd)
		}
	}
	return true
}
