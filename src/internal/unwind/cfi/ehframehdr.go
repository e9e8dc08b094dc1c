package cfi

import "sort"

// EHFrameHdr is the binary search table of a .eh_frame_hdr section (PT_GNU_EH_FRAME): sorted
// pairs of function start and FDE address, which the linker writes so a runtime unwinder need
// not parse all of .eh_frame. This package's Table does not depend on it; it is offered for
// cross-checks and for callers that want one FDE without parsing the whole section.
type EHFrameHdr struct {
	// EHFramePtr is the address of .eh_frame as the header records it.
	EHFramePtr uint64
	pcs, fdes  []uint64
}

// ParseEHFrameHdr parses .eh_frame_hdr; cfg.Bases.Section must be its address (which is also
// the base of its datarel pointers). A header whose table is omitted or not made of fixed-size
// values parses with an empty table.
func ParseEHFrameHdr(data []byte, cfg Config) (*EHFrameHdr, error) {
	const section = "eh_frame_hdr"
	if cfg.AddrSize != 4 && cfg.AddrSize != 8 || cfg.Order == nil {
		return nil, &DecodeError{Section: section, Msg: "bad config: address size and byte order are required"}
	}
	r := &reader{b: data, order: cfg.Order, section: section}
	version := r.u8()
	ptrEnc, countEnc, tableEnc := r.u8(), r.u8(), r.u8()
	if r.err != nil {
		return nil, r.err
	}
	if version != 1 {
		return nil, &DecodeError{Section: section, Msg: "unsupported version " + hex(uint64(version))}
	}
	for _, enc := range []byte{ptrEnc, countEnc, tableEnc} {
		if !validEncoding(enc) {
			return nil, &DecodeError{Section: section, Msg: "unknown pointer encoding " + hex(uint64(enc))}
		}
	}
	bases := cfg.Bases
	bases.Data = cfg.Bases.Section
	ctx := &pointerCtx{bases: bases, addrSize: cfg.AddrSize, deref: cfg.Deref}
	h := &EHFrameHdr{}
	if ptrEnc != PEOmit {
		h.EHFramePtr, _ = r.pointer(ptrEnc, ctx)
	}
	if countEnc == PEOmit || tableEnc == PEOmit || r.err != nil {
		return h, r.err
	}
	count, _ := r.pointer(countEnc, ctx)
	if r.err != nil {
		return nil, r.err
	}
	var size int
	switch tableEnc & 0x0f {
	case PEUdata2, PESdata2:
		size = 2
	case PEUdata4, PESdata4:
		size = 4
	case PEUdata8, PESdata8:
		size = 8
	case PEAbsptr:
		size = cfg.AddrSize
	default:
		return h, nil // variable-size values: no binary search possible
	}
	if count > uint64(r.left()/(2*size)) {
		return nil, &DecodeError{Section: section, Offset: r.pos(), Msg: "table of " + hex(count) + " entries overruns the section"}
	}
	h.pcs = make([]uint64, count)
	h.fdes = make([]uint64, count)
	for i := range h.pcs {
		h.pcs[i], _ = r.pointer(tableEnc, ctx)
		h.fdes[i], _ = r.pointer(tableEnc, ctx)
		if i > 0 && h.pcs[i] < h.pcs[i-1] && r.err == nil {
			return nil, &DecodeError{Section: section, Offset: r.pos(), Msg: "table is not sorted"}
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return h, nil
}

// Len is the number of entries of the search table.
func (h *EHFrameHdr) Len() int {
	if h == nil {
		return 0
	}
	return len(h.pcs)
}

// Entry returns the i-th entry: a function's start and the address of its FDE.
func (h *EHFrameHdr) Entry(i int) (pc, fde uint64) { return h.pcs[i], h.fdes[i] }

// Lookup returns the address of the FDE of the last function starting at or below pc. The table
// holds no ends: the FDE itself says whether it covers pc. ErrNoFDE when pc is below the first.
func (h *EHFrameHdr) Lookup(pc uint64) (uint64, error) {
	i := sort.Search(len(h.pcs), func(i int) bool { return h.pcs[i] > pc }) - 1
	if i < 0 {
		return 0, ErrNoFDE
	}
	return h.fdes[i], nil
}
