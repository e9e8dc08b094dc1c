package armprologue

import (
	"encoding/binary"
	"math/bits"
)

// Thumb (T32) decoding, after the Arm Architecture Reference Manual for A-profile (ARMv7-A,
// chapter A6, "Thumb Instruction Set Encoding"):
// https://developer.arm.com/documentation/ddi0406/latest/

// thumb runs the instruction at off and returns its size, or false when the analysis ends
// there (m.why says why).
func (m *machine) thumb(off, pc int) (int, bool) {
	if off+2 > len(m.code) {
		m.why = "code ends"
		return 0, false
	}
	hw1 := binary.LittleEndian.Uint16(m.code[off:])
	m.cond = m.itLeft > 0
	if m.itLeft > 0 {
		m.itLeft--
	}
	if hw1>>11 < 0x1d {
		return 2, m.thumb16(off, hw1)
	}
	if off+4 > pc || off+4 > len(m.code) {
		m.why = "pc inside an instruction"
		return 0, false
	}
	hw2 := binary.LittleEndian.Uint16(m.code[off+2:])
	return 4, m.thumb32(off, hw1, hw2)
}

func (m *machine) thumb16(off int, hw uint16) bool {
	lo3 := func(shift uint) int { return int(hw>>shift) & 7 }
	switch {
	case hw < 0x1800: // LSL/LSR/ASR Rd, Rm, #imm5 (LSL #0: MOVS Rd, Rm)
		if hw&0xffc0 == 0 {
			m.set(lo3(0), m.get(lo3(3)))
		} else {
			m.forget(lo3(0))
		}
	case hw < 0x2000: // ADDS/SUBS Rd, Rn, Rm / #imm3
		var b value
		if hw&0x0400 != 0 {
			b = cst(uint32(hw>>6) & 7)
		} else {
			b = m.get(lo3(6))
		}
		if hw&0x0200 != 0 {
			m.set(lo3(0), sub(m.get(lo3(3)), b))
		} else {
			m.set(lo3(0), add(m.get(lo3(3)), b))
		}
	case hw < 0x4000: // MOVS/CMP/ADDS/SUBS Rdn, #imm8
		rd, imm := lo3(8), cst(uint32(hw&0xff))
		switch (hw >> 11) & 3 {
		case 0:
			m.set(rd, imm)
		case 2:
			m.set(rd, add(m.get(rd), imm))
		case 3:
			m.set(rd, sub(m.get(rd), imm))
		}
	case hw < 0x4400: // data processing on low registers
		switch (hw >> 6) & 15 {
		case 8, 10, 11: // TST, CMP, CMN
		default:
			m.forget(lo3(0))
		}
	case hw < 0x4800: // special data processing and branch/exchange on any register
		rd := int(hw&7) | int(hw>>4)&8
		rm := int(hw>>3) & 15
		vm := m.get(rm)
		switch (hw >> 8) & 3 {
		case 0: // ADD Rdn, Rm
			if rd == regPC {
				m.why = "write to pc"
				return false
			}
			m.set(rd, add(m.get(rd), vm))
		case 1: // CMP
		case 2: // MOV Rd, Rm
			if rd == regPC {
				m.why = "write to pc"
				return false
			}
			m.set(rd, vm)
		case 3: // BX, BLX
			m.why = "branch"
			return false
		}
	case hw < 0x5000: // LDR Rt, [pc, #imm8*4]
		m.set(lo3(8), m.literal((off+4)&^3+int(hw&0xff)*4))
	case hw < 0x6000: // load/store with a register offset
		size := [8]int{4, 2, 1, 1, 4, 2, 1, 2}[(hw>>9)&7]
		load := hw&0x0e00 >= 0x0600
		return m.single(load, size, lo3(0), 0, lo3(3), m.get(lo3(6)), true, false)
	case hw < 0x9000: // STR/LDR(B) #imm5*4 (#imm5), STRH/LDRH #imm5*2
		size := 4
		switch {
		case hw >= 0x8000:
			size = 2
		case hw >= 0x7000:
			size = 1
		}
		imm := (uint32(hw>>6) & 31) * uint32(size)
		return m.single(hw&0x0800 != 0, size, lo3(0), 0, lo3(3), cst(imm), true, false)
	case hw < 0xa000: // STR/LDR Rt, [sp, #imm8*4]
		return m.single(hw&0x0800 != 0, 4, lo3(8), 0, regSP, cst(uint32(hw&0xff)*4), true, false)
	case hw < 0xa800: // ADR Rd, pc + imm8*4
		m.forget(lo3(8))
	case hw < 0xb000: // ADD Rd, sp, #imm8*4
		m.set(lo3(8), m.get(regSP).plus(uint32(hw&0xff)*4))
	case hw < 0xc000:
		return m.thumbMisc(hw)
	case hw < 0xd000: // STMIA/LDMIA Rn!, {list}
		rn := lo3(8)
		list := hw & 0xff
		load := hw&0x0800 != 0
		return m.transferMultiple(rn, list, load, true, false, !load || list&(1<<rn) == 0)
	default: // conditional branch, UDF, SVC, B
		m.why = "branch"
		return false
	}
	return true
}

// thumbMisc runs the 16-bit miscellaneous instructions (0xb000-0xbfff).
func (m *machine) thumbMisc(hw uint16) bool {
	switch {
	case hw&0xff00 == 0xb000: // ADD/SUB sp, sp, #imm7*4
		imm := uint32(hw&0x7f) * 4
		if hw&0x80 != 0 {
			imm = -imm
		}
		m.set(regSP, m.get(regSP).plus(imm))
	case hw&0xf500 == 0xb100: // CBZ, CBNZ
		m.why = "branch"
		return false
	case hw&0xff00 == 0xb200, hw&0xff00 == 0xba00: // SXTH/SXTB/UXTH/UXTB, REV/REV16/REVSH
		if hw&0xffc0 == 0xba80 { // HLT
			m.why = "halt"
			return false
		}
		m.forget(int(hw & 7))
	case hw&0xfe00 == 0xb400: // PUSH {list, lr}
		list := hw&0xff | (hw&0x100)<<6
		return m.transferMultiple(regSP, list, false, false, true, true)
	case hw&0xfe00 == 0xbc00: // POP {list, pc}
		list := hw&0xff | (hw&0x100)<<7
		return m.transferMultiple(regSP, list, true, true, false, true)
	case hw&0xff00 == 0xbe00: // BKPT
		m.why = "breakpoint"
		return false
	case hw&0xff00 == 0xbf00:
		if mask := hw & 15; mask != 0 { // IT: up to four conditional instructions follow
			m.itLeft = 4 - bits.TrailingZeros16(mask)
		}
		// NOP, YIELD, WFE, WFI, SEV
	}
	// SETEND, CPS and the unallocated rest: no effect on core registers.
	return true
}

// thumbExpandImm decodes the modified immediate constant of Thumb-2 data processing.
func thumbExpandImm(imm12 uint32) uint32 {
	imm8 := imm12 & 0xff
	if imm12>>10 == 0 {
		switch (imm12 >> 8) & 3 {
		case 0:
			return imm8
		case 1:
			return imm8<<16 | imm8
		case 2:
			return imm8<<24 | imm8<<8
		default:
			return imm8<<24 | imm8<<16 | imm8<<8 | imm8
		}
	}
	return bits.RotateLeft32(0x80|imm12&0x7f, -int(imm12>>7))
}

// thumbDataOp maps the 4-bit opcode of Thumb-2 data processing (modified immediate or shifted
// register) to an operation; rn == 15 turns ORR and ORN into MOV and MVN.
func thumbDataOp(opcode uint32, rn, rd int, setFlags bool) op {
	if rd == regPC && setFlags {
		switch opcode {
		case 0, 4, 8, 13: // TST, TEQ, CMN, CMP
			return opCompare
		}
	}
	switch opcode {
	case 0:
		return opAnd
	case 1:
		return opBic
	case 2:
		if rn == regPC {
			return opMov
		}
		return opOrr
	case 3:
		if rn == regPC {
			return opMvn
		}
	case 4:
		return opEor
	case 8:
		return opAdd
	case 13:
		return opSub
	case 14:
		return opRsb
	}
	return opOther
}

// dataProc writes the result of a data-processing operation to rd, or stops for a write to pc.
func (m *machine) dataProc(o op, rd int, a, b value) bool {
	if o == opCompare {
		return true
	}
	if rd == regPC {
		m.why = "write to pc"
		return false
	}
	m.set(rd, apply(o, a, b))
	return true
}

func (m *machine) thumb32(off int, hw1, hw2 uint16) bool {
	insn := uint32(hw1)<<16 | uint32(hw2)
	rn := int(hw1 & 15)
	rd := int(hw2>>8) & 15
	rt := int(hw2>>12) & 15
	switch {
	case hw1&0xfe40 == 0xe800: // load/store multiple
		list := hw2
		load := hw1&0x10 != 0
		writeback := hw1&0x20 != 0
		switch (hw1 >> 7) & 3 {
		case 1: // STMIA/LDMIA (POP.W)
			return m.transferMultiple(rn, list, load, true, false, writeback)
		case 2: // STMDB (PUSH.W)/LDMDB
			return m.transferMultiple(rn, list, load, false, true, writeback)
		}
		m.why = "SRS/RFE"
		return false
	case hw1&0xfe40 == 0xe840: // load/store dual or exclusive, table branch
		if hw1&0x0120 != 0 { // STRD/LDRD Rt, Rt2, [Rn, #+/-imm8*4]{!} or post-indexed
			imm := uint32(hw2&0xff) * 4
			if hw1&0x80 == 0 {
				imm = -imm
			}
			load := hw1&0x10 != 0
			if rn == regPC {
				m.forget(rt, rd)
				return true
			}
			return m.single(load, 8, rt, rd, rn, cst(imm), hw1&0x100 != 0, hw1&0x20 != 0)
		}
		switch {
		case hw1&0xfff0 == 0xe8d0 && hw2&0xffe0 == 0xf000: // TBB, TBH
			m.why = "table branch"
			return false
		case hw1&0xfff0 == 0xe840: // STREX: status in Rd
			m.forget(rd)
		case hw1&0xfff0 == 0xe850: // LDREX
			m.forget(rt)
		case hw1&0xfff0 == 0xe8c0: // STREXB/H/D: status in bits 3-0
			m.forget(int(hw2 & 15))
		case hw1&0xfff0 == 0xe8d0: // LDREXB/H/D
			m.forget(rt)
			if hw2&0xf0 == 0x70 {
				m.forget(rd)
			}
		}
	case hw1&0xfe00 == 0xea00: // data processing, shifted register
		opcode := uint32(hw1>>5) & 15
		o := thumbDataOp(opcode, rn, rd, hw1&0x10 != 0)
		b := m.get(int(hw2 & 15))
		if shift := (hw2>>10)&0x1c | (hw2>>6)&3; shift != 0 || hw2&0x30 != 0 {
			b = value{} // shifted or rotated: not followed
		}
		if opcode == 6 { // PKHBT/PKHTB
			o = opOther
		}
		return m.dataProc(o, rd, m.get(rn), b)
	case hw1&0xec00 == 0xec00: // coprocessor, VFP, Advanced SIMD
		m.coprocessor(insn)
	case hw1&0xf800 == 0xf000 && hw2&0x8000 != 0: // branches and miscellaneous control
		if hw2&0x5000 != 0 {
			m.why = "branch"
			return false
		}
		switch o := (hw1 >> 4) & 0x7f; {
		case o&0x38 != 0x38:
			m.why = "branch"
			return false
		case o == 0x38, o == 0x39, o == 0x3a, o == 0x3b: // MSR, hints, barriers, CLREX
		case o == 0x3e, o == 0x3f: // MRS
			m.forget(rd)
		default: // BXJ, SUBS pc, lr, SMC, HVC, UDF
			m.why = "exception or branch"
			return false
		}
	case hw1&0xfa00 == 0xf000: // data processing, modified immediate
		imm := cst(thumbExpandImm(uint32(hw1&0x400)<<1 | uint32(hw2>>4)&0x700 | uint32(hw2&0xff)))
		o := thumbDataOp(uint32(hw1>>5)&15, rn, rd, hw1&0x10 != 0)
		return m.dataProc(o, rd, m.get(rn), imm)
	case hw1&0xfa00 == 0xf200: // data processing, plain binary immediate
		imm12 := uint32(hw1&0x400)<<1 | uint32(hw2>>4)&0x700 | uint32(hw2&0xff)
		switch (hw1 >> 4) & 0x1f {
		case 0x00: // ADDW (ADR when rn is pc)
			if rn == regPC {
				m.forget(rd)
				return true
			}
			return m.dataProc(opAdd, rd, m.get(rn), cst(imm12))
		case 0x0a: // SUBW
			if rn == regPC {
				m.forget(rd)
				return true
			}
			return m.dataProc(opSub, rd, m.get(rn), cst(imm12))
		case 0x04: // MOVW
			return m.dataProc(opMov, rd, value{}, cst(uint32(hw1&15)<<12|imm12))
		case 0x0c: // MOVT
			v := m.get(rd)
			if v.kind == constant {
				v = cst(v.k&0xffff | (uint32(hw1&15)<<12|imm12)<<16)
			} else {
				v = value{}
			}
			return m.dataProc(opMov, rd, value{}, v)
		}
		return m.dataProc(opOther, rd, value{}, value{})
	case hw1&0xff10 == 0xf800: // store single data item
		size := [4]int{1, 2, 4, 0}[(hw1>>5)&3]
		if size == 0 {
			return true // undefined
		}
		switch {
		case hw1&0x80 != 0: // #imm12
			return m.single(false, size, rt, 0, rn, cst(uint32(hw2&0xfff)), true, false)
		case hw2&0x800 != 0: // #+/-imm8, pre- or post-indexed, writeback
			return m.thumbImm8(false, size, rt, rn, hw2)
		case hw2&0xfc0 == 0: // [Rn, Rm, LSL #imm2]
			rm := m.get(int(hw2 & 15))
			if (hw2>>4)&3 != 0 {
				rm = value{}
			}
			return m.single(false, size, rt, 0, rn, rm, true, false)
		}
	case hw1&0xfe10 == 0xf810: // load single data item, memory hints
		size := [4]int{1, 2, 4, 0}[(hw1>>5)&3]
		if size == 0 {
			return true // undefined
		}
		if rt == regPC && size < 4 {
			return true // PLD, PLI
		}
		switch {
		case rn == regPC: // literal
			if rt == regPC {
				m.why = "load into pc"
				return false
			}
			if size != 4 {
				m.forget(rt)
				return true
			}
			at := (off + 4) &^ 3
			if hw1&0x80 != 0 {
				at += int(hw2 & 0xfff)
			} else {
				at -= int(hw2 & 0xfff)
			}
			m.set(rt, m.literal(at))
		case hw1&0x80 != 0: // #imm12
			return m.single(true, size, rt, 0, rn, cst(uint32(hw2&0xfff)), true, false)
		case hw2&0x800 != 0:
			return m.thumbImm8(true, size, rt, rn, hw2)
		case hw2&0xfc0 == 0:
			rm := m.get(int(hw2 & 15))
			if (hw2>>4)&3 != 0 {
				rm = value{}
			}
			return m.single(true, size, rt, 0, rn, rm, true, false)
		default:
			m.forget(rt)
		}
	case hw1&0xff10 == 0xf900: // Advanced SIMD element or structure load/store
		if rm := hw2 & 15; rm != 15 { // writeback
			if rm == 13 {
				m.forget(rn) // by the transfer size: not followed
			} else {
				m.set(rn, add(m.get(rn), m.get(int(rm))))
			}
		}
	case hw1&0xff00 == 0xfa00, hw1&0xff80 == 0xfb00: // data processing (register), multiply
		m.forget(rd)
	case hw1&0xff80 == 0xfb80: // long multiply, divide
		m.forget(rd, rt)
	}
	return true
}

// thumbImm8 runs the Thumb-2 load/store form with an 8-bit immediate: Rt, [Rn, #+/-imm8]
// (P=1 W=0), [Rn, #+/-imm8]! (P=1 W=1) or [Rn], #+/-imm8 (P=0 W=1). P=0 W=0 is undefined.
func (m *machine) thumbImm8(load bool, size, rt, rn int, hw2 uint16) bool {
	pre, up, wb := hw2&0x400 != 0, hw2&0x200 != 0, hw2&0x100 != 0
	if !pre && !wb {
		return true
	}
	imm := uint32(hw2 & 0xff)
	if !up {
		imm = -imm
	}
	return m.single(load, size, rt, 0, rn, cst(imm), pre, wb)
}
