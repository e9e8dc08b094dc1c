package cfi

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// x86-64 CIE initial instructions as gcc writes them: CFA = rsp+8, return address at CFA-8.
var x86Initial = []byte{cfaDefCFA, 7, 8, cfaOffset | 16, 1}

func TestCFAOpcodes(t *testing.T) {
	type want struct {
		cfa   CFARule
		rules map[uint64]Rule
		args  uint64
		ras   bool
		loc   uint64
	}
	cases := []struct {
		name string
		cie  []byte
		fde  []byte
		pc   uint64
		want want
		err  string
	}{
		{name: "initial row", pc: 0x1000, want: want{cfa: CFARule{Reg: 7, Offset: 8}, rules: map[uint64]Rule{16: {Kind: RuleOffset, Offset: -8}}, loc: 0x1000}},
		{name: "advance_loc stops before later rows", fde: []byte{cfaAdvanceLoc | 4, cfaDefCFAOffset, 16}, pc: 0x1003,
			want: want{cfa: CFARule{Reg: 7, Offset: 8}, loc: 0x1000}},
		{name: "advance_loc applies at its address", fde: []byte{cfaAdvanceLoc | 4, cfaDefCFAOffset, 16}, pc: 0x1004,
			want: want{cfa: CFARule{Reg: 7, Offset: 16}, loc: 0x1004}},
		{name: "advance_loc1", fde: cat([]byte{cfaAdvanceLoc1, 0x80, cfaDefCFAOffset, 24}), pc: 0x1080,
			want: want{cfa: CFARule{Reg: 7, Offset: 24}, loc: 0x1080}},
		{name: "advance_loc2", fde: cat([]byte{cfaAdvanceLoc2}, u16(0x90), []byte{cfaDefCFAOffset, 24}), pc: 0x108f,
			want: want{cfa: CFARule{Reg: 7, Offset: 8}, loc: 0x1000}},
		{name: "advance_loc4", fde: cat([]byte{cfaAdvanceLoc4}, u32(0x90), []byte{cfaDefCFAOffset, 24}), pc: 0x1090,
			want: want{cfa: CFARule{Reg: 7, Offset: 24}, loc: 0x1090}},
		{name: "MIPS_advance_loc8", fde: cat([]byte{cfaMIPSAdvanceLoc8}, u64(0x10), []byte{cfaDefCFAOffset, 24}), pc: 0x1010,
			want: want{cfa: CFARule{Reg: 7, Offset: 24}, loc: 0x1010}},
		{name: "set_loc", fde: cat([]byte{cfaSetLoc}, u32(0x1020), []byte{cfaDefCFAOffset, 32}), pc: 0x1020,
			want: want{cfa: CFARule{Reg: 7, Offset: 32}, loc: 0x1020}},
		{name: "set_loc beyond pc", fde: cat([]byte{cfaSetLoc}, u32(0x1020), []byte{cfaDefCFAOffset, 32}), pc: 0x101f,
			want: want{cfa: CFARule{Reg: 7, Offset: 8}}},
		{name: "offset", fde: []byte{cfaOffset | 6, 2}, pc: 0x1000, want: want{rules: map[uint64]Rule{6: {Kind: RuleOffset, Offset: -16}}}},
		{name: "offset_extended", fde: cat([]byte{cfaOffsetExtended}, uleb(70), uleb(3)), pc: 0x1000,
			want: want{rules: map[uint64]Rule{70: {Kind: RuleOffset, Offset: -24}}}},
		{name: "offset_extended_sf", fde: cat([]byte{cfaOffsetExtendedSF}, uleb(3), sleb(-2)), pc: 0x1000,
			want: want{rules: map[uint64]Rule{3: {Kind: RuleOffset, Offset: 16}}}},
		{name: "GNU_negative_offset_extended", fde: cat([]byte{cfaGNUNegOffsetExt}, uleb(3), uleb(2)), pc: 0x1000,
			want: want{rules: map[uint64]Rule{3: {Kind: RuleOffset, Offset: 16}}}},
		{name: "restore to the CIE's rule", fde: []byte{cfaOffset | 16, 3, cfaRestore | 16}, pc: 0x1000,
			want: want{rules: map[uint64]Rule{16: {Kind: RuleOffset, Offset: -8}}}},
		{name: "restore to unspecified", fde: []byte{cfaOffset | 3, 3, cfaRestore | 3}, pc: 0x1000,
			want: want{rules: map[uint64]Rule{3: {}}}},
		{name: "restore_extended", fde: cat([]byte{cfaOffset | 16, 3, cfaRestoreExtended}, uleb(16)), pc: 0x1000,
			want: want{rules: map[uint64]Rule{16: {Kind: RuleOffset, Offset: -8}}}},
		{name: "undefined", fde: cat([]byte{cfaUndefined}, uleb(16)), pc: 0x1000,
			want: want{rules: map[uint64]Rule{16: {Kind: RuleUndefined}}}},
		{name: "same_value", fde: cat([]byte{cfaSameValue}, uleb(3)), pc: 0x1000,
			want: want{rules: map[uint64]Rule{3: {Kind: RuleSameValue}}}},
		{name: "register", fde: cat([]byte{cfaRegister}, uleb(16), uleb(0)), pc: 0x1000,
			want: want{rules: map[uint64]Rule{16: {Kind: RuleRegister, Reg: 0}}}},
		{name: "remember and restore state", fde: []byte{cfaRememberState, cfaDefCFAOffset, 48, cfaOffset | 3, 2, cfaAdvanceLoc | 1, cfaRestoreState}, pc: 0x1001,
			want: want{cfa: CFARule{Reg: 7, Offset: 8}, rules: map[uint64]Rule{3: {}}, loc: 0x1001}},
		{name: "remembered state not yet restored", fde: []byte{cfaRememberState, cfaDefCFAOffset, 48, cfaOffset | 3, 2, cfaAdvanceLoc | 1, cfaRestoreState}, pc: 0x1000,
			want: want{cfa: CFARule{Reg: 7, Offset: 48}, rules: map[uint64]Rule{3: {Kind: RuleOffset, Offset: -16}}}},
		{name: "restore_state without remember_state", fde: []byte{cfaRestoreState}, pc: 0x1000, err: "without DW_CFA_remember_state"},
		{name: "remember_state too deep", fde: func() []byte {
			b := make([]byte, MaxRememberDepth+1)
			for i := range b {
				b[i] = cfaRememberState
			}
			return b
		}(), pc: 0x1000, err: "nested deeper"},
		{name: "def_cfa", fde: cat([]byte{cfaDefCFA}, uleb(6), uleb(16)), pc: 0x1000, want: want{cfa: CFARule{Reg: 6, Offset: 16}}},
		{name: "def_cfa_sf", fde: cat([]byte{cfaDefCFASF}, uleb(6), sleb(-2)), pc: 0x1000, want: want{cfa: CFARule{Reg: 6, Offset: 16}}},
		{name: "def_cfa_register", fde: cat([]byte{cfaDefCFARegister}, uleb(6)), pc: 0x1000, want: want{cfa: CFARule{Reg: 6, Offset: 8}}},
		{name: "def_cfa_offset", fde: cat([]byte{cfaDefCFAOffset}, uleb(200)), pc: 0x1000, want: want{cfa: CFARule{Reg: 7, Offset: 200}}},
		{name: "def_cfa_offset_sf", fde: cat([]byte{cfaDefCFAOffsetSF}, sleb(-4)), pc: 0x1000, want: want{cfa: CFARule{Reg: 7, Offset: 32}}},
		{name: "def_cfa_expression", fde: cat([]byte{cfaDefCFAExpression}, uleb(3), []byte{opBreg0 + 7, 8, opDeref}), pc: 0x1000,
			want: want{cfa: CFARule{Expr: []byte{opBreg0 + 7, 8, opDeref}}}},
		{name: "def_cfa_offset after an expression", fde: cat([]byte{cfaDefCFAExpression}, uleb(1), []byte{opLit0, cfaDefCFAOffset, 8}), pc: 0x1000,
			err: "while the CFA is an expression"},
		{name: "def_cfa_register after an expression", fde: cat([]byte{cfaDefCFAExpression}, uleb(1), []byte{opLit0, cfaDefCFARegister, 6}), pc: 0x1000,
			err: "while the CFA is an expression"},
		{name: "expression", fde: cat([]byte{cfaExpression}, uleb(6), uleb(2), []byte{opBreg0 + 7, 16}), pc: 0x1000,
			want: want{rules: map[uint64]Rule{6: {Kind: RuleExpression, Expr: []byte{opBreg0 + 7, 16}}}}},
		{name: "val_expression", fde: cat([]byte{cfaValExpression}, uleb(7), uleb(2), []byte{opBreg0 + 7, 16}), pc: 0x1000,
			want: want{rules: map[uint64]Rule{7: {Kind: RuleValExpression, Expr: []byte{opBreg0 + 7, 16}}}}},
		{name: "val_offset", fde: cat([]byte{cfaValOffset}, uleb(7), uleb(0)), pc: 0x1000,
			want: want{rules: map[uint64]Rule{7: {Kind: RuleValOffset, Offset: 0}}}},
		{name: "val_offset_sf", fde: cat([]byte{cfaValOffsetSF}, uleb(7), sleb(-1)), pc: 0x1000,
			want: want{rules: map[uint64]Rule{7: {Kind: RuleValOffset, Offset: 8}}}},
		{name: "GNU_args_size", fde: cat([]byte{cfaGNUArgsSize}, uleb(32)), pc: 0x1000, want: want{args: 32}},
		{name: "AARCH64_negate_ra_state", fde: []byte{cfaGNUWindowSave}, pc: 0x1000, want: want{ras: true}},
		{name: "negate_ra_state twice", fde: []byte{cfaGNUWindowSave, cfaAdvanceLoc | 1, cfaGNUWindowSave}, pc: 0x1001, want: want{ras: false, loc: 0x1001}},
		{name: "nop", fde: []byte{cfaNop, cfaNop}, pc: 0x1000},
		{name: "unknown opcode", fde: []byte{cfaNop, 0x3f}, pc: 0x1000, err: "unknown DW_CFA opcode 0x3f"},
		{name: "LEB128 operand too long", fde: cat([]byte{cfaDefCFA}, []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 1}), pc: 0x1000, err: "longer than 10 bytes"},
		{name: "LEB128 operand overflows", fde: cat([]byte{cfaDefCFA}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}), pc: 0x1000, err: "overflows 64 bits"},
		{name: "expression block overruns", fde: cat([]byte{cfaExpression}, uleb(6), uleb(100), []byte{opLit0}), pc: 0x1000, err: "block of 100 bytes, 4 left"},
		{name: "set_loc in the CIE", cie: cat([]byte{cfaSetLoc}, u32(0x1000)), pc: 0x1000, err: "set_loc in a CIE"},
		{name: "restore in the CIE", cie: []byte{cfaOffset | 3, 1, cfaRestore | 3}, pc: 0x1000, want: want{rules: map[uint64]Rule{3: {}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cie := append(append([]byte(nil), x86Initial...), tc.cie...)
			// Instructions are padded with nops; the FDE body must end after them.
			sec := oneFDE(cie, tc.fde)
			tab, err := ParseEHFrame(sec, cfg64())
			require.NoError(t, err)
			f, err := tab.FDEFor(tc.pc)
			require.NoError(t, err)
			row, err := f.RowAt(tc.pc)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				var de *DecodeError
				require.True(t, errors.As(err, &de))
				require.Equal(t, "eh_frame", de.Section)
				return
			}
			require.NoError(t, err)
			w := tc.want
			if w.cfa.Reg == 0 && w.cfa.Offset == 0 && w.cfa.Expr == nil {
				w.cfa = CFARule{Reg: 7, Offset: 8}
			}
			require.Equal(t, w.cfa, row.CFA)
			for reg, rule := range w.rules {
				require.Equal(t, rule, row.Rule(reg), "register %d", reg)
			}
			require.Equal(t, w.args, row.ArgsSize)
			require.Equal(t, w.ras, row.RASigned)
			require.Equal(t, uint64(16), row.RAColumn)
			if w.loc != 0 {
				require.Equal(t, w.loc, row.Loc)
			}
		})
	}
}

func TestRowAtOutsideFDE(t *testing.T) {
	tab, err := ParseEHFrame(oneFDE(x86Initial, nil), cfg64())
	require.NoError(t, err)
	f := tab.FDE(0)
	_, err = f.RowAt(0x1100)
	require.ErrorIs(t, err, ErrNoFDE)
	_, err = tab.FDEFor(0xfff)
	require.ErrorIs(t, err, ErrNoFDE)
	_, err = tab.FDEFor(0x1100)
	require.ErrorIs(t, err, ErrNoFDE)
}
