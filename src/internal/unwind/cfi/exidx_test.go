package cfi

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEHABIInstructions(t *testing.T) {
	const sp = 0x7000
	// Stack words at sp, sp+4, ...: 0x100, 0x101, ...
	mem := func(addr uint32) (uint32, error) {
		if addr < sp || addr >= sp+0x1000 || addr%4 != 0 {
			return 0, errors.New("unmapped")
		}
		return 0x100 + (addr-sp)/4, nil
	}
	type regs = map[int]uint32
	cases := []struct {
		name string
		ops  []byte
		in   regs // besides sp = 0x7000, lr = 0x8001
		want regs
		err  string
	}{
		{name: "empty program: return to lr", ops: nil, want: regs{13: sp, 15: 0x8001}},
		{name: "vsp += (x<<2)+4", ops: []byte{0x3f}, want: regs{13: sp + 0x100, 15: 0x8001}},
		{name: "vsp -= (x<<2)+4", ops: []byte{0x40}, want: regs{13: sp - 4}},
		{name: "pop r4-r15 under mask", ops: []byte{0x84, 0x01}, want: regs{4: 0x100, 14: 0x101, 13: sp + 8, 15: 0x101}},
		{name: "pop r15 sets pc", ops: []byte{0x88, 0x00}, want: regs{15: 0x100, 14: 0x8001, 13: sp + 4}},
		{name: "pop r13 replaces vsp", ops: []byte{0x82, 0x01}, want: regs{4: 0x100, 13: 0x101}},
		{name: "refuse to unwind", ops: []byte{0x80, 0x00}, err: "cannot be unwound"},
		{name: "vsp = r7", ops: []byte{0x97}, in: regs{7: sp + 0x20}, want: regs{13: sp + 0x20}},
		{name: "vsp = r13 is reserved", ops: []byte{0x9d}, err: "reserved instruction 0x9d"},
		{name: "vsp = r15 is reserved", ops: []byte{0x9f}, err: "reserved instruction 0x9f"},
		{name: "pop r4-r6", ops: []byte{0xa2}, want: regs{4: 0x100, 5: 0x101, 6: 0x102, 13: sp + 12, 15: 0x8001}},
		{name: "pop r4-r11, r14", ops: []byte{0xaf}, want: regs{4: 0x100, 11: 0x107, 14: 0x108, 13: sp + 36, 15: 0x108}},
		{name: "finish ends the program", ops: []byte{0xb0, 0x3f}, want: regs{13: sp}},
		{name: "pop r0-r3 under mask", ops: []byte{0xb1, 0x09}, want: regs{0: 0x100, 3: 0x101, 13: sp + 8}},
		{name: "pop r0-r3 with an empty mask is spare", ops: []byte{0xb1, 0x00}, err: "spare"},
		{name: "pop r0-r3 with high bits is spare", ops: []byte{0xb1, 0x10}, err: "spare"},
		{name: "vsp += 0x204 + (uleb128 << 2)", ops: []byte{0xb2, 0x01}, want: regs{13: sp + 0x208}},
		{name: "pop VFP by FSTMFDX", ops: []byte{0xb3, 0x12}, want: regs{13: sp + 8*3 + 4}},
		{name: "pop PAC code", ops: []byte{0xb4}, want: regs{13: sp + 4}},
		{name: "pop VFP d8-d10 by FSTMFDX", ops: []byte{0xba}, want: regs{13: sp + 8*3 + 4}},
		{name: "pop iWMMXt wR10-wR11", ops: []byte{0xc1}, want: regs{13: sp + 16}},
		{name: "pop iWMMXt wR[s]-wR[s+c]", ops: []byte{0xc6, 0x02}, want: regs{13: sp + 24}},
		{name: "pop iWMMXt wCGR under mask", ops: []byte{0xc7, 0x05}, want: regs{13: sp + 8}},
		{name: "pop VFP d16+ by VPUSH", ops: []byte{0xc8, 0x01}, want: regs{13: sp + 16}},
		{name: "pop VFP d0+ by VPUSH", ops: []byte{0xc9, 0x03}, want: regs{13: sp + 32}},
		{name: "pop VFP d8-d12 by VPUSH", ops: []byte{0xd4}, want: regs{13: sp + 40}},
		{name: "spare 0xca", ops: []byte{0xca}, err: "spare"},
		{name: "spare 0xd8", ops: []byte{0xd8}, err: "spare"},
		{name: "spare 0xb6", ops: []byte{0xb6}, err: "spare"},
		{name: "truncated pop", ops: []byte{0x84}, err: "needs 1 bytes"},
		{name: "unreadable stack", ops: []byte{0x40, 0xa8}, err: "memory at 0x6ffc unreadable"},
		{name: "gcc's Thumb prologue push {r7, lr}", ops: []byte{0x84, 0x08, 0xb0}, want: regs{7: 0x100, 14: 0x101, 15: 0x101, 13: sp + 8}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r [16]uint32
			r[13], r[14], r[15] = sp, 0x8001, 0x9000
			for k, v := range tc.in {
				r[k] = v
			}
			e := &EHABIEntry{Ops: tc.ops}
			err := e.Unwind(&r, mem)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			for k, v := range tc.want {
				require.Equal(t, v, r[k], "r%d", k)
			}
		})
	}
	t.Run("cantunwind", func(t *testing.T) {
		var r [16]uint32
		require.ErrorIs(t, (&EHABIEntry{CantUnwind: true}).Unwind(&r, mem), ErrCantUnwind)
	})
}

// exidxSection builds .ARM.exidx at exidxAddr from (function address, second word) pairs; a
// second word below 0x100 that is not 1 is an offset into extab to turn into a prel31.
func exidxSection(exidxAddr, extabAddr uint32, entries [][2]uint32) []byte {
	var b []byte
	for i, e := range entries {
		at := exidxAddr + uint32(8*i)
		b = append(b, u32((e[0]-at)&0x7fffffff)...)
		w := e[1]
		if w != 1 && w < 0x100 {
			w = (extabAddr + w - (at + 4)) & 0x7fffffff
		}
		b = append(b, u32(w)...)
	}
	return b
}

func TestEXIDXDecode(t *testing.T) {
	const exidxAddr, extabAddr = 0x20000, 0x10000
	be32 := func(v uint32) []byte { return u32(v) }
	extab := cat(
		be32(0x80a8b0b0),                   // +0: personality 0: pop {r4, r14}; finish; finish
		be32(0x8101b108), be32(0x8400b0b0), // +4: personality 1, one more word: pop {r3}; pop {r14}; finish
		be32(0x8200b0b0),                                     // +12: personality 2, no more words
		be32(0x7ffffff0), be32(0x01aab0b0), be32(0x97b0b0b0), // +16: generic routine at prel31(-16); 1 word
		be32(0x83000000), // +28: personality index 3
		be32(0x810a0000), // +32: personality 1 claiming 10 words
	)
	idx := exidxSection(exidxAddr, extabAddr, [][2]uint32{
		{0x1000, 0x80a8b0b0}, // inline
		{0x1100, 1},          // cantunwind
		{0x1200, 0},
		{0x1300, 4},
		{0x1400, 12},
		{0x1500, 16},
		{0x1600, 28},
		{0x1700, 32},
		{0x1800, 0x81000000}, // inline with personality 1: invalid
		{0x1900, 0xf0},       // offset past extab
	})
	x, err := ParseEXIDX(idx, exidxAddr, extab, extabAddr, le)
	require.NoError(t, err)
	require.Equal(t, 10, x.Len())

	_, err = x.Lookup(0xfff)
	require.ErrorIs(t, err, ErrNoFDE)
	cases := []struct {
		pc   uint64
		want EHABIEntry
		err  string
	}{
		{pc: 0x1000, want: EHABIEntry{Start: 0x1000, Offset: 0, Ops: []byte{0xa8, 0xb0, 0xb0}}},
		{pc: 0x10ff, want: EHABIEntry{Start: 0x1000, Offset: 0, Ops: []byte{0xa8, 0xb0, 0xb0}}},
		{pc: 0x1100, want: EHABIEntry{Start: 0x1100, Offset: 8, CantUnwind: true}},
		{pc: 0x1250, want: EHABIEntry{Start: 0x1200, Offset: 16, Ops: []byte{0xa8, 0xb0, 0xb0}}},
		{pc: 0x1300, want: EHABIEntry{Start: 0x1300, Offset: 24, Personality: 1, Ops: []byte{0xb1, 0x08, 0x84, 0x00, 0xb0, 0xb0}}},
		{pc: 0x1400, want: EHABIEntry{Start: 0x1400, Offset: 32, Personality: 2, Ops: []byte{0xb0, 0xb0}}},
		{pc: 0x1500, want: EHABIEntry{Start: 0x1500, Offset: 40, Personality: -1, PersonalityAddr: extabAddr, Ops: []byte{0xaa, 0xb0, 0xb0, 0x97, 0xb0, 0xb0, 0xb0}}},
		{pc: 0x1600, err: "unknown personality index 0x3"},
		{pc: 0x1700, err: "overruns"},
		{pc: 0x1800, err: "inline entry with personality index 0x1"},
		{pc: 0x1900, err: "outside .ARM.extab"},
	}
	for _, tc := range cases {
		e, err := x.Lookup(tc.pc)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, "pc %#x", tc.pc)
			continue
		}
		require.NoError(t, err, "pc %#x", tc.pc)
		require.Equal(t, tc.want, *e, "pc %#x", tc.pc)
	}
	e, _ := x.Lookup(0x1500)
	require.Equal(t, uint64(extabAddr+16-16), e.PersonalityAddr)

	// EntryStart answers for every entry, malformed ones included.
	for _, tc := range []struct {
		pc, start uint64
		ok        bool
	}{
		{0xfff, 0, false}, {0x1000, 0x1000, true}, {0x1150, 0x1100, true},
		{0x1650, 0x1600, true}, {0x1950, 0x1900, true}, {1 << 32, 0, false},
	} {
		start, ok := x.EntryStart(tc.pc)
		require.Equal(t, tc.ok, ok, "pc %#x", tc.pc)
		require.Equal(t, tc.start, start, "pc %#x", tc.pc)
	}
	start, ok := (*EXIDX)(nil).EntryStart(0x1000)
	require.False(t, ok)
	require.Zero(t, start)
}

func TestParseEXIDXMalformed(t *testing.T) {
	_, err := ParseEXIDX(make([]byte, 12), 0, nil, 0, le)
	require.ErrorContains(t, err, "multiple of 8")
	_, err = ParseEXIDX(cat(u32(0x80000000), u32(1)), 0, nil, 0, le)
	require.ErrorContains(t, err, "bit 31")
	// Unsorted entries are sorted.
	idx := exidxSection(0x100, 0, [][2]uint32{{0x3000, 1}, {0x2000, 0x80b0b0b0}})
	x, err := ParseEXIDX(idx, 0x100, nil, 0, le)
	require.NoError(t, err)
	e, err := x.Lookup(0x2fff)
	require.NoError(t, err)
	require.False(t, e.CantUnwind)
	require.Equal(t, uint64(8), e.Offset)
	e, err = x.Lookup(0x3000)
	require.NoError(t, err)
	require.True(t, e.CantUnwind)
}

func TestPrel31(t *testing.T) {
	require.Equal(t, uint64(0x1000+0x10), prel31(0x10, 0x1000))
	require.Equal(t, uint64(0x1000-0x10), prel31(0x7ffffff0, 0x1000))
	require.Equal(t, uint64(0xfffffff0), prel31(0x7ffffff0, 0)) // wraps in 32 bits
}
