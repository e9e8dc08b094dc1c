package cfi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ExprEnv is what a DWARF expression may read: registers by DWARF number and target memory.
// Either function may be nil, which makes the operations that need it fail.
type ExprEnv struct {
	AddrSize int              // 4 or 8: the size of the generic type and of DW_OP_deref
	Order    binary.ByteOrder // of constants in the expression
	Reg      func(reg uint64) (uint64, error)
	Mem      func(addr uint64, size int) (uint64, error)
}

// Limits of the expression evaluator.
const (
	MaxExprStack = 64   // values on the stack
	MaxExprSteps = 1024 // operations executed, so branches cannot loop forever
)

// ErrExprUnsupported is returned for operations that are valid DWARF but make no sense in call
// frame information (location descriptions, TLS, calls, typed stack values).
var ErrExprUnsupported = errors.New("unsupported operation in a call frame expression")

// DW_OP_* opcodes (DWARF 5 section 7.7.1).
const (
	opAddr       = 0x03
	opDeref      = 0x06
	opConst1u    = 0x08
	opConst1s    = 0x09
	opConst2u    = 0x0a
	opConst2s    = 0x0b
	opConst4u    = 0x0c
	opConst4s    = 0x0d
	opConst8u    = 0x0e
	opConst8s    = 0x0f
	opConstu     = 0x10
	opConsts     = 0x11
	opDup        = 0x12
	opDrop       = 0x13
	opOver       = 0x14
	opPick       = 0x15
	opSwap       = 0x16
	opRot        = 0x17
	opAbs        = 0x19
	opAnd        = 0x1a
	opDiv        = 0x1b
	opMinus      = 0x1c
	opMod        = 0x1d
	opMul        = 0x1e
	opNeg        = 0x1f
	opNot        = 0x20
	opOr         = 0x21
	opPlus       = 0x22
	opPlusUconst = 0x23
	opShl        = 0x24
	opShr        = 0x25
	opShra       = 0x26
	opXor        = 0x27
	opBra        = 0x28
	opEq         = 0x29
	opGe         = 0x2a
	opGt         = 0x2b
	opLe         = 0x2c
	opLt         = 0x2d
	opNe         = 0x2e
	opSkip       = 0x2f
	opLit0       = 0x30
	opLit31      = 0x4f
	opReg0       = 0x50
	opReg31      = 0x6f
	opBreg0      = 0x70
	opBreg31     = 0x8f
	opRegx       = 0x90
	opBregx      = 0x92
	opDerefSize  = 0x94
	opNop        = 0x96
)

// Eval evaluates a DWARF expression and returns the value on top of the stack. initial is
// pushed first (the CFA, for DW_CFA_expression and DW_CFA_val_expression).
func Eval(expr []byte, env *ExprEnv, initial ...uint64) (uint64, error) {
	if env.AddrSize != 4 && env.AddrSize != 8 {
		return 0, errors.New("expression: address size must be 4 or 8")
	}
	e := evaluator{env: env, r: reader{b: expr, order: env.Order, section: "expression"}}
	for _, v := range initial {
		if !e.push(v) {
			return 0, e.r.err
		}
	}
	if err := e.run(); err != nil {
		return 0, err
	}
	if e.n == 0 {
		return 0, &DecodeError{Section: "expression", Offset: uint64(len(expr)), Msg: "empty stack at the end"}
	}
	return e.stack[e.n-1], nil
}

type evaluator struct {
	env   *ExprEnv
	r     reader
	stack [MaxExprStack]uint64
	n     int
}

func (e *evaluator) mask(v uint64) uint64 { return truncate(v, e.env.AddrSize) }

// signed interprets a generic-type value as signed.
func (e *evaluator) signed(v uint64) int64 {
	if e.env.AddrSize == 4 {
		return int64(int32(uint32(v)))
	}
	return int64(v)
}

func (e *evaluator) push(v uint64) bool {
	if e.n >= MaxExprStack {
		e.r.fail("stack deeper than %d", MaxExprStack)
		return false
	}
	e.stack[e.n] = e.mask(v)
	e.n++
	return true
}

func (e *evaluator) pop() (uint64, bool) {
	if e.n == 0 {
		e.r.fail("stack underflow")
		return 0, false
	}
	e.n--
	return e.stack[e.n], true
}

func (e *evaluator) reg(n uint64) (uint64, bool) {
	if e.env.Reg == nil {
		e.r.fail("register %d is not available", n)
		return 0, false
	}
	v, err := e.env.Reg(n)
	if err != nil {
		if e.r.err == nil {
			e.r.err = fmt.Errorf("expression at offset %#x: %w", e.r.pos(), err)
		}
		return 0, false
	}
	return v, true
}

func (e *evaluator) deref(addr uint64, size int) (uint64, bool) {
	if e.env.Mem == nil {
		e.r.fail("memory is not available")
		return 0, false
	}
	v, err := e.env.Mem(addr, size)
	if err != nil {
		if e.r.err == nil {
			e.r.err = &MemoryError{Addr: addr, Err: err}
		}
		return 0, false
	}
	return v, true
}

// MemoryError is a failed read of target memory during evaluation.
type MemoryError struct {
	Addr uint64
	Err  error
}

func (m *MemoryError) Error() string {
	return "memory at " + hex(m.Addr) + " unreadable: " + m.Err.Error()
}
func (m *MemoryError) Unwrap() error { return m.Err }

func (e *evaluator) run() error {
	r := &e.r
	for steps := 0; r.left() > 0 && r.err == nil; steps++ {
		if steps >= MaxExprSteps {
			r.fail("more than %d operations executed", MaxExprSteps)
			break
		}
		op := r.u8()
		switch {
		case op >= opLit0 && op <= opLit31:
			e.push(uint64(op - opLit0))
			continue
		case op >= opBreg0 && op <= opBreg31:
			off := r.sleb()
			if v, ok := e.reg(uint64(op - opBreg0)); ok && r.err == nil {
				e.push(v + uint64(off))
			}
			continue
		case op >= opReg0 && op <= opReg31:
			r.fail("DW_OP_reg%d: %v", op-opReg0, ErrExprUnsupported)
			continue
		}
		switch op {
		case opAddr:
			e.push(r.word(e.env.AddrSize))
		case opDeref:
			if a, ok := e.pop(); ok {
				if v, ok := e.deref(a, e.env.AddrSize); ok {
					e.push(v)
				}
			}
		case opDerefSize:
			size := int(r.u8())
			if r.err != nil {
				break
			}
			if size < 1 || size > e.env.AddrSize {
				r.fail("DW_OP_deref_size of %d bytes", size)
				break
			}
			if a, ok := e.pop(); ok {
				if v, ok := e.deref(a, size); ok {
					if size < 8 {
						v &= 1<<(8*uint(size)) - 1
					}
					e.push(v)
				}
			}
		case opConst1u:
			e.push(uint64(r.u8()))
		case opConst1s:
			e.push(uint64(int64(int8(r.u8()))))
		case opConst2u:
			e.push(uint64(r.u16()))
		case opConst2s:
			e.push(uint64(int64(int16(r.u16()))))
		case opConst4u:
			e.push(uint64(r.u32()))
		case opConst4s:
			e.push(uint64(int64(int32(r.u32()))))
		case opConst8u, opConst8s:
			e.push(r.u64())
		case opConstu:
			e.push(r.uleb())
		case opConsts:
			e.push(uint64(r.sleb()))
		case opDup:
			if e.need(1) {
				e.push(e.stack[e.n-1])
			}
		case opDrop:
			e.pop()
		case opOver:
			if e.need(2) {
				e.push(e.stack[e.n-2])
			}
		case opPick:
			i := int(r.u8())
			if r.err == nil && e.need(i+1) {
				e.push(e.stack[e.n-1-i])
			}
		case opSwap:
			if e.need(2) {
				e.stack[e.n-1], e.stack[e.n-2] = e.stack[e.n-2], e.stack[e.n-1]
			}
		case opRot:
			if e.need(3) {
				s := e.stack[e.n-3 : e.n]
				s[0], s[1], s[2] = s[2], s[0], s[1] // top becomes third, second becomes top
			}
		case opAbs:
			if v, ok := e.pop(); ok {
				if s := e.signed(v); s < 0 {
					v = uint64(-s)
				}
				e.push(v)
			}
		case opNeg:
			if v, ok := e.pop(); ok {
				e.push(uint64(-e.signed(v)))
			}
		case opNot:
			if v, ok := e.pop(); ok {
				e.push(^v)
			}
		case opPlusUconst:
			c := r.uleb()
			if v, ok := e.pop(); ok && r.err == nil {
				e.push(v + c)
			}
		case opAnd, opDiv, opMinus, opMod, opMul, opOr, opPlus, opShl, opShr, opShra, opXor,
			opEq, opGe, opGt, opLe, opLt, opNe:
			b, ok1 := e.pop()
			a, ok2 := e.pop()
			if ok1 && ok2 {
				if v, ok := e.binary(op, a, b); ok {
					e.push(v)
				}
			}
		case opSkip:
			e.jump(int16(r.u16()))
		case opBra:
			off := int16(r.u16())
			if v, ok := e.pop(); ok && v != 0 {
				e.jump(off)
			}
		case opRegx:
			r.fail("DW_OP_regx: %v", ErrExprUnsupported)
		case opBregx:
			n := r.uleb()
			off := r.sleb()
			if r.err == nil {
				if v, ok := e.reg(n); ok {
					e.push(v + uint64(off))
				}
			}
		case opNop:
		default:
			r.off--
			r.fail("DW_OP %#x: %v", op, ErrExprUnsupported)
		}
	}
	return r.err
}

func (e *evaluator) need(n int) bool {
	if e.n < n {
		e.r.fail("stack underflow: %d values, operation needs %d", e.n, n)
		return false
	}
	return true
}

func (e *evaluator) jump(off int16) {
	if e.r.err != nil {
		return
	}
	t := e.r.off + int(off)
	if t < 0 || t > len(e.r.b) {
		e.r.fail("branch to %d outside the expression", t)
		return
	}
	e.r.off = t
}

func (e *evaluator) binary(op byte, a, b uint64) (uint64, bool) {
	sa, sb := e.signed(a), e.signed(b)
	bits := uint64(8 * e.env.AddrSize)
	b2u := func(c bool) uint64 {
		if c {
			return 1
		}
		return 0
	}
	switch op {
	case opAnd:
		return a & b, true
	case opOr:
		return a | b, true
	case opXor:
		return a ^ b, true
	case opPlus:
		return a + b, true
	case opMinus:
		return a - b, true
	case opMul:
		return a * b, true
	case opDiv:
		if sb == 0 {
			e.r.fail("division by zero")
			return 0, false
		}
		if sb == -1 {
			return uint64(-sa), true // avoids the MinInt64 / -1 trap
		}
		return uint64(sa / sb), true
	case opMod:
		if b == 0 {
			e.r.fail("modulo by zero")
			return 0, false
		}
		return a % b, true
	case opShl:
		if b >= bits {
			return 0, true
		}
		return a << b, true
	case opShr:
		if b >= bits {
			return 0, true
		}
		return a >> b, true
	case opShra:
		if b >= bits {
			b = bits - 1
		}
		return uint64(sa >> b), true
	case opEq:
		return b2u(sa == sb), true
	case opNe:
		return b2u(sa != sb), true
	case opGe:
		return b2u(sa >= sb), true
	case opGt:
		return b2u(sa > sb), true
	case opLe:
		return b2u(sa <= sb), true
	case opLt:
		return b2u(sa < sb), true
	}
	e.r.fail("DW_OP %#x: %v", op, ErrExprUnsupported)
	return 0, false
}
