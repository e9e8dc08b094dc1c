package cfi

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPointerEncodings(t *testing.T) {
	const sectionAddr = 0x10000
	bases := Bases{Section: sectionAddr, Text: 0x400000, Data: 0x600000}
	// The value sits at section offset 8 (after 8 bytes of padding), except where noted.
	cases := []struct {
		name     string
		enc      byte
		addrSize int
		value    []byte
		want     uint64
		indirect bool
		deref    bool
		err      string
		section  uint64
	}{
		{name: "absptr 8", enc: PEAbsptr, addrSize: 8, value: u64(0x1122334455667788), want: 0x1122334455667788},
		{name: "absptr 4", enc: PEAbsptr, addrSize: 4, value: u32(0x11223344), want: 0x11223344},
		{name: "uleb128", enc: PEUleb128, addrSize: 8, value: uleb(624485), want: 624485},
		{name: "udata2", enc: PEUdata2, addrSize: 8, value: u16(0xfffe), want: 0xfffe},
		{name: "udata4", enc: PEUdata4, addrSize: 8, value: u32(0xfffffffe), want: 0xfffffffe},
		{name: "udata8", enc: PEUdata8, addrSize: 8, value: u64(1 << 40), want: 1 << 40},
		{name: "sleb128", enc: PESleb128, addrSize: 8, value: sleb(-2), want: ^uint64(1)},
		{name: "sdata2", enc: PESdata2, addrSize: 8, value: u16(0xfffe), want: ^uint64(1)},
		{name: "sdata4", enc: PESdata4, addrSize: 8, value: u32(0xfffffffe), want: ^uint64(1)},
		{name: "sdata8", enc: PESdata8, addrSize: 8, value: u64(^uint64(1)), want: ^uint64(1)},
		{name: "sdata4 on a 32-bit target wraps", enc: PESdata4, addrSize: 4, value: u32(0xfffffffe), want: 0xfffffffe},
		{name: "pcrel sdata4", enc: PEPcrel | PESdata4, addrSize: 8, value: u32(0xfffffff0), want: sectionAddr + 8 - 16},
		{name: "pcrel sdata4 on a 32-bit target", enc: PEPcrel | PESdata4, addrSize: 4, value: u32(0x100), want: sectionAddr + 8 + 0x100},
		{name: "textrel udata4", enc: PETextrel | PEUdata4, addrSize: 8, value: u32(0x20), want: 0x400020},
		{name: "datarel sdata4", enc: PEDatarel | PESdata4, addrSize: 8, value: u32(0xfffffff8), want: 0x600000 - 8},
		{name: "funcrel uleb128", enc: PEFuncrel | PEUleb128, addrSize: 8, value: uleb(0x10), want: 0x5010},
		{name: "aligned", enc: PEAligned, addrSize: 8, value: cat(u32(0xffffffff), u64(0xabc)), want: 0xabc, section: sectionAddr + 4},
		{name: "aligned already", enc: PEAligned, addrSize: 8, value: u64(0xabc), want: 0xabc},
		{name: "indirect without deref", enc: PEIndirect | PEPcrel | PESdata4, addrSize: 8, value: u32(0x10), want: sectionAddr + 8 + 0x10, indirect: true},
		{name: "indirect with deref", enc: PEIndirect | PEPcrel | PESdata4, addrSize: 8, value: u32(0x10), want: 0xdead, deref: true},
		{name: "omit", enc: PEOmit, addrSize: 8, value: u32(0), err: "omitted pointer"},
		{name: "unknown format", enc: 0x05, addrSize: 8, value: u32(0), err: "unknown pointer format"},
		{name: "unknown application", enc: 0x60 | PEUdata4, addrSize: 8, value: u32(0), err: "unknown pointer application"},
		{name: "truncated", enc: PEUdata8, addrSize: 8, value: u32(0), err: "needs 8 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := cat(make([]byte, 8), tc.value)
			r := &reader{b: b, off: 8, order: le, section: "eh_frame"}
			ctx := &pointerCtx{bases: bases, addrSize: tc.addrSize, funcBase: 0x5000}
			if tc.section != 0 {
				ctx.bases.Section = tc.section
			}
			if tc.deref {
				ctx.deref = func(addr uint64, size int) (uint64, error) {
					require.Equal(t, uint64(sectionAddr+8+0x10), addr)
					return 0xdead, nil
				}
			}
			v, ind := r.pointer(tc.enc, ctx)
			if tc.err != "" {
				require.ErrorContains(t, r.err, tc.err)
				return
			}
			require.NoError(t, r.err)
			require.Equal(t, tc.want, v)
			require.Equal(t, tc.indirect, ind)
			require.Equal(t, len(b), r.off, "the whole value is consumed")
		})
	}
}

func TestParseEHFrameAugmentations(t *testing.T) {
	// CIE "zPLRS": personality indirect|pcrel|sdata4, LSDA pcrel|sdata4, FDE pcrel|sdata4, signal.
	augData := cat([]byte{PEIndirect | PEPcrel | PESdata4}, u32(0x100), []byte{PEPcrel | PESdata4, PEPcrel | PESdata4})
	cie := withLength(cat(u32(0), []byte{1}, []byte("zPLRS\x00"), uleb(4), sleb(-4), uleb(14), uleb(uint64(len(augData))), augData, []byte{cfaDefCFA, 13, 0}), 4)
	fdeOff := len(cie)
	// FDE: CIE pointer, start (pcrel: field at fdeOff+8), length, augmentation data with LSDA.
	fde := withLength(cat(u32(uint32(fdeOff+4)), u32(0x1000-uint32(fdeOff+8)), u32(0x40), uleb(4), u32(0x2000-uint32(fdeOff+17))), 4)
	sec := cat(cie, fde, u32(0))
	tab, err := ParseEHFrame(sec, Config{Order: le, AddrSize: 4})
	require.NoError(t, err)
	require.Equal(t, 1, tab.Len())
	f := tab.FDE(0)
	require.Equal(t, uint64(0x1000), f.Start)
	require.Equal(t, uint64(0x1040), f.End)
	require.Equal(t, uint64(0x2000), f.LSDA)
	c := f.CIE
	require.Equal(t, "zPLRS", c.Augmentation)
	require.True(t, c.Signal)
	require.True(t, c.PersonalityIndirect)
	require.Equal(t, uint64(20+0x100), c.Personality) // pcrel from the value's offset, 20
	require.Equal(t, uint64(4), c.CodeAlign)
	require.Equal(t, int64(-4), c.DataAlign)
	require.Equal(t, uint64(14), c.RAColumn)
	row, err := f.RowAt(0x1000)
	require.NoError(t, err)
	require.True(t, row.Signal)
}

func TestParseDebugFrameVersions(t *testing.T) {
	fdeBody := func(cieOff uint32, addrSize int, start, length uint64) []byte {
		if addrSize == 4 {
			return cat(u32(cieOff), u32(uint32(start)), u32(uint32(length)))
		}
		return cat(u32(cieOff), u64(start), u64(length))
	}
	cases := []struct {
		name     string
		cie      []byte
		cfgSize  int
		addrSize int
	}{
		{"DWARF 2 (version 1)", cat(u32(0xffffffff), []byte{1, 0}, uleb(1), sleb(-8), []byte{16}), 8, 8},
		{"DWARF 3", cat(u32(0xffffffff), []byte{3, 0}, uleb(1), sleb(-8), uleb(16)), 8, 8},
		{"DWARF 4, address size from the CIE", cat(u32(0xffffffff), []byte{4, 0, 4, 0}, uleb(2), sleb(-4), uleb(14)), 8, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cie := withLength(tc.cie, 4)
			sec := cat(cie, withLength(fdeBody(0, tc.addrSize, 0x4000, 0x20), 4))
			tab, err := ParseDebugFrame(sec, Config{Order: le, AddrSize: tc.cfgSize})
			require.NoError(t, err)
			require.Equal(t, 1, tab.Len())
			f, err := tab.FDEFor(0x401f)
			require.NoError(t, err)
			require.Equal(t, uint64(0x4000), f.Start)
			require.Equal(t, tc.addrSize, f.CIE.AddrSize)
		})
	}
}

func TestParse64BitDWARF(t *testing.T) {
	long := func(body []byte) []byte { return cat(u32(0xffffffff), u64(uint64(len(body))), body) }
	t.Run("debug_frame", func(t *testing.T) {
		cie := long(cat(u64(^uint64(0)), []byte{3, 0}, uleb(1), sleb(-8), uleb(16), []byte{cfaDefCFA, 7, 8}))
		fde := long(cat(u64(0), u64(0x5000), u64(0x10), []byte{cfaAdvanceLoc | 1, cfaDefCFAOffset, 16}))
		tab, err := ParseDebugFrame(cat(cie, fde), cfg64())
		require.NoError(t, err)
		f, err := tab.FDEFor(0x5001)
		require.NoError(t, err)
		row, err := f.RowAt(0x5001)
		require.NoError(t, err)
		require.Equal(t, CFARule{Reg: 7, Offset: 16}, row.CFA)
	})
	t.Run("eh_frame", func(t *testing.T) {
		cie := long(cat(u64(0), []byte{1}, []byte("zR\x00"), uleb(1), sleb(-8), uleb(16), uleb(1), []byte{PEUdata8}, []byte{cfaDefCFA, 7, 8}))
		fdeOff := len(cie)
		fde := long(cat(u64(uint64(fdeOff+12)), u64(0x5000), u64(0x10), uleb(0)))
		tab, err := ParseEHFrame(cat(cie, fde, u32(0)), cfg64())
		require.NoError(t, err)
		_, err = tab.FDEFor(0x500f)
		require.NoError(t, err)
	})
}

func TestParseSpecialCases(t *testing.T) {
	t.Run("zero terminator ends .eh_frame", func(t *testing.T) {
		sec := cat(oneFDE(x86Initial, nil), []byte{0xde, 0xad})
		tab, err := ParseEHFrame(sec, cfg64())
		require.NoError(t, err)
		require.Equal(t, 1, tab.Len())
	})
	t.Run("zero-length padding in .debug_frame", func(t *testing.T) {
		cie := withLength(cat(u32(0xffffffff), []byte{1, 0}, uleb(1), sleb(-8), []byte{16}), 4)
		sec := cat(cie, u32(0), withLength(cat(u32(0), u64(0x10), u64(0x10)), 4))
		tab, err := ParseDebugFrame(sec, cfg64())
		require.NoError(t, err)
		require.Equal(t, 1, tab.Len())
	})
	t.Run("eh augmentation", func(t *testing.T) {
		cie := withLength(cat(u32(0), []byte{1}, []byte("eh\x00"), u64(0x1234), uleb(1), sleb(-8), []byte{16}), 8)
		sec := cat(cie, withLength(cat(u32(uint32(len(cie)+4)), u64(0x10), u64(0x10)), 8), u32(0))
		tab, err := ParseEHFrame(sec, cfg64())
		require.NoError(t, err)
		require.Equal(t, 1, tab.Len())
	})
	t.Run("unknown augmentation without z skips its FDEs", func(t *testing.T) {
		cie := withLength(cat(u32(0), []byte{1}, []byte("xyz\x00"), uleb(1), sleb(-8), []byte{16}), 8)
		sec := cat(cie, withLength(cat(u32(uint32(len(cie)+4)), u64(0x10), u64(0x10)), 8), u32(0))
		tab, err := ParseEHFrame(sec, cfg64())
		require.NoError(t, err)
		require.Equal(t, 0, tab.Len())
		require.Equal(t, 1, tab.Skipped())
	})
	t.Run("zero-length FDEs are skipped", func(t *testing.T) {
		c := ehCIE(PEUdata4, x86Initial)
		sec := cat(c, ehFDE(len(c), 0x1000, 0, nil), u32(0))
		tab, err := ParseEHFrame(sec, cfg64())
		require.NoError(t, err)
		require.Equal(t, 0, tab.Len())
	})
	t.Run("overlapping FDEs", func(t *testing.T) {
		c := ehCIE(PEUdata4, x86Initial)
		f1 := ehFDE(len(c), 0x1000, 0x1000, nil)
		f2 := ehFDE(len(c)+len(f1), 0x1100, 0x10, nil)
		f3 := ehFDE(len(c)+len(f1)+len(f2), 0x1200, 0x10, nil)
		tab, err := ParseEHFrame(cat(c, f1, f2, f3, u32(0)), cfg64())
		require.NoError(t, err)
		for pc, start := range map[uint64]uint64{0x1000: 0x1000, 0x1105: 0x1100, 0x1110: 0x1000, 0x1205: 0x1200, 0x1fff: 0x1000} {
			f, err := tab.FDEFor(pc)
			require.NoError(t, err)
			require.Equal(t, start, f.Start, "pc %#x", pc)
		}
	})
	t.Run("big-endian", func(t *testing.T) {
		be := binary.BigEndian
		cie := cat(be.AppendUint32(nil, 12), be.AppendUint32(nil, 0xffffffff), []byte{1, 0}, uleb(4), sleb(-4), []byte{14, cfaDefCFA, 13, 0})
		fde := cat(be.AppendUint32(nil, 12), be.AppendUint32(nil, 0), be.AppendUint32(nil, 0x8000), be.AppendUint32(nil, 0x100))
		tab, err := ParseDebugFrame(cat(cie, fde), Config{Order: be, AddrSize: 4})
		require.NoError(t, err)
		_, err = tab.FDEFor(0x80ff)
		require.NoError(t, err)
	})
}

func TestParseMalformed(t *testing.T) {
	good := oneFDE(x86Initial, nil)
	cieLen := len(ehCIE(PEUdata4, x86Initial))
	cases := []struct {
		name   string
		sec    []byte
		debug  bool
		offset uint64
		err    string
	}{
		{name: "length overruns the section", sec: cat(u32(100), u32(0)), offset: 0, err: "overruns the section"},
		{name: "reserved length", sec: cat(u32(0xfffffff5), u32(0)), err: "reserved initial length"},
		{name: "truncated 64-bit length", sec: cat(u32(0xffffffff), u32(1)), offset: 4, err: "needs 8 bytes"},
		{name: "entry shorter than its id", sec: cat(u32(2), []byte{0, 0}), err: "too short"},
		{name: "unsupported CIE version", sec: cat(withLength(cat(u32(0), []byte{2, 0}, uleb(1), sleb(-8), []byte{16}), 4), u32(0)), err: "unsupported CIE version 0x2"},
		{name: "unterminated augmentation", sec: cat(u32(7), u32(0), []byte{1, 'z', 'R'}), offset: 9, err: "not NUL-terminated"},
		{name: "FDE before its CIE pointer target", sec: cat(withLength(cat(u32(0x100), u32(0), u32(0)), 4)), err: "points before the section"},
		{name: "FDE pointing into the middle of an entry", sec: func() []byte {
			b := append([]byte(nil), good...)
			le.PutUint32(b[cieLen+4:], uint32(cieLen+4-4)) // points at the CIE's id field
			return b
		}(), offset: uint64(cieLen), err: "does not point at a CIE"},
		{name: "bad FDE encoding", sec: cat(ehCIE(0x07, nil), u32(0)), offset: 16, err: "bad FDE pointer encoding"},
		{name: "FDE range wraps", sec: func() []byte {
			c := ehCIE(PEAbsptr, nil)
			return cat(c, withLength(cat(u32(uint32(len(c)+4)), u64(^uint64(0)-4), u64(0x10), uleb(0)), 8), u32(0))
		}(), offset: 24, err: "wraps around"},
		{name: "FDE augmentation data overruns", sec: func() []byte {
			c := ehCIE(PEUdata4, nil)
			return cat(c, withLength(cat(u32(uint32(len(c)+4)), u32(0x10), u32(0x10), uleb(50)), 8), u32(0))
		}(), err: "FDE augmentation data of 50 bytes"},
		{name: "debug_frame CIE address size", debug: true, sec: withLength(cat(u32(0xffffffff), []byte{4, 0, 3, 0}, uleb(1), sleb(-8), uleb(16)), 4), err: "address size"},
		{name: "debug_frame CIE pointer to nowhere", debug: true, sec: withLength(cat(u32(0x40), u64(0), u64(0)), 4), err: "does not point at a CIE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.debug {
				_, err = ParseDebugFrame(tc.sec, cfg64())
			} else {
				_, err = ParseEHFrame(tc.sec, cfg64())
			}
			require.ErrorContains(t, err, tc.err)
			var de *DecodeError
			require.True(t, errors.As(err, &de), "%T", err)
			if tc.offset != 0 {
				require.Equal(t, tc.offset, de.Offset)
			}
		})
	}
}

func TestEHFrameHdr(t *testing.T) {
	// version 1, eh_frame_ptr pcrel|sdata4, count udata4, table datarel|sdata4.
	hdr := cat([]byte{1, PEPcrel | PESdata4, PEUdata4, PEDatarel | PESdata4}, u32(0x100-4), u32(3),
		u32(0x1000), u32(0x2000), u32(0x1100), u32(0x2040), u32(0x1200), u32(0x2080))
	h, err := ParseEHFrameHdr(hdr, Config{Order: le, AddrSize: 8, Bases: Bases{Section: 0x50000}})
	require.NoError(t, err)
	require.Equal(t, uint64(0x50100), h.EHFramePtr)
	require.Equal(t, 3, h.Len())
	fde, err := h.Lookup(0x51150)
	require.NoError(t, err)
	require.Equal(t, uint64(0x52040), fde)
	_, err = h.Lookup(0x50fff)
	require.ErrorIs(t, err, ErrNoFDE)

	bad := append([]byte(nil), hdr...)
	le.PutUint32(bad[8:], 1000)
	_, err = ParseEHFrameHdr(bad, Config{Order: le, AddrSize: 8})
	require.ErrorContains(t, err, "overruns")
	unsorted := append([]byte(nil), hdr...)
	le.PutUint32(unsorted[12:], 0x1300)
	_, err = ParseEHFrameHdr(unsorted, Config{Order: le, AddrSize: 8})
	require.ErrorContains(t, err, "not sorted")
}
