package symbolize

import (
	"debug/dwarf"
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// This file is a DIE decoder for the hot walks (funcs.go's function/inline tree, callsites.go's
// call sites). debug/dwarf decodes every attribute of every DIE into an Entry (an allocation
// per DIE, per field slice and per string, .debug_str read for every name), and most DIEs the
// walks meet are parameters, variables and types they skip. This decoder reads a DIE's
// abbreviation, notes where each attribute's value starts, and decodes a value only when asked,
// allocating nothing per DIE. A value decodes to what debug/dwarf gives for the same form
// (dieVal mirrors Entry.Val's dynamic types), so the walks keep debug/dwarf's meaning; offsets
// are offsets in the compact copy of .debug_info, the same ones *dwarf.Data gives.
//
// Trust: the bytes are the file's. Every read is checked against the unit's end (or the
// section's); counts come from bytes present (an abbreviation entry takes at least 3 bytes, an
// attribute 2), so nothing allocates more than a small multiple of the input; a malformed DIE is
// an error with its offset.

// DWARF forms (DWARF 5 section 7.5.6, plus the GNU ones debug/dwarf knows).
const (
	formAddr          = 0x01
	formBlock2        = 0x03
	formBlock4        = 0x04
	formData2         = 0x05
	formData4         = 0x06
	formData8         = 0x07
	formString        = 0x08
	formBlock         = 0x09
	formBlock1        = 0x0a
	formData1         = 0x0b
	formFlag          = 0x0c
	formSdata         = 0x0d
	formStrp          = 0x0e
	formUdata         = 0x0f
	formRefAddr       = 0x10
	formRef1          = 0x11
	formRef2          = 0x12
	formRef4          = 0x13
	formRef8          = 0x14
	formRefUdata      = 0x15
	formIndirect      = 0x16
	formSecOffset     = 0x17
	formExprloc       = 0x18
	formFlagPresent   = 0x19
	formStrx          = 0x1a
	formAddrx         = 0x1b
	formRefSup4       = 0x1c
	formStrpSup       = 0x1d
	formData16        = 0x1e
	formLineStrp      = 0x1f
	formRefSig8       = 0x20
	formImplicitConst = 0x21
	formLoclistx      = 0x22
	formRnglistx      = 0x23
	formRefSup8       = 0x24
	formStrx1         = 0x25
	formStrx2         = 0x26
	formStrx3         = 0x27
	formStrx4         = 0x28
	formAddrx1        = 0x29
	formAddrx2        = 0x2a
	formAddrx3        = 0x2b
	formAddrx4        = 0x2c
	formGNURefAlt     = 0x1f20
	formGNUStrpAlt    = 0x1f21
)

// maxIndirect bounds a chain of DW_FORM_indirect (each names the next form).
const maxIndirect = 4

type abbrevAttr struct {
	attr     dwarf.Attr
	form     uint32
	implicit int64 // DW_FORM_implicit_const's value
}

type abbrevEntry struct {
	tag      dwarf.Tag
	children bool
	attrs    []abbrevAttr
	sibling  int // index in attrs of DW_AT_sibling, or -1
}

// abbrevTable is one parsed abbreviation table: by code, densely when the codes allow.
type abbrevTable struct {
	dense     []*abbrevEntry // index: code
	sparse    map[uint64]*abbrevEntry
	callSites bool // some entry is a DW_TAG_call_site or DW_TAG_GNU_call_site
}

func (t *abbrevTable) get(code uint64) *abbrevEntry {
	if code < uint64(len(t.dense)) {
		return t.dense[code]
	}
	return t.sparse[code]
}

// parseAbbrevTable parses the table b starts with (as debug/dwarf does: a later entry with the
// same code replaces an earlier one).
func parseAbbrevTable(b []byte) (*abbrevTable, error) {
	c := &cursor{b: b, order: binary.LittleEndian, what: "abbreviation table"}
	var entries []*abbrevEntry
	var codes []uint64
	var all []abbrevAttr
	type span struct{ lo, hi int }
	var spans []span
	maxCode := uint64(0)
	for {
		code := uint64(uint32(c.uleb())) // as debug/dwarf reads codes
		if c.err != nil {
			return nil, c.err
		}
		if code == 0 {
			break
		}
		if len(entries) > len(b) { // each entry takes at least 3 bytes
			return nil, fmt.Errorf("abbreviation table: too many entries")
		}
		e := &abbrevEntry{tag: dwarf.Tag(c.uleb()), children: c.u8() != 0, sibling: -1}
		lo := len(all)
		for {
			attr, form := c.uleb(), c.uleb()
			if c.err != nil {
				return nil, c.err
			}
			if attr == 0 && form == 0 {
				break
			}
			a := abbrevAttr{attr: dwarf.Attr(attr), form: uint32(form)}
			if form > 0xffff {
				return nil, fmt.Errorf("abbreviation %d: form %#x", code, form)
			}
			if form == formImplicitConst {
				a.implicit = c.sleb()
			}
			if a.attr == dwarf.AttrSibling && e.sibling < 0 {
				e.sibling = len(all) - lo
			}
			all = append(all, a)
		}
		spans = append(spans, span{lo, len(all)})
		entries = append(entries, e)
		codes = append(codes, code)
		maxCode = max(maxCode, code)
	}
	t := &abbrevTable{}
	if maxCode <= uint64(2*len(entries)+64) {
		t.dense = make([]*abbrevEntry, maxCode+1)
	} else {
		t.sparse = make(map[uint64]*abbrevEntry, len(entries))
	}
	for i, e := range entries {
		e.attrs = all[spans[i].lo:spans[i].hi:spans[i].hi]
		t.callSites = t.callSites || e.tag == tagCallSite || e.tag == tagGNUCallSite
		if t.dense != nil {
			t.dense[codes[i]] = e
		} else {
			t.sparse[codes[i]] = e
		}
	}
	return t, nil
}

// dieUnit is what decoding the DIEs of one active unit needs.
type dieUnit struct {
	info                       []byte // the compact copy; the unit is info[base:end]
	base, first, end           int
	version, offSize, addrSize int
	order                      binary.ByteOrder
	abbrevs                    *abbrevTable
	str, lineStr, strOffsets   []byte
	addr, rngLists             []byte
	strOffsetsBase, addrBase   uint64
	rngListsBase               uint64
	ref                        activeRef // for range lists
}

// dieUnitOf prepares decoding the DIEs of u (an active unit).
func (x *dwarfIndex) dieUnitOf(u *unit) (*dieUnit, error) {
	if err := x.sec.whole(); err != nil {
		return nil, err
	}
	b, info, table := u.active, u.info, u.table
	if table == nil {
		return nil, fmt.Errorf("unit at %#x: no abbreviation table", b.hdr)
	}
	base := int(b.cfirst) - int(b.first-b.hdr)
	if base < 0 || int(b.cend) > len(info) || b.cfirst > b.cend {
		return nil, fmt.Errorf("unit at %#x: bounds", b.hdr)
	}
	abbrevs, err := x.parsedTable(b.abbrev, table)
	if err != nil {
		return nil, fmt.Errorf("unit at %#x: %w", b.hdr, err)
	}
	du := &dieUnit{
		info: info[:b.cend], base: base, first: int(b.cfirst), end: int(b.cend),
		version: b.version, offSize: b.offSize, addrSize: b.addrSize, order: x.order, abbrevs: abbrevs,
		ref: activeRef{first: b.first, cfirst: b.cfirst, version: b.version, addrSize: b.addrSize, base: b.base},
	}
	du.str, _ = x.sec.str.all()
	du.lineStr, _ = x.sec.lineStr.all()
	du.strOffsets, _ = x.sec.strOffsets.all()
	du.addr, _ = x.sec.addr.all()
	du.rngLists, _ = x.sec.rngLists.all()
	if du.version >= 5 {
		// debug/dwarf reads these bases from the unit's own entry, for DWARF 5 units only.
		r := du.reader()
		var d rawDIE
		if !r.next(&d) {
			return nil, r.err
		}
		if v, ok := d.val(dwarf.AttrAddrBase).int64(); ok {
			du.addrBase = uint64(v)
		}
		if v, ok := d.val(dwarf.AttrStrOffsetsBase).int64(); ok {
			du.strOffsetsBase = uint64(v)
		}
		if v, ok := d.val(dwarf.AttrRnglistsBase).int64(); ok {
			du.rngListsBase = uint64(v)
		}
	}
	return du, nil
}

// parsedTable returns the abbreviation table at off of .debug_abbrev, parsed once.
func (x *dwarfIndex) parsedTable(off uint64, b []byte) (*abbrevTable, error) {
	if v, ok := x.abbrevs.Load(off); ok {
		return v.(*abbrevTable), nil
	}
	t, err := parseAbbrevTable(b)
	if err != nil {
		return nil, err
	}
	x.abbrevs.Store(off, t)
	return t, nil
}

// offsetEntry reads entry idx of an offsets table (.debug_str_offsets, .debug_rnglists) whose
// entries for this unit start at base; false when it lies outside the table.
func (du *dieUnit) offsetEntry(table []byte, base, idx uint64) (uint64, bool) {
	size := uint64(du.offSize)
	at := idx*size + base
	if len(table) == 0 || idx > uint64(len(table)) || at+size > uint64(len(table)) || at+size < at {
		return 0, false
	}
	if size == 8 {
		return du.order.Uint64(table[at:]), true
	}
	return uint64(du.order.Uint32(table[at:])), true
}

// children reads the unit's root DIE and returns it with a reader positioned at its first
// child; false when the root has none (r.err, when not nil, says why it could not be read).
func (du *dieUnit) children() (r *dieReader, root rawDIE, ok bool) {
	r = du.reader()
	if !r.next(&root) || root.ab == nil || !root.ab.children {
		return r, root, false
	}
	return r, root, true
}

func (du *dieUnit) reader() *dieReader { return &dieReader{u: du, off: du.first} }

// dieReader reads the DIEs of one unit in order.
type dieReader struct {
	u   *dieUnit
	off int
	err error
	pos []int32  // where each attribute's value starts (of the last DIE)
	frm []uint32 // its form (DW_FORM_indirect resolved)
}

// rawDIE is one DIE: its values are decoded on demand, while the reader has not moved on.
type rawDIE struct {
	r   *dieReader
	off int
	ab  *abbrevEntry // nil: a null entry (end of siblings)
}

func (d *rawDIE) offset() dwarf.Offset { return dwarf.Offset(d.off) }
func (d *rawDIE) tag() dwarf.Tag       { return d.ab.tag }

func (r *dieReader) fail(format string, args ...any) bool {
	if r.err == nil {
		r.err = dwarf.DecodeError{Name: "info", Offset: dwarf.Offset(r.off), Err: fmt.Sprintf(format, args...)}
	}
	return false
}

// uleb reads an unsigned LEB128 at *p, below end.
func uleb(b []byte, p *int, end int) (uint64, bool) {
	var v uint64
	for shift := uint(0); *p < end; shift += 7 {
		c := b[*p]
		*p++
		if shift < 64 {
			v |= uint64(c&0x7f) << shift
		}
		if c&0x80 == 0 {
			return v, true
		}
	}
	return 0, false
}

// next reads the DIE at the reader's offset into d; false at the unit's end or on an error
// (r.err).
func (r *dieReader) next(d *rawDIE) bool {
	if r.err != nil || r.off >= r.u.end {
		return false
	}
	b, end := r.u.info, r.u.end
	p := r.off
	code, ok := uleb(b, &p, end)
	if !ok {
		return r.fail("abbreviation code cut short")
	}
	code = uint64(uint32(code))
	d.r, d.off = r, r.off
	if code == 0 {
		d.ab = nil
		r.off = p
		return true
	}
	ab := r.u.abbrevs.get(code)
	if ab == nil {
		return r.fail("unknown abbreviation %d", code)
	}
	d.ab = ab
	r.pos, r.frm = r.pos[:0], r.frm[:0]
	for i := range ab.attrs {
		form := ab.attrs[i].form
		for k := 0; form == formIndirect; k++ {
			v, ok := uleb(b, &p, end)
			if !ok || k == maxIndirect || v > 0xffff {
				return r.fail("bad DW_FORM_indirect")
			}
			form = uint32(v)
		}
		r.pos = append(r.pos, int32(p))
		r.frm = append(r.frm, form)
		n, ok := r.u.formSize(form, b, p, end)
		if !ok || n > end-p {
			return r.fail("attribute %v (form %#x) cut short", ab.attrs[i].attr, form)
		}
		p += n
	}
	r.off = p
	return true
}

// formSize returns the size of a value of form at p (below end).
func (du *dieUnit) formSize(form uint32, b []byte, p, end int) (int, bool) {
	switch form {
	case formFlagPresent, formImplicitConst:
		return 0, true
	case formData1, formRef1, formFlag, formStrx1, formAddrx1:
		return 1, true
	case formData2, formRef2, formStrx2, formAddrx2:
		return 2, true
	case formStrx3, formAddrx3:
		return 3, true
	case formData4, formRef4, formStrx4, formAddrx4, formRefSup4:
		return 4, true
	case formData8, formRef8, formRefSig8, formRefSup8:
		return 8, true
	case formData16:
		return 16, true
	case formAddr:
		return du.addrSize, true
	case formStrp, formLineStrp, formSecOffset, formStrpSup, formGNURefAlt, formGNUStrpAlt:
		return du.offSize, true
	case formRefAddr:
		if du.version == 2 {
			return du.addrSize, true
		}
		return du.offSize, true
	case formSdata, formUdata, formRefUdata, formStrx, formAddrx, formLoclistx, formRnglistx:
		q := p
		_, ok := uleb(b, &q, end)
		return q - p, ok
	case formString:
		for q := p; q < end; q++ {
			if b[q] == 0 {
				return q - p + 1, true
			}
		}
		return 0, false
	case formBlock1:
		if p >= end {
			return 0, false
		}
		return 1 + int(b[p]), true
	case formBlock2:
		if end-p < 2 {
			return 0, false
		}
		return 2 + int(du.order.Uint16(b[p:])), true
	case formBlock4:
		if end-p < 4 {
			return 0, false
		}
		n := uint64(du.order.Uint32(b[p:]))
		if n > uint64(end-p) {
			return 0, false
		}
		return 4 + int(n), true
	case formBlock, formExprloc:
		q := p
		n, ok := uleb(b, &q, end)
		if !ok || n > uint64(end-q) {
			return 0, false
		}
		return q - p + int(n), true
	}
	return 0, false
}

// skipChildren moves the reader past the children of d (the DIE just read): to its
// DW_AT_sibling when that points forward, else by reading them.
func (r *dieReader) skipChildren(d *rawDIE) {
	if d.ab == nil || !d.ab.children || r.err != nil {
		return
	}
	if i := d.ab.sibling; i >= 0 {
		if v := d.field(i); v.kind == valOffset && int(v.u) >= r.off {
			r.off = int(v.u)
			return
		}
	}
	depth := 1
	var c rawDIE
	for depth > 0 && r.next(&c) {
		switch {
		case c.ab == nil:
			depth--
		case c.ab.children:
			if i := c.ab.sibling; i >= 0 {
				if v := c.field(i); v.kind == valOffset && int(v.u) >= r.off {
					r.off = int(v.u)
					continue
				}
			}
			depth++
		}
	}
}

// Kinds of dieVal: the dynamic type debug/dwarf's Entry.Val gives for the form.
const (
	valNone   = iota // attribute absent, or a value that failed to decode
	valUint64        // addresses, DW_FORM_ref_sig8, ..._sup8, loclistx, rnglistx (resolved)
	valInt64         // constants, sec_offset
	valOffset        // references within .debug_info
	valString
	valBool
	valBytes
	valUint32 // DW_FORM_ref_sup4, 32-bit DW_FORM_strp_sup
)

// dieVal is one decoded attribute value.
type dieVal struct {
	kind int
	form uint32
	u    uint64 // valUint64, valOffset, valUint32, valBool (0/1)
	i    int64  // valInt64
	b    []byte // valString (without the NUL), valBytes
	err  error  // decoding failed (then kind is valNone)
}

func (v dieVal) uint64() (uint64, bool) { return v.u, v.kind == valUint64 }
func (v dieVal) int64() (int64, bool)   { return v.i, v.kind == valInt64 }
func (v dieVal) ref() (dwarf.Offset, bool) {
	return dwarf.Offset(v.u), v.kind == valOffset
}
func (v dieVal) str() ([]byte, bool) { return v.b, v.kind == valString }
func (v dieVal) flag() bool          { return v.kind == valBool && v.u != 0 }

// isReference: the form's class is dwarf.ClassReference.
func (v dieVal) isReference() bool {
	switch v.form {
	case formRefAddr, formRef1, formRef2, formRef4, formRef8, formRefUdata, formRefSup4, formRefSup8:
		return true
	}
	return false
}

// isAddress: the form's class is dwarf.ClassAddress.
func (v dieVal) isAddress() bool {
	switch v.form {
	case formAddr, formAddrx, formAddrx1, formAddrx2, formAddrx3, formAddrx4:
		return true
	}
	return false
}

// isConstant: the form's class is dwarf.ClassConstant for attributes that are no section
// pointers (DW_AT_high_pc, call lines...).
func (v dieVal) isConstant() bool {
	switch v.form {
	case formData1, formData2, formData4, formData8, formSdata, formUdata, formData16, formImplicitConst:
		return true
	}
	return false
}

// index returns the index of attr's first occurrence in d, or -1.
func (d *rawDIE) index(attr dwarf.Attr) int {
	for i := range d.ab.attrs {
		if d.ab.attrs[i].attr == attr {
			return i
		}
	}
	return -1
}

func (d *rawDIE) has(attr dwarf.Attr) bool { return d.index(attr) >= 0 }

// val decodes attr's value (its first occurrence), as Entry.Val would.
func (d *rawDIE) val(attr dwarf.Attr) dieVal {
	i := d.index(attr)
	if i < 0 {
		return dieVal{}
	}
	return d.field(i)
}

var errNoSection = errors.New("section missing")

// field decodes the value of attribute i.
func (d *rawDIE) field(i int) dieVal {
	r, du := d.r, d.r.u
	b := du.info
	p, form := int(r.pos[i]), r.frm[i]
	v := dieVal{form: form}
	fixed := func(n int) uint64 {
		switch n {
		case 1:
			return uint64(b[p])
		case 2:
			return uint64(du.order.Uint16(b[p:]))
		case 3:
			if du.order == binary.BigEndian {
				return uint64(b[p])<<16 | uint64(b[p+1])<<8 | uint64(b[p+2])
			}
			return uint64(b[p]) | uint64(b[p+1])<<8 | uint64(b[p+2])<<16
		case 4:
			return uint64(du.order.Uint32(b[p:]))
		default:
			return du.order.Uint64(b[p:])
		}
	}
	ul := func() uint64 {
		q := p
		x, _ := uleb(b, &q, du.end) // next checked it
		return x
	}
	// indexOperand reads the operand of an indexed form (DW_FORM_addrx*, DW_FORM_strx*): a
	// ULEB128, or 1 to 4 bytes by the form's number.
	indexOperand := func(form uint32) uint64 {
		switch form {
		case formAddrx1, formStrx1:
			return fixed(1)
		case formAddrx2, formStrx2:
			return fixed(2)
		case formAddrx3, formStrx3:
			return fixed(3)
		case formAddrx4, formStrx4:
			return fixed(4)
		}
		return ul()
	}
	bad := func(err error) dieVal {
		return dieVal{form: form, err: fmt.Errorf("DIE at %#x, %v: %w", d.off, d.ab.attrs[i].attr, err)}
	}
	switch form {
	case formAddr:
		v.kind, v.u = valUint64, fixed(du.addrSize)
	case formAddrx, formAddrx1, formAddrx2, formAddrx3, formAddrx4:
		idx := indexOperand(form)
		a, err := du.debugAddr(idx)
		if err != nil {
			return bad(err)
		}
		v.kind, v.u = valUint64, a
	case formBlock1, formBlock2, formBlock4, formBlock, formExprloc, formData16:
		n, _ := du.formSize(form, b, p, du.end)
		hdr := 0
		switch form {
		case formBlock1:
			hdr = 1
		case formBlock2:
			hdr = 2
		case formBlock4:
			hdr = 4
		case formBlock, formExprloc:
			q := p
			uleb(b, &q, du.end)
			hdr = q - p
		}
		v.kind, v.b = valBytes, b[p+hdr:p+n]
	case formData1:
		v.kind, v.i = valInt64, int64(fixed(1))
	case formData2:
		v.kind, v.i = valInt64, int64(fixed(2))
	case formData4:
		v.kind, v.i = valInt64, int64(fixed(4))
	case formData8:
		v.kind, v.i = valInt64, int64(fixed(8))
	case formSdata:
		q := p
		v.kind, v.i = valInt64, sleb(b, &q, du.end)
	case formUdata:
		v.kind, v.i = valInt64, int64(ul())
	case formImplicitConst:
		v.kind, v.i = valInt64, d.ab.attrs[i].implicit
	case formFlag:
		v.kind = valBool
		if b[p] == 1 {
			v.u = 1
		}
	case formFlagPresent:
		v.kind, v.u = valBool, 1
	case formRefAddr:
		if du.version == 2 {
			v.u = fixed(du.addrSize)
		} else {
			v.u = fixed(du.offSize)
		}
		v.kind, v.u = valOffset, uint64(uint32(v.u))
	case formRef1, formRef2, formRef4, formRef8, formRefUdata:
		var o uint64
		switch form {
		case formRef1:
			o = fixed(1)
		case formRef2:
			o = fixed(2)
		case formRef4:
			o = fixed(4)
		case formRef8:
			o = fixed(8)
		default:
			o = ul()
		}
		v.kind, v.u = valOffset, uint64(uint32(o+uint64(du.base)))
	case formString:
		n, _ := du.formSize(form, b, p, du.end)
		v.kind, v.b = valString, b[p:p+n-1]
	case formStrp, formLineStrp:
		off := fixed(du.offSize)
		sec := du.str
		if form == formLineStrp {
			if len(du.lineStr) == 0 {
				return bad(errNoSection)
			}
			sec = du.lineStr
		}
		s, ok := cstring(sec, off)
		if !ok {
			return bad(errors.New("string offset out of range"))
		}
		v.kind, v.b = valString, s
	case formStrx, formStrx1, formStrx2, formStrx3, formStrx4:
		idx := indexOperand(form)
		if len(du.strOffsets) == 0 {
			return bad(errNoSection)
		}
		off, ok := du.offsetEntry(du.strOffsets, du.strOffsetsBase, idx)
		if !ok {
			return bad(errors.New("string index out of range"))
		}
		s, ok := cstring(du.str, off)
		if !ok {
			return bad(errors.New("string offset out of range"))
		}
		v.kind, v.b = valString, s
	case formStrpSup:
		if du.offSize == 8 {
			v.kind, v.u = valUint64, fixed(8)
		} else {
			v.kind, v.u = valUint32, fixed(4)
		}
	case formSecOffset, formGNURefAlt, formGNUStrpAlt:
		v.kind, v.i = valInt64, int64(fixed(du.offSize))
	case formRefSig8, formRefSup8:
		v.kind, v.u = valUint64, fixed(8)
	case formRefSup4:
		v.kind, v.u = valUint32, fixed(4)
	case formLoclistx:
		v.kind, v.u = valUint64, ul()
	case formRnglistx:
		off, ok := du.offsetEntry(du.rngLists, du.rngListsBase, ul())
		if !ok {
			return bad(errors.New("range list index out of range"))
		}
		v.kind, v.u = valUint64, du.rngListsBase+off
	default:
		return bad(fmt.Errorf("unknown form %#x", form))
	}
	return v
}

// debugAddr reads entry idx of the unit's .debug_addr table.
func (du *dieUnit) debugAddr(idx uint64) (uint64, error) {
	n := uint64(du.addrSize)
	at := idx*n + du.addrBase
	if idx > uint64(len(du.addr)) || at+n > uint64(len(du.addr)) || at+n < at {
		return 0, errors.New("address index out of range")
	}
	c := &cursor{b: du.addr, off: int(at), order: du.order}
	return c.uint(du.addrSize), nil
}

// cstring returns the NUL-terminated string at off of sec (without the NUL).
func cstring(sec []byte, off uint64) ([]byte, bool) {
	if off >= uint64(len(sec)) {
		return nil, false
	}
	for i := int(off); i < len(sec); i++ {
		if sec[i] == 0 {
			return sec[off:i], true
		}
	}
	return nil, false
}

// sleb reads a signed LEB128 at *p, below end (zero when cut short: next checked it).
func sleb(b []byte, p *int, end int) int64 {
	var v int64
	var shift uint
	for *p < end {
		c := b[*p]
		*p++
		if shift < 64 {
			v |= int64(c&0x7f) << shift
		}
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
	return 0
}

// dieRanges appends the address ranges of d to ret, as dwarfData.Ranges gives them for its
// Entry.
func (x *dwarfIndex) dieRanges(d *rawDIE, ret [][2]uint64) ([][2]uint64, error) {
	du := d.r.u
	low := d.val(dwarf.AttrLowpc)
	if low.err != nil {
		return nil, low.err
	}
	if lo, ok := low.uint64(); ok {
		hi := d.val(dwarf.AttrHighpc)
		switch {
		case hi.err != nil:
			return nil, hi.err
		case hi.kind == valUint64 && hi.isAddress():
			ret = append(ret, [2]uint64{lo, hi.u})
		case hi.kind == valInt64 && hi.isConstant():
			ret = append(ret, [2]uint64{lo, lo + uint64(hi.i)})
		}
	}
	i := d.index(dwarf.AttrRanges)
	if i < 0 {
		return ret, nil
	}
	rv := d.field(i)
	if rv.err != nil {
		return nil, rv.err
	}
	var off int64
	switch rv.kind {
	case valInt64:
		off = rv.i
	case valUint64: // rnglistx, resolved to an offset
		if du.version < 5 {
			return ret, nil
		}
		off = int64(rv.u)
	default:
		return ret, nil
	}
	listPtr := rv.form == formSecOffset || (du.version < 4 && rv.isConstant() && rv.form != formData16)
	return x.rangeList(x.data.get(), du.ref, off, listPtr, ret)
}

// str returns the string value of attr (nil when absent or not a string), recording a value
// that fails to decode in *err.
func (d *rawDIE) str(attr dwarf.Attr, err *error) []byte {
	s, _ := d.strVal(attr, err)
	return s
}

// strVal is str, and whether the bytes are those of .debug_str or .debug_line_str (see
// sharedString).
func (d *rawDIE) strVal(attr dwarf.Attr, err *error) ([]byte, bool) {
	v := d.val(attr)
	if v.err != nil && *err == nil {
		*err = v.err
	}
	s, ok := v.str()
	return s, ok && v.form != formString
}

// linkage returns DW_AT_linkage_name, else DW_AT_MIPS_linkage_name, as strVal.
func (d *rawDIE) linkage(err *error) ([]byte, bool) {
	if d.has(dwarf.AttrLinkageName) {
		v := d.val(dwarf.AttrLinkageName)
		if v.err != nil && *err == nil {
			*err = v.err
		}
		if s, ok := v.str(); ok {
			return s, v.form != formString
		}
	}
	return d.strVal(attrMIPSLinkageName, err)
}

// sharedString makes a string of b without copying it. Only for bytes of a section read
// whole (stream.all: kept for the file's life and never written), so that the many names of a
// unit walk cost no allocation; the string keeps the section's memory alive.
func sharedString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// refVal returns the reference value of attr (0 when absent or no reference).
func (d *rawDIE) refVal(attr dwarf.Attr, err *error) dwarf.Offset {
	v := d.val(attr)
	if v.err != nil && *err == nil {
		*err = v.err
	}
	o, _ := v.ref()
	return o
}

// intVal returns the int64 value of attr (0 when absent or of another type).
func (d *rawDIE) intVal(attr dwarf.Attr, err *error) int64 {
	v := d.val(attr)
	if v.err != nil && *err == nil {
		*err = v.err
	}
	i, _ := v.int64()
	return i
}
