package cfi

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEval(t *testing.T) {
	regs := map[uint64]uint64{7: 0x7ffc1000, 16: 0x401026, 6: 0x10, 4: 0xffffff00}
	mem := map[uint64]uint64{0x7ffc1010: 0x7ffc2000, 0x7ffc1008: 0xaabbccddeeff1122}
	env := func(addrSize int) *ExprEnv {
		return &ExprEnv{
			AddrSize: addrSize, Order: le,
			Reg: func(r uint64) (uint64, error) {
				v, ok := regs[r]
				if !ok {
					return 0, fmt.Errorf("no register %d", r)
				}
				return v, nil
			},
			Mem: func(addr uint64, size int) (uint64, error) {
				v, ok := mem[addr]
				if !ok {
					return 0, errors.New("unmapped")
				}
				if size < 8 {
					v &= 1<<(8*uint(size)) - 1
				}
				return v, nil
			},
		}
	}
	loop := []byte{opSkip}
	loop = append(loop, u16(0xfffd)...) // skip -3: back to itself
	deep := make([]byte, MaxExprStack+1)
	for i := range deep {
		deep[i] = opLit0 + 1
	}
	cases := []struct {
		name     string
		expr     []byte
		addrSize int
		initial  []uint64
		want     uint64
		err      string
	}{
		{name: "lit", expr: []byte{opLit0 + 31}, want: 31},
		{name: "addr", expr: cat([]byte{opAddr}, u64(0x1234)), want: 0x1234},
		{name: "const1u", expr: []byte{opConst1u, 0xff}, want: 0xff},
		{name: "const1s", expr: []byte{opConst1s, 0xff}, want: ^uint64(0)},
		{name: "const2u", expr: cat([]byte{opConst2u}, u16(0xfffe)), want: 0xfffe},
		{name: "const2s", expr: cat([]byte{opConst2s}, u16(0xfffe)), want: ^uint64(1)},
		{name: "const4u", expr: cat([]byte{opConst4u}, u32(0xfffffffe)), want: 0xfffffffe},
		{name: "const4s", expr: cat([]byte{opConst4s}, u32(0xfffffffe)), want: ^uint64(1)},
		{name: "const8u", expr: cat([]byte{opConst8u}, u64(1<<63)), want: 1 << 63},
		{name: "const8s", expr: cat([]byte{opConst8s}, u64(1<<63)), want: 1 << 63},
		{name: "constu", expr: cat([]byte{opConstu}, uleb(300)), want: 300},
		{name: "consts", expr: cat([]byte{opConsts}, sleb(-300)), want: uint64(1<<64 - 300)},
		{name: "breg with offset", expr: cat([]byte{opBreg0 + 7}, sleb(16)), want: 0x7ffc1010},
		{name: "bregx", expr: cat([]byte{opBregx}, uleb(16), sleb(-6)), want: 0x401020},
		{name: "breg of an unknown register", expr: []byte{opBreg0 + 1, 0}, err: "no register 1"},
		{name: "plus_uconst", expr: cat([]byte{opLit0 + 8, opPlusUconst}, uleb(0x100)), want: 0x108},
		{name: "deref (x86-64 signal frame CFA)", expr: cat([]byte{opBreg0 + 7}, sleb(16), []byte{opDeref}), want: 0x7ffc2000},
		{name: "deref_size", expr: cat([]byte{opBreg0 + 7}, sleb(8), []byte{opDerefSize, 2}), want: 0x1122},
		{name: "deref_size larger than an address", expr: []byte{opLit0, opDerefSize, 9}, err: "deref_size of 9"},
		{name: "deref of unmapped memory", expr: []byte{opLit0, opDeref}, err: "memory at 0x0 unreadable"},
		{name: "x86-64 PLT entry CFA, early in the entry", // rsp+8 + ((rip&15) >= 11 ? 8 : 0)
			expr: cat([]byte{opBreg0 + 7}, sleb(8), []byte{opBreg0 + 16}, sleb(0), []byte{opLit0 + 15, opAnd, opLit0 + 11, opGe, opLit0 + 3, opShl, opPlus}),
			want: 0x7ffc1008},
		{name: "x86-64 PLT entry CFA, after the push", // rip & 15 = 11
			expr: cat([]byte{opBreg0 + 7}, sleb(8), []byte{opBreg0 + 16}, sleb(5), []byte{opLit0 + 15, opAnd, opLit0 + 11, opGe, opLit0 + 3, opShl, opPlus}),
			want: 0x7ffc1010},
		{name: "initial value (CFA) pushed first", expr: []byte{opLit0 + 8, opMinus}, initial: []uint64{0x100}, want: 0xf8},
		{name: "dup drop over", expr: []byte{opLit0 + 1, opLit0 + 2, opOver, opDup, opDrop, opPlus, opPlus}, want: 4},
		{name: "pick", expr: []byte{opLit0 + 5, opLit0 + 6, opLit0 + 7, opPick, 2}, want: 5},
		{name: "pick beyond the stack", expr: []byte{opLit0, opPick, 1}, err: "stack underflow"},
		{name: "swap", expr: []byte{opLit0 + 1, opLit0 + 2, opSwap, opMinus}, want: 1},
		{name: "rot", expr: []byte{opLit0 + 1, opLit0 + 2, opLit0 + 3, opRot, opDrop, opDrop}, want: 3},
		{name: "abs", expr: cat([]byte{opConsts}, sleb(-5), []byte{opAbs}), want: 5},
		{name: "neg", expr: []byte{opLit0 + 5, opNeg}, want: uint64(1<<64 - 5)},
		{name: "not", expr: []byte{opLit0, opNot}, want: ^uint64(0)},
		{name: "and or xor", expr: []byte{opLit0 + 12, opLit0 + 10, opAnd, opLit0 + 1, opOr, opLit0 + 3, opXor}, want: 10},
		{name: "mul", expr: []byte{opLit0 + 6, opLit0 + 7, opMul}, want: 42},
		{name: "signed div", expr: cat([]byte{opConsts}, sleb(-12), []byte{opLit0 + 4, opDiv}), want: uint64(1<<64 - 3)},
		{name: "div by zero", expr: []byte{opLit0 + 1, opLit0, opDiv}, err: "division by zero"},
		{name: "mod", expr: []byte{opLit0 + 13, opLit0 + 5, opMod}, want: 3},
		{name: "mod by zero", expr: []byte{opLit0 + 1, opLit0, opMod}, err: "modulo by zero"},
		{name: "shr shra", expr: cat([]byte{opConsts}, sleb(-16), []byte{opLit0 + 2, opShra, opConst1u, 60, opShr}), want: 0xf},
		{name: "shift beyond the width", expr: []byte{opLit0 + 1, opConst1u, 64, opShl}, want: 0},
		{name: "comparisons are signed", expr: cat([]byte{opConsts}, sleb(-1), []byte{opLit0 + 1, opLt}), want: 1},
		{name: "eq ne gt le", expr: []byte{opLit0 + 2, opLit0 + 2, opEq, opLit0 + 1, opNe, opLit0 + 3, opLit0 + 2, opGt, opPlus, opLit0 + 1, opLit0 + 1, opLe, opPlus}, want: 2},
		{name: "bra taken", expr: cat([]byte{opLit0 + 1, opBra}, u16(1), []byte{opLit0 + 9, opLit0 + 7}), want: 7},
		{name: "bra not taken", expr: cat([]byte{opLit0, opBra}, u16(1), []byte{opLit0 + 9, opLit0 + 7, opPlus}), want: 16},
		{name: "skip", expr: cat([]byte{opSkip}, u16(1), []byte{opLit0 + 9, opLit0 + 7}), want: 7},
		{name: "branch outside", expr: cat([]byte{opSkip}, u16(50)), err: "outside the expression"},
		{name: "endless loop", expr: loop, err: "more than 1024 operations"},
		{name: "stack too deep", expr: deep, err: "stack deeper than 64"},
		{name: "underflow", expr: []byte{opPlus}, err: "stack underflow"},
		{name: "empty", expr: nil, err: "empty stack"},
		{name: "nop", expr: []byte{opLit0 + 1, opNop}, want: 1},
		{name: "reg is a location, not a value", expr: []byte{opReg0 + 3}, err: "unsupported"},
		{name: "regx", expr: []byte{opRegx, 3}, err: "unsupported"},
		{name: "unknown op", expr: []byte{0xe0}, err: "unsupported"},
		{name: "32-bit arithmetic wraps", addrSize: 4, expr: cat([]byte{opBreg0 + 4}, sleb(0x200)), want: 0x100},
		{name: "32-bit signed compare", addrSize: 4, expr: cat([]byte{opConst4u}, u32(0xffffffff), []byte{opLit0, opLt}), want: 1},
		{name: "32-bit shra", addrSize: 4, expr: cat([]byte{opConst4u}, u32(0x80000000), []byte{opLit0 + 4, opShra}), want: 0xf8000000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			as := tc.addrSize
			if as == 0 {
				as = 8
			}
			v, err := Eval(tc.expr, env(as), tc.initial...)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, v)
		})
	}
}

func TestEvalMemoryError(t *testing.T) {
	_, err := Eval([]byte{opConst2u, 0x34, 0x12, opDeref}, &ExprEnv{AddrSize: 8, Order: le,
		Mem: func(uint64, int) (uint64, error) { return 0, errors.New("gone") }})
	var me *MemoryError
	require.True(t, errors.As(err, &me))
	require.Equal(t, uint64(0x1234), me.Addr)
}
