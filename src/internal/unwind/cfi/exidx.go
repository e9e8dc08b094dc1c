package cfi

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"sort"
)

// ARM EHABI unwind tables ("Exception Handling ABI for the Arm Architecture", IHI 0038, sections
// 5-10: https://github.com/ARM-software/abi-aa/blob/main/ehabi32/ehabi32.rst). 32-bit ARM
// libraries built by gcc carry .ARM.exidx (an index of function starts) and .ARM.extab (longer
// unwind programs) instead of .eh_frame.

// ErrCantUnwind is returned for a function whose entry is EXIDX_CANTUNWIND or whose unwind
// program refuses to unwind (0x80 0x00). The linker also writes EXIDX_CANTUNWIND for code
// without unwind information, so callers treat it like ErrNoFDE.
var ErrCantUnwind = errors.New("ARM EHABI: function cannot be unwound")

const exidxCantUnwind = 1

// EXIDX is a parsed .ARM.exidx section and its .ARM.extab. Entries are decoded on lookup. It is
// immutable and safe for concurrent use.
type EXIDX struct {
	order     binary.ByteOrder
	starts    []uint32 // function starts, sorted
	words     []uint32 // second word of each entry
	offs      []uint32 // offset of each entry in .ARM.exidx
	exidxAddr uint64
	extab     []byte
	extabAddr uint64
}

// maxEXIDXEntries bounds the index (a 4 GiB address space holds at most 2^30 ARM functions;
// real libraries have thousands).
const maxEXIDXEntries = 1 << 24

// ParseEXIDX parses .ARM.exidx (at link-time address exidxAddr) and keeps .ARM.extab (which may
// be empty) for the entries that point into it.
func ParseEXIDX(exidx []byte, exidxAddr uint64, extab []byte, extabAddr uint64, order binary.ByteOrder) (*EXIDX, error) {
	if len(exidx)%8 != 0 {
		return nil, &DecodeError{Section: "ARM.exidx", Offset: uint64(len(exidx) &^ 7), Msg: "size is not a multiple of 8"}
	}
	n := len(exidx) / 8
	if n > maxEXIDXEntries {
		return nil, &DecodeError{Section: "ARM.exidx", Msg: "too many entries"}
	}
	x := &EXIDX{order: order, exidxAddr: exidxAddr, extab: extab, extabAddr: extabAddr,
		starts: make([]uint32, n), words: make([]uint32, n), offs: make([]uint32, n)}
	sorted := true
	for i := 0; i < n; i++ {
		off := uint32(i * 8)
		w0 := order.Uint32(exidx[off:])
		if w0&0x80000000 != 0 {
			return nil, &DecodeError{Section: "ARM.exidx", Offset: uint64(off), Msg: "function offset has bit 31 set"}
		}
		x.starts[i] = uint32(prel31(w0, exidxAddr+uint64(off)))
		x.words[i] = order.Uint32(exidx[off+4:])
		x.offs[i] = off
		if i > 0 && x.starts[i] < x.starts[i-1] {
			sorted = false
		}
	}
	if !sorted {
		// The linker sorts the index; keep lookups correct for input that is not.
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return x.starts[idx[a]] < x.starts[idx[b]] })
		s, w, o := make([]uint32, n), make([]uint32, n), make([]uint32, n)
		for i, j := range idx {
			s[i], w[i], o[i] = x.starts[j], x.words[j], x.offs[j]
		}
		x.starts, x.words, x.offs = s, w, o
	}
	return x, nil
}

// prel31 resolves a place-relative 31-bit offset stored at address at.
func prel31(w uint32, at uint64) uint64 {
	off := int64(int32(w<<1) >> 1)
	return (at + uint64(off)) & 0xffffffff
}

// Len is the number of index entries.
func (x *EXIDX) Len() int {
	if x == nil {
		return 0
	}
	return len(x.starts)
}

// EHABIEntry is the decoded unwind information of one function.
type EHABIEntry struct {
	Start      uint64 // function start (link-time)
	Offset     uint64 // of the index entry in .ARM.exidx
	CantUnwind bool
	// Personality is 0, 1 or 2 for the ARM-defined compact routines (__aeabi_unwind_cpp_pr0-2)
	// and -1 for a generic routine at PersonalityAddr (its data is read in gcc's layout: a word
	// count and unwind opcodes, as for routines 1 and 2).
	Personality     int
	PersonalityAddr uint64
	Ops             []byte // the unwind instructions
}

// Lookup returns the entry of the function holding pc (a link-time address, Thumb bit clear):
// the last entry starting at or below pc. ErrNoFDE when pc is below the first entry.
func (x *EXIDX) Lookup(pc uint64) (*EHABIEntry, error) {
	if x == nil || pc > 0xffffffff {
		return nil, ErrNoFDE
	}
	i := sort.Search(len(x.starts), func(i int) bool { return uint64(x.starts[i]) > pc }) - 1
	if i < 0 {
		return nil, ErrNoFDE
	}
	return x.decode(i)
}

// EntryStart returns the start of the index entry covering pc (a link-time address), whatever
// the entry holds (EXIDX_CANTUNWIND included): the start of a function, or of code the linker
// found without unwind information. False when pc is below the first entry.
func (x *EXIDX) EntryStart(pc uint64) (uint64, bool) {
	if x == nil || pc > 0xffffffff {
		return 0, false
	}
	i := sort.Search(len(x.starts), func(i int) bool { return uint64(x.starts[i]) > pc }) - 1
	if i < 0 {
		return 0, false
	}
	return uint64(x.starts[i]), true
}

func (x *EXIDX) decode(i int) (*EHABIEntry, error) {
	e := &EHABIEntry{Start: uint64(x.starts[i]), Offset: uint64(x.offs[i])}
	w := x.words[i]
	switch {
	case w == exidxCantUnwind:
		e.CantUnwind = true
		return e, nil
	case w&0x80000000 != 0:
		// Inline compact model: only personality routine 0 fits.
		if idx := (w >> 24) & 0x0f; idx != 0 || w&0x70000000 != 0 {
			return nil, &DecodeError{Section: "ARM.exidx", Offset: e.Offset + 4, Msg: "inline entry with personality index " + hex(uint64(idx))}
		}
		e.Ops = []byte{byte(w >> 16), byte(w >> 8), byte(w)}
		return e, nil
	}
	addr := prel31(w, x.exidxAddr+e.Offset+4)
	if addr < x.extabAddr || addr-x.extabAddr > uint64(len(x.extab)) {
		return nil, &DecodeError{Section: "ARM.exidx", Offset: e.Offset + 4, Msg: "extab entry " + hex(addr) + " outside .ARM.extab"}
	}
	r := &reader{b: x.extab, off: int(addr - x.extabAddr), order: x.order, section: "ARM.extab"}
	first := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	var count uint32
	var ops []byte
	if first&0x80000000 != 0 {
		e.Personality = int((first >> 24) & 0x0f)
		if first&0x70000000 != 0 {
			return nil, &DecodeError{Section: "ARM.extab", Offset: addr - x.extabAddr, Msg: "bad compact model word"}
		}
		switch e.Personality {
		case 0:
			ops = []byte{byte(first >> 16), byte(first >> 8), byte(first)}
		case 1, 2:
			count = (first >> 16) & 0xff
			ops = []byte{byte(first >> 8), byte(first)}
		default:
			return nil, &DecodeError{Section: "ARM.extab", Offset: addr - x.extabAddr, Msg: "unknown personality index " + hex(uint64(e.Personality))}
		}
	} else {
		e.Personality = -1
		e.PersonalityAddr = prel31(first, addr)
		w := r.u32()
		if r.err != nil {
			return nil, r.err
		}
		count = w >> 24
		ops = []byte{byte(w >> 16), byte(w >> 8), byte(w)}
	}
	if uint64(count)*4 > uint64(r.left()) {
		return nil, &DecodeError{Section: "ARM.extab", Offset: r.pos(), Msg: "unwind program of " + hex(uint64(count)) + " words overruns the section"}
	}
	for ; count > 0; count-- {
		w := r.u32()
		ops = append(ops, byte(w>>24), byte(w>>16), byte(w>>8), byte(w))
	}
	e.Ops = ops
	return e, nil
}

// ARM core register numbers used by the unwind instructions.
const (
	armSP = 13
	armLR = 14
	armPC = 15
)

// Unwind executes the entry's unwind instructions on regs (r0-r15 of the frame) and leaves the
// caller's registers there: r13 is the virtual stack pointer at the end, and r15 is the popped
// pc or, when the program does not set it, r14. read loads a 32-bit word of target memory.
// VFP and iWMMXt pops only move the stack pointer. Registers the program does not restore keep
// their values.
func (e *EHABIEntry) Unwind(regs *[16]uint32, read func(addr uint32) (uint32, error)) error {
	if e.CantUnwind {
		return ErrCantUnwind
	}
	r := &reader{b: e.Ops, base: 0, section: "ARM EHABI program"}
	vsp := regs[armSP]
	pcSet := false
	pop := func(mask uint32) error {
		// Lowest-numbered register at the lowest address; r13 in the mask replaces vsp.
		next := vsp
		newSP, spPopped := uint32(0), false
		for reg := 0; reg < 16; reg++ {
			if mask&(1<<reg) == 0 {
				continue
			}
			v, err := read(next)
			if err != nil {
				return &MemoryError{Addr: uint64(next), Err: err}
			}
			next += 4
			if reg == armSP {
				newSP, spPopped = v, true
				continue
			}
			regs[reg] = v
			if reg == armPC {
				pcSet = true
			}
		}
		vsp = next
		if spPopped {
			vsp = newSP
		}
		return nil
	}
loop:
	for r.left() > 0 {
		at := r.pos()
		op := r.u8()
		bad := func() error {
			return &DecodeError{Section: "ARM EHABI program", Offset: at, Msg: "spare or reserved instruction " + hex(uint64(op))}
		}
		switch {
		case op&0xc0 == 0x00: // 00xxxxxx: vsp += (xxxxxx << 2) + 4
			vsp += uint32(op&0x3f)<<2 + 4
		case op&0xc0 == 0x40: // 01xxxxxx: vsp -= (xxxxxx << 2) + 4
			vsp -= uint32(op&0x3f)<<2 + 4
		case op&0xf0 == 0x80: // 1000iiii iiiiiiii: pop r4-r15 under mask, or refuse
			op2 := r.u8()
			if r.err != nil {
				return r.err
			}
			mask := (uint32(op&0x0f)<<8 | uint32(op2)) << 4
			if mask == 0 {
				return ErrCantUnwind
			}
			if err := pop(mask); err != nil {
				return err
			}
		case op&0xf0 == 0x90: // 1001nnnn: vsp = r[nnnn]
			n := op & 0x0f
			if n == 13 || n == 15 {
				return bad()
			}
			vsp = regs[n]
		case op&0xf8 == 0xa0, op&0xf8 == 0xa8: // 1010Lnnn: pop r4-r[4+nnn] (and r14 if L)
			mask := uint32(1)<<(5+uint(op&7)) - 1<<4
			if op&0x08 != 0 {
				mask |= 1 << armLR
			}
			if err := pop(mask); err != nil {
				return err
			}
		case op == 0xb0: // finish
			break loop
		case op == 0xb1: // 10110001 0000iiii: pop r0-r3 under mask
			op2 := r.u8()
			if r.err != nil {
				return r.err
			}
			if op2 == 0 || op2&0xf0 != 0 {
				return bad()
			}
			if err := pop(uint32(op2)); err != nil {
				return err
			}
		case op == 0xb2: // vsp += 0x204 + (uleb128 << 2)
			v := r.uleb()
			if r.err != nil {
				return r.err
			}
			vsp += 0x204 + uint32(v<<2)
		case op == 0xb3: // pop VFP d[ssss]-d[ssss+cccc] saved by FSTMFDX
			op2 := r.u8()
			vsp += 8*(uint32(op2&0x0f)+1) + 4
		case op == 0xb4: // pop the return address authentication code (PACBTI-M)
			vsp += 4
		case op == 0xb5: // use vsp as the PAC modifier: nothing to do here
		case op&0xf8 == 0xb8: // 10111nnn: pop VFP d[8]-d[8+nnn] saved by FSTMFDX
			vsp += 8*(uint32(op&7)+1) + 4
		case op >= 0xc0 && op <= 0xc5: // pop iWMMXt wR[10]-wR[10+nnn]
			vsp += 8 * (uint32(op&7) + 1)
		case op == 0xc6: // pop iWMMXt wR[ssss]-wR[ssss+cccc]
			op2 := r.u8()
			vsp += 8 * (uint32(op2&0x0f) + 1)
		case op == 0xc7: // pop iWMMXt wCGR registers under mask {wCGR3-0}
			op2 := r.u8()
			if r.err != nil {
				return r.err
			}
			if op2 == 0 || op2&0xf0 != 0 {
				return bad()
			}
			vsp += 4 * uint32(bits.OnesCount8(op2))
		case op == 0xc8, op == 0xc9: // pop VFP d[16+ssss].. / d[ssss].. saved by VPUSH
			op2 := r.u8()
			vsp += 8 * (uint32(op2&0x0f) + 1)
		case op&0xf8 == 0xd0: // 11010nnn: pop VFP d[8]-d[8+nnn] saved by VPUSH
			vsp += 8 * (uint32(op&7) + 1)
		default:
			return bad()
		}
		if r.err != nil {
			return r.err
		}
	}
	regs[armSP] = vsp
	if !pcSet {
		regs[armPC] = regs[armLR]
	}
	return nil
}
