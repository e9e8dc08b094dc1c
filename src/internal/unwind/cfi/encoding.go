package cfi

// Pointer encodings of .eh_frame and .eh_frame_hdr (DW_EH_PE_*, Linux Standard Base Core
// Specification, "Exception Frames", and gcc's unwind-pe.h). The low nibble is the value format,
// bits 4-6 what it is relative to, bit 7 an indirection.
const (
	PEAbsptr  = 0x00
	PEUleb128 = 0x01
	PEUdata2  = 0x02
	PEUdata4  = 0x03
	PEUdata8  = 0x04
	PESleb128 = 0x09
	PESdata2  = 0x0a
	PESdata4  = 0x0b
	PESdata8  = 0x0c

	PEPcrel    = 0x10
	PETextrel  = 0x20
	PEDatarel  = 0x30
	PEFuncrel  = 0x40
	PEAligned  = 0x50
	PEIndirect = 0x80
	PEOmit     = 0xff
)

// Bases are the addresses that relative pointer encodings add to a value. Section is the
// link-time address of the section being read (pc-relative values add Section plus the offset
// of the value); Text and Data are the bases of DW_EH_PE_textrel and DW_EH_PE_datarel (on Linux
// the latter is the GOT for .eh_frame and the start of .eh_frame_hdr for its own table).
type Bases struct {
	Section uint64
	Text    uint64
	Data    uint64
}

// pointerCtx is what decoding one encoded pointer needs beyond the cursor.
type pointerCtx struct {
	bases    Bases
	addrSize int
	funcBase uint64 // DW_EH_PE_funcrel: start of the current function (0 outside an FDE)
	deref    func(addr uint64, size int) (uint64, error)
}

// pointer reads one value in encoding enc. Indirect values are dereferenced through ctx.deref;
// without one, the address of the pointer is returned and indirect reports true.
func (r *reader) pointer(enc byte, ctx *pointerCtx) (v uint64, indirect bool) {
	if r.err != nil {
		return 0, false
	}
	if enc == PEOmit {
		r.fail("omitted pointer where a value is required")
		return 0, false
	}
	start := r.pos()
	if enc&0x70 == PEAligned {
		// The value is an absolute pointer aligned to the address size within the section.
		a := uint64(ctx.addrSize)
		pad := (a - (ctx.bases.Section+start)%a) % a
		r.bytes(pad, "alignment padding")
		start = r.pos()
		return r.word(ctx.addrSize), false
	}
	switch enc & 0x0f {
	case PEAbsptr:
		v = r.word(ctx.addrSize)
	case PEUleb128:
		v = r.uleb()
	case PEUdata2:
		v = uint64(r.u16())
	case PEUdata4:
		v = uint64(r.u32())
	case PEUdata8:
		v = r.u64()
	case PESleb128:
		v = uint64(r.sleb())
	case PESdata2:
		v = uint64(int64(int16(r.u16())))
	case PESdata4:
		v = uint64(int64(int32(r.u32())))
	case PESdata8:
		v = r.u64()
	default:
		r.fail("unknown pointer format %#x in encoding %#x", enc&0x0f, enc)
		return 0, false
	}
	switch enc & 0x70 {
	case 0:
	case PEPcrel:
		v += ctx.bases.Section + start
	case PETextrel:
		v += ctx.bases.Text
	case PEDatarel:
		v += ctx.bases.Data
	case PEFuncrel:
		v += ctx.funcBase
	default:
		r.fail("unknown pointer application %#x in encoding %#x", enc&0x70, enc)
		return 0, false
	}
	v = truncate(v, ctx.addrSize)
	if enc&PEIndirect != 0 {
		if ctx.deref == nil {
			return v, true
		}
		d, err := ctx.deref(v, ctx.addrSize)
		if err != nil {
			r.fail("indirect pointer at %#x: %v", v, err)
			return 0, false
		}
		return truncate(d, ctx.addrSize), false
	}
	return v, false
}

// validEncoding says whether enc is an encoding pointer() can decode.
func validEncoding(enc byte) bool {
	if enc == PEOmit {
		return true
	}
	if enc&0x70 > PEAligned {
		return false
	}
	switch enc & 0x0f {
	case PEAbsptr, PEUleb128, PEUdata2, PEUdata4, PEUdata8, PESleb128, PESdata2, PESdata4, PESdata8:
		return true
	}
	return false
}

func truncate(v uint64, addrSize int) uint64 {
	if addrSize == 4 {
		return v & 0xffffffff
	}
	return v
}
