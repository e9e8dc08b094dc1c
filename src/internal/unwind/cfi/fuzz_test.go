package cfi

import (
	"encoding/binary"
	"errors"
	"testing"
)

// Fuzz flags: which parser and which target the input is for.
const (
	fuzzDebugFrame = 1 << iota
	fuzzAddr4
	fuzzBigEndian
	fuzzHdr
)

func fuzzConfig(flags byte) Config {
	c := Config{Order: binary.LittleEndian, AddrSize: 8, Bases: Bases{Section: 0x10000, Text: 0x2000, Data: 0x30000}}
	if flags&fuzzAddr4 != 0 {
		c.AddrSize = 4
	}
	if flags&fuzzBigEndian != 0 {
		c.Order = binary.BigEndian
	}
	c.Deref = func(addr uint64, size int) (uint64, error) {
		if addr%3 == 0 {
			return 0, errors.New("unmapped")
		}
		return addr * 2654435761, nil
	}
	return c
}

// fuzzEnv gives expressions registers and memory that answer for some values and fail for
// others, so both paths run.
func fuzzEnv(c Config) *ExprEnv {
	return &ExprEnv{
		AddrSize: c.AddrSize,
		Order:    c.Order,
		Reg: func(r uint64) (uint64, error) {
			if r > 40 {
				return 0, errors.New("no such register")
			}
			return 0x7ff000 + r*8, nil
		},
		Mem: func(addr uint64, size int) (uint64, error) {
			if addr%5 == 0 {
				return 0, errors.New("unmapped")
			}
			return addr ^ 0x5a5a5a5a, nil
		},
	}
}

// FuzzCFI parses arbitrary .eh_frame, .debug_frame and .eh_frame_hdr bytes, runs the CFA
// program of every FDE at several pcs, and evaluates the expressions of the rows (and the input
// itself as an expression). Nothing may panic or run unbounded.
func FuzzCFI(f *testing.F) {
	for _, path := range objects() {
		o := loadObject(f, path)
		if o == nil {
			continue
		}
		var flags byte
		if o.cfg.AddrSize == 4 {
			flags |= fuzzAddr4
		}
		if o.ehFrame != nil {
			f.Add(sectionPrefix(o.ehFrame, o.cfg.Order, 4096), flags)
			if len(o.ehFrame) <= 32<<10 {
				f.Add(o.ehFrame, flags)
			}
		}
		if o.debug != nil {
			f.Add(sectionPrefix(o.debug, o.cfg.Order, 4096), flags|fuzzDebugFrame)
		}
		if o.hdr != nil {
			f.Add(o.hdr[:min(len(o.hdr), 1024)], flags|fuzzHdr)
		}
	}
	f.Add(oneFDE(x86Initial, []byte{cfaRememberState, cfaDefCFAExpression, 3, opBreg0 + 7, 8, opDeref, cfaAdvanceLoc | 1, cfaRestoreState}), byte(0))
	f.Fuzz(func(t *testing.T, data []byte, flags byte) {
		cfg := fuzzConfig(flags)
		env := fuzzEnv(cfg)
		if len(data) > 0 {
			_, _ = Eval(data[:min(len(data), 256)], env, 0x1000)
		}
		if flags&fuzzHdr != 0 {
			h, err := ParseEHFrameHdr(data, cfg)
			if err == nil {
				for i := 0; i < h.Len() && i < 64; i++ {
					pc, _ := h.Entry(i)
					_, _ = h.Lookup(pc)
				}
			}
			return
		}
		var tab *Table
		var err error
		if flags&fuzzDebugFrame != 0 {
			tab, err = ParseDebugFrame(data, cfg)
		} else {
			tab, err = ParseEHFrame(data, cfg)
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for i := 0; i < tab.Len() && i < 256; i++ {
			fde := tab.FDE(i)
			if fde.End <= fde.Start {
				t.Fatalf("FDE %d: empty range %#x-%#x", i, fde.Start, fde.End)
			}
			if got, err := tab.FDEFor(fde.Start); err != nil || got.Start > fde.Start || got.End <= fde.Start {
				t.Fatalf("FDEFor(%#x) = %v, %v", fde.Start, got, err)
			}
			for _, pc := range []uint64{fde.Start, fde.Start + (fde.End-fde.Start)/2, fde.End - 1} {
				row, err := fde.RowAt(pc)
				if err != nil {
					continue
				}
				if row.CFA.Expr != nil {
					_, _ = Eval(row.CFA.Expr, env)
				}
				for _, reg := range row.Columns() {
					if r := row.Rule(reg); r.Expr != nil {
						_, _ = Eval(r.Expr, env, 0x2000)
					}
				}
			}
		}
	})
}

// FuzzEXIDX parses arbitrary .ARM.exidx and .ARM.extab bytes, decodes every entry and runs
// its unwind program (and the extab bytes as a raw program) against registers and memory.
func FuzzEXIDX(f *testing.F) {
	for _, path := range objects() {
		o := loadObject(f, path)
		if o == nil || o.exidx == nil {
			continue
		}
		f.Add(o.exidx, o.extab, uint32(o.extabAddr-o.exidxAddr))
		if len(o.exidx) > 512 {
			f.Add(o.exidx[:512], o.extab, uint32(o.extabAddr-o.exidxAddr))
		}
	}
	f.Add(exidxSection(0x20000, 0x10000, [][2]uint32{{0x1000, 0x80a8b0b0}, {0x1100, 1}, {0x1200, 0}}),
		cat(u32(0x8101b108), u32(0x8400b0b0)), uint32(0xffff0000))
	f.Fuzz(func(t *testing.T, exidx, extab []byte, extabDelta uint32) {
		const exidxAddr = 0x40000000
		extabAddr := uint64(exidxAddr + extabDelta)
		mem := func(addr uint32) (uint32, error) {
			if addr%16 == 12 {
				return 0, errors.New("unmapped")
			}
			return addr*2654435761 | 1, nil
		}
		run := func(e *EHABIEntry) {
			var regs [16]uint32
			for i := range regs {
				regs[i] = 0x1000 * uint32(i+1)
			}
			_ = e.Unwind(&regs, mem)
		}
		run(&EHABIEntry{Ops: extab})
		x, err := ParseEXIDX(exidx, exidxAddr, extab, extabAddr, binary.LittleEndian)
		if err != nil {
			return
		}
		for i := 0; i < x.Len() && i < 512; i++ {
			e, err := x.Lookup(uint64(x.starts[i]))
			if err != nil {
				continue
			}
			if e.Start != uint64(x.starts[i]) {
				t.Fatalf("entry %d: start %#x, looked up %#x", i, e.Start, x.starts[i])
			}
			run(e)
		}
	})
}
