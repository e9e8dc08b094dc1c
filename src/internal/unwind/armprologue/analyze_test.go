package armprologue

import (
	"encoding/binary"
	"errors"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
)

// The encodings below were produced by GNU as 2.40 (arm-linux-gnueabihf-as -march=armv7-a
// -mfpu=vfpv3-d16) and checked with objdump; the assembly is next to each.

// t16 lays out Thumb code: 16-bit instructions, and 32-bit ones as their two halfwords.
func t16(hws ...uint16) []byte {
	b := make([]byte, 2*len(hws))
	for i, h := range hws {
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return b
}

// a32 lays out ARM code.
func a32(ws ...uint32) []byte {
	b := make([]byte, 4*len(ws))
	for i, w := range ws {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

// noSP marks a case where the stack pointer's value is lost.
const noSP = 1 << 30

type want struct {
	sp    int32         // sp's offset from the CFA, or noSP
	based map[int]int32 // other registers holding the CFA plus an offset
	saved map[int]int32 // registers saved, at these offsets from the CFA
	chg   []int         // registers that must be reported as changed (others may be)
	keep  []int         // registers that must not be reported as changed
	end   int           // where the analysis ended; 0 for the pc unless it stopped
	stop  string        // part of Frame.Stop when the analysis stopped early
}

type tcase struct {
	name  string
	thumb bool
	code  []byte
	pc    int // 0: the end of the code
	want  want
}

func check(t *testing.T, c tcase) {
	t.Helper()
	pc := c.pc
	if pc == 0 {
		pc = len(c.code)
	}
	f, err := Analyze(c.code, pc, c.thumb, binary.LittleEndian)
	require.NoError(t, err)
	based := map[int]int32{}
	for r := 0; r < 16; r++ {
		if f.SPBased&(1<<r) != 0 {
			based[r] = f.SPOffset[r]
		}
	}
	wantBased := map[int]int32{}
	for r, o := range c.want.based {
		wantBased[r] = o
	}
	if c.want.sp != noSP {
		wantBased[regSP] = c.want.sp
	}
	require.Equal(t, wantBased, based, "registers holding the CFA plus an offset")
	saved := map[int]int32{}
	for r := 0; r < 16; r++ {
		if f.Saved&(1<<r) != 0 {
			saved[r] = f.SavedAt[r]
		}
	}
	wantSaved := c.want.saved
	if wantSaved == nil {
		wantSaved = map[int]int32{}
	}
	require.Equal(t, wantSaved, saved, "saved registers")
	for _, r := range c.want.chg {
		require.NotZero(t, f.Changed&(1<<r), "r%d changed", r)
	}
	for _, r := range c.want.keep {
		require.Zero(t, f.Changed&(1<<r), "r%d kept", r)
	}
	end := c.want.end
	if end == 0 && c.want.stop == "" {
		end = pc
	}
	require.Equal(t, end, f.End, "end of the analysis")
	if c.want.stop == "" {
		require.Empty(t, f.Stop)
	} else {
		require.Contains(t, f.Stop, c.want.stop)
	}
}

func TestThumbPrologues(t *testing.T) {
	cases := []tcase{
		{name: "push, add r7 sp, sub sp", code: t16(
			0xb5f0, // push {r4, r5, r6, r7, lr}
			0xaf03, // add r7, sp, #12
			0xb085, // sub sp, #20
		), want: want{sp: -40, based: map[int]int32{7: -8},
			saved: map[int]int32{4: -20, 5: -16, 6: -12, 7: -8, 14: -4}}},
		{name: "push.w", code: t16(
			0xe92d, 0x4ff0, // stmdb sp!, {r4-r11, lr}
		), want: want{sp: -36,
			saved: map[int]int32{4: -36, 5: -32, 6: -28, 7: -24, 8: -20, 9: -16, 10: -12, 11: -8, 14: -4}}},
		{name: "stmdb sp!", code: t16(
			0xe92d, 0x4010, // stmdb sp!, {r4, lr}
		), want: want{sp: -8, saved: map[int]int32{4: -8, 14: -4}}},
		{name: "str.w pre-indexed with writeback", code: t16(
			0xf84d, 0xed04, // str.w lr, [sp, #-4]!
			0xf84d, 0x4d04, // str.w r4, [sp, #-4]!
		), want: want{sp: -8, saved: map[int]int32{4: -8, 14: -4}}},
		{name: "vpush", code: t16(
			0xb510,         // push {r4, lr}
			0xed2d, 0x8b10, // vpush {d8-d15}
			0xed2d, 0x8a02, // vpush {s16-s17}
		), want: want{sp: -80, saved: map[int]int32{4: -8, 14: -4}}},
		{name: "sub.w and subw", code: t16(
			0xf5ad, 0x5d80, // sub.w sp, sp, #4096
			0xf2ad, 0x3de8, // subw sp, sp, #1000
		), want: want{sp: -5096}},
		{name: "str to sp-relative slots", code: t16(
			0xb084,         // sub sp, #16
			0x9402,         // str r4, [sp, #8]
			0xf8cd, 0x500c, // str.w r5, [sp, #12]
		), want: want{sp: -16, saved: map[int]int32{4: -8, 5: -4}}},
		{name: "strd", code: t16(
			0xe96d, 0x4502, // strd r4, r5, [sp, #-8]!
			0xe9cd, 0x6704, // strd r6, r7, [sp, #16]
		), want: want{sp: -8, saved: map[int]int32{4: -8, 5: -4, 6: 8, 7: 12}}},
		{name: "frame pointer r11", code: t16(
			0xb510,         // push {r4, lr}
			0xf10d, 0x0b08, // add.w fp, sp, #8
		), want: want{sp: -8, based: map[int]int32{11: 0}, saved: map[int]int32{4: -8, 14: -4}}},
		{name: "addw r7", code: t16(
			0xb084,         // sub sp, #16
			0xf20d, 0x0710, // addw r7, sp, #16
		), want: want{sp: -16, based: map[int]int32{7: 0}}},
		{name: "mov r7, sp and mov.w r7, sp", code: t16(
			0xb580,         // push {r7, lr}
			0x466f,         // mov r7, sp
			0xb082,         // sub sp, #8
			0xea4f, 0x030d, // mov.w r3, sp
		), want: want{sp: -16, based: map[int]int32{7: -8, 3: -16}, saved: map[int]int32{7: -8, 14: -4}}},
		{name: "movw and movt to sp", code: t16(
			0xf241, 0x2334, // movw r3, #0x1234
			0xf6cf, 0x73ff, // movt r3, #0xffff
			0x449d, // add sp, r3
		), want: want{sp: int32(-0xedcc), chg: []int{3}}},
		{name: "literal pool constant", pc: 6, code: t16(
			0x4b01,         // ldr r3, [pc, #4]: the word at 8
			0xebad, 0x0d03, // sub.w sp, sp, r3
			0x0000,         // padding
			0x0100, 0x0000, // .word 256
		), want: want{sp: -256, chg: []int{3}}},
		{name: "ldr.w literal", pc: 8, code: t16(
			0xf8df, 0x3008, // ldr.w r3, [pc, #8]: the word at 12
			0xebad, 0x0d03, // sub.w sp, sp, r3
			0x0000, 0x0000,
			0x0200, 0x0000, // .word 512
		), want: want{sp: -512}},
		{name: "literal beyond the code", code: t16(
			0x4b01,         // ldr r3, [pc, #4]
			0xebad, 0x0d03, // sub.w sp, sp, r3
		), want: want{sp: noSP}},
		{name: "realigned stack keeps r7", code: t16(
			0xb580,         // push {r7, lr}
			0x466f,         // mov r7, sp
			0x466b,         // mov r3, sp
			0xf023, 0x0307, // bic.w r3, r3, #7
			0x469d, // mov sp, r3
		), want: want{sp: noSP, based: map[int]int32{7: -8}, saved: map[int]int32{7: -8, 14: -4}, chg: []int{3}}},
		{name: "register writes the analysis does not follow", code: t16(
			0xee1d, 0x4f70, // mrc p15, 0, r4, c13, c0, 3
			0x58d3,         // ldr r3, [r2, r3]
			0x00ad,         // lsls r5, r5, #2
			0x002e,         // movs r6, r5
			0xb220,         // sxth r0, r4
			0xba09,         // rev r1, r1
			0xf3ef, 0x8200, // mrs r2, CPSR
			0xfba6, 0x8907, // umull r8, r9, r6, r7
			0xfb05, 0xfa06, // mul.w r10, r5, r6
			0xeb05, 0x0b86, // add.w fp, r5, r6, lsl #2
		), want: want{sp: 0, chg: []int{0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11}, keep: []int{7, 12, 14}}},
		{name: "arithmetic on a frame-based register", code: t16(
			0xb580,         // push {r7, lr}
			0x466f,         // mov r7, sp
			0xa902,         // add r1, sp, #8
			0x3104,         // adds r1, #4
			0x3908,         // subs r1, #8
			0x1c4a,         // adds r2, r1, #1
			0xf847, 0x4c04, // str.w r4, [r7, #-4]
		), want: want{sp: -8, based: map[int]int32{7: -8, 1: -4, 2: -3},
			saved: map[int]int32{4: -12, 7: -8, 14: -4}}},
		{name: "stores through other pointers are ignored", code: t16(
			0xb510, // push {r4, lr}
			0x6004, // str r4, [r0, #0]
			0xc703, // stmia r7!, {r0, r1}
		), want: want{sp: -8, saved: map[int]int32{4: -8, 14: -4}, chg: []int{7}}},
		{name: "byte and halfword stores spoil a slot", code: t16(
			0xb530,         // push {r4, r5, lr}
			0xf88d, 0x4004, // strb.w r4, [sp, #4]
			0xf8ad, 0x4002, // strh.w r4, [sp, #2]
		), want: want{sp: -12, saved: map[int]int32{14: -4}}},
		{name: "pop and post-indexed load restore", code: t16(
			0xb530,         // push {r4, r5, lr}
			0xbc10,         // pop {r4}
			0xf85d, 0x5b04, // ldr.w r5, [sp], #4
		), want: want{sp: -4, saved: map[int]int32{4: -12, 5: -8, 14: -4}, keep: []int{4, 5}}},
		{name: "ldrd and ldmia.w load unknown words", code: t16(
			0xb082,         // sub sp, #8
			0xe9dd, 0x4502, // ldrd r4, r5, [sp, #8]
			0xe8bd, 0x0140, // ldmia.w sp!, {r6, r8}
		), want: want{sp: 0, chg: []int{4, 5, 6, 8}}},
		{name: "conditional move in an IT block", code: t16(
			0xb580, // push {r7, lr}
			0xbf08, // it eq
			0x466f, // moveq r7, sp
			0xb082, // sub sp, #8 (after the block)
		), want: want{sp: -16, saved: map[int]int32{7: -8, 14: -4}, chg: []int{7}}},
		{name: "conditional sub sp loses sp", code: t16(
			0xbf18, // it ne
			0xb082, // subne sp, #8
		), want: want{sp: noSP}},
		{name: "conditional push spoils its slots", code: t16(
			0xb510, // push {r4, lr}
			0xbf08, // it eq
			0xb410, // pusheq {r4}
		), want: want{sp: noSP, saved: map[int]int32{4: -8, 14: -4}}},
		{name: "IT block of four", code: t16(
			0xbf0b, // itete eq (4 - trailing zeros of 0b1011 = 4 instructions)
			0x2001, // moveq r0, #1
			0x2102, // movne r1, #2
			0x2203, // moveq r2, #3
			0x2304, // movne r3, #4
			0x466f, // mov r7, sp
		), want: want{sp: 0, based: map[int]int32{7: 0}, chg: []int{0, 1, 2, 3}}},
		{name: "hints and barriers", code: t16(
			0xbf00,         // nop
			0xf3bf, 0x8f5b, // dmb ish
			0xf3af, 0x8000, // nop.w
			0xb082, // sub sp, #8
		), want: want{sp: -8}},
		{name: "empty", code: nil, want: want{sp: 0}},
		{name: "pc before the end", pc: 2, code: t16(
			0xb510, // push {r4, lr}
			0xb082, // sub sp, #8: not executed yet
		), want: want{sp: -8, saved: map[int]int32{4: -8, 14: -4}}},
	}
	stops := []struct {
		name string
		insn []uint16
		why  string
	}{
		{"beq", []uint16{0xd0ff}, "branch"},
		{"b.n", []uint16{0xe7fe}, "branch"},
		{"b.w", []uint16{0xf7ff, 0xbffd}, "branch"},
		{"bne.w", []uint16{0xf47f, 0xaffb}, "branch"},
		{"bl", []uint16{0xf7ff, 0xfffe}, "branch"},
		{"blx imm", []uint16{0xf7ff, 0xeffa}, "branch"},
		{"blx r3", []uint16{0x4798}, "branch"},
		{"bx lr", []uint16{0x4770}, "branch"},
		{"cbz", []uint16{0xb108}, "branch"},
		{"pop {r4, pc}", []uint16{0xbd10}, "load into pc"},
		{"ldr.w pc, [sp], #4", []uint16{0xf85d, 0xfb04}, "load into pc"},
		{"ldmia.w sp!, {r4, pc}", []uint16{0xe8bd, 0x8010}, "load into pc"},
		{"tbb", []uint16{0xe8df, 0xf000}, "table branch"},
		{"udf", []uint16{0xde00}, "branch"},
		{"svc", []uint16{0xdf00}, "branch"},
		{"bkpt", []uint16{0xbe00}, "breakpoint"},
		{"mov pc, r3", []uint16{0x469f}, "write to pc"},
		{"add pc, r3", []uint16{0x449f}, "write to pc"},
		{"udf.w", []uint16{0xf7f0, 0xa000}, "exception or branch"},
	}
	for _, s := range stops {
		code := t16(0xb510) // push {r4, lr}
		code = append(code, t16(s.insn...)...)
		code = append(code, t16(0xb082)...) // sub sp, #8: never reached
		cases = append(cases, tcase{name: "stops at " + s.name, code: code,
			want: want{sp: -8, saved: map[int]int32{4: -8, 14: -4}, end: 2, stop: s.why + " at 0x2"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.thumb = true
			check(t, c)
		})
	}
}

func TestARMPrologues(t *testing.T) {
	cases := []tcase{
		{name: "push, add fp, sub sp", code: a32(
			0xe92d4830, // push {r4, r5, fp, lr}
			0xe28db008, // add fp, sp, #8
			0xe24dd010, // sub sp, sp, #16
		), want: want{sp: -32, based: map[int]int32{11: -8}, saved: map[int]int32{4: -16, 5: -12, 11: -8, 14: -4}}},
		{name: "str lr pre-indexed, then stmdb", code: a32(
			0xe52de004, // str lr, [sp, #-4]!
			0xe92d47f0, // push {r4-r10, lr}
		), want: want{sp: -36,
			saved: map[int]int32{4: -36, 5: -32, 6: -28, 7: -24, 8: -20, 9: -16, 10: -12, 14: -4}}},
		{name: "APCS frame", code: a32(
			0xe1a0c00d, // mov ip, sp
			0xe92dd800, // push {fp, ip, lr, pc}
			0xe24cb004, // sub fp, ip, #4
		), want: want{sp: -16, based: map[int]int32{11: -4, 12: 0}, saved: map[int]int32{11: -16, 14: -8}}},
		{name: "vpush, strd, str", code: a32(
			0xed2d8b04, // vpush {d8-d9}
			0xe16d40f8, // strd r4, r5, [sp, #-8]!
			0xe58d600c, // str r6, [sp, #12]
		), want: want{sp: -24, saved: map[int]int32{4: -24, 5: -20, 6: -12}}},
		{name: "movw then sub sp by register", code: a32(
			0xe3023000, // movw r3, #0x2000
			0xe04dd003, // sub sp, sp, r3
		), want: want{sp: -0x2000, chg: []int{3}}},
		{name: "literal pool constant", pc: 8, code: a32(
			0xe59f3000, // ldr r3, [pc]: the word at 8
			0xe08dd003, // add sp, sp, r3
			0xfffffff0, // .word -16
		), want: want{sp: -16}},
		{name: "conditional move", code: a32(
			0xe1a0b00d, // mov fp, sp
			0x01a0700d, // moveq r7, sp
			0x024dd008, // subeq sp, sp, #8
		), want: want{sp: noSP, based: map[int]int32{11: 0}, chg: []int{7}}},
		{name: "register writes the analysis does not follow", code: a32(
			0xee1d4f70, // mrc p15, 0, r4, c13, c0, 3
			0xe0050695, // mul r5, r5, r6
			0xe0898796, // umull r8, r9, r6, r7
			0xe1a0a11a, // lsl r10, sl, r1
			0xe6bf0071, // sxth r0, r1
		), want: want{sp: 0, chg: []int{0, 4, 5, 8, 9, 10}, keep: []int{6, 7, 11, 14}}},
		{name: "pop restores", code: a32(
			0xe92d4030, // push {r4, r5, lr}
			0xe49d4004, // pop {r4}
			0xe8bd0020, // pop {r5}
		), want: want{sp: -4, saved: map[int]int32{4: -12, 5: -8, 14: -4}, keep: []int{4, 5}}},
		{name: "strh spoils a slot, ldrd loads unknown words", code: a32(
			0xe92d4010, // push {r4, lr}
			0xe1cd40b2, // strh r4, [sp, #2]
			0xe1cd60d8, // ldrd r6, r7, [sp, #8]
		), want: want{sp: -8, saved: map[int]int32{14: -4}, chg: []int{6, 7}}},
	}
	stops := []struct {
		name string
		insn uint32
		why  string
	}{
		{"bl", 0xebffffff, "branch"},
		{"b", 0xeafffffe, "branch"},
		{"beq", 0x0afffff5, "branch"},
		{"blx imm", 0xfa000000, "call"},
		{"bx lr", 0xe12fff1e, "branch"},
		{"blx r3", 0xe12fff33, "branch or exception"},
		{"pop {r4, pc}", 0xe8bd8010, "load into pc"},
		{"ldr pc, [sp], #4", 0xe49df004, "load into pc"},
		{"mov pc, lr", 0xe1a0f00e, "write to pc"},
		{"svc", 0xef000000, "SVC"},
		{"udf", 0xe7f000f0, "undefined instruction"},
	}
	for _, s := range stops {
		code := a32(0xe92d4010, s.insn, 0xe24dd008) // push {r4, lr}; <insn>; sub sp, sp, #8
		cases = append(cases, tcase{name: "stops at " + s.name, code: code,
			want: want{sp: -8, saved: map[int]int32{4: -8, 14: -4}, end: 4, stop: s.why + " at 0x4"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { check(t, c) })
	}
}

func TestCFA(t *testing.T) {
	// push {r4, r7, lr}; add r7, sp, #4; add.w fp, sp, #4; sub sp, #8
	f, err := Analyze(t16(0xb590, 0xaf01, 0xf10d, 0x0b04, 0xb082), 10, true, binary.LittleEndian)
	require.NoError(t, err)
	regs := map[int]uint32{13: 0x1000 - 20, 7: 0x1000 - 8, 11: 0x1000 - 8}
	get := func(r int) (uint32, bool) { v, ok := regs[r]; return v, ok }
	cfa, used, ok := f.CFA(get)
	require.True(t, ok)
	require.Equal(t, uint32(0x1000), cfa)
	require.Equal(t, 11, used, "r11 first, as gdb")
	delete(regs, 11)
	cfa, used, ok = f.CFA(get)
	require.True(t, ok)
	require.Equal(t, uint32(0x1000), cfa)
	require.Equal(t, 7, used)
	delete(regs, 7)
	cfa, used, ok = f.CFA(get)
	require.True(t, ok)
	require.Equal(t, uint32(0x1000), cfa)
	require.Equal(t, 13, used)
	delete(regs, 13)
	_, _, ok = f.CFA(get)
	require.False(t, ok)
}

// TestHostileCode feeds code that is cut short, misaligned, endless or random.
func TestHostileCode(t *testing.T) {
	t.Run("32-bit instruction cut by the pc", func(t *testing.T) {
		f, err := Analyze(t16(0xb510, 0xe92d, 0x4ff0), 4, true, binary.LittleEndian)
		require.NoError(t, err)
		require.Equal(t, 2, f.End)
		require.Contains(t, f.Stop, "pc inside an instruction")
	})
	t.Run("32-bit instruction cut by the end of the code", func(t *testing.T) {
		f, err := Analyze(t16(0xb510, 0xe92d), 4, true, binary.LittleEndian)
		require.NoError(t, err)
		require.Equal(t, 2, f.End)
		require.Contains(t, f.Stop, "pc inside an instruction")
	})
	t.Run("pc past the code", func(t *testing.T) {
		_, err := Analyze(t16(0xb510), 4, true, binary.LittleEndian)
		require.ErrorContains(t, err, "outside 2 bytes of code")
		_, err = Analyze(nil, -2, true, binary.LittleEndian)
		require.Error(t, err)
	})
	t.Run("misaligned pc", func(t *testing.T) {
		_, err := Analyze(t16(0xb510, 0xb510), 3, true, binary.LittleEndian)
		require.ErrorContains(t, err, "aligned")
		_, err = Analyze(a32(0xe92d4010, 0xe92d4010), 6, false, binary.LittleEndian)
		require.ErrorContains(t, err, "aligned")
	})
	t.Run("too many stores", func(t *testing.T) {
		var hws []uint16
		for i := 0; i <= MaxSlots; i++ {
			hws = append(hws, 0xf84d, 0x0d04) // str.w r0, [sp, #-4]!
		}
		_, err := Analyze(t16(hws...), 4*len(hws)/2, true, binary.LittleEndian)
		require.True(t, errors.Is(err, ErrTooManyStores), "%v", err)
	})
	t.Run("random bytes", func(t *testing.T) {
		rng := rand.New(rand.NewSource(1))
		for i := 0; i < 2000; i++ {
			code := make([]byte, rng.Intn(256))
			rng.Read(code)
			thumb := i%2 == 0
			pc := len(code) &^ 3
			f, err := Analyze(code, pc, thumb, binary.BigEndian)
			require.NoError(t, err)
			require.LessOrEqual(t, f.End, pc)
			require.Zero(t, f.Saved&(1<<regSP|1<<regPC))
		}
	})
}

func FuzzAnalyze(f *testing.F) {
	f.Add(t16(0xb5f0, 0xaf03, 0xb085), true)
	f.Add(t16(0xe92d, 0x4ff0, 0xed2d, 0x8b10, 0xbf08, 0x466f, 0x4b01, 0xebad, 0x0d03), true)
	f.Add(a32(0xe1a0c00d, 0xe92dd800, 0xe24cb004, 0xe59f3000, 0x01a0700d), false)
	if code, pc, ok := abortCode(f); ok {
		f.Add(code[:pc], true)
	}
	f.Fuzz(func(t *testing.T, code []byte, thumb bool) {
		for _, pc := range []int{len(code) &^ 3, len(code) / 2 &^ 3, 0} {
			fr, err := Analyze(code, pc, thumb, binary.LittleEndian)
			if err != nil {
				if !errors.Is(err, ErrTooManyStores) {
					t.Fatalf("pc %d: %v", pc, err)
				}
				continue
			}
			if fr.End > pc || fr.End < 0 {
				t.Fatalf("end %d outside [0, %d]", fr.End, pc)
			}
			fr.CFA(func(r int) (uint32, bool) { return uint32(r) * 16, r != 11 })
		}
	})
}
