package cfi

import (
	"encoding/binary"
	"errors"
	"sort"
	"strconv"
	"strings"
)

// Config describes the object a section comes from.
type Config struct {
	Order    binary.ByteOrder // from the ELF header's EI_DATA
	AddrSize int              // 4 or 8, from the ELF class; a version 4 CIE may override it
	// Bases.Section is the link-time address of the section (.eh_frame only: .debug_frame holds
	// absolute addresses). Text and Data are the bases of textrel and datarel pointers.
	Bases Bases
	// Deref, if set, reads a pointer of the object at a link-time address: DW_EH_PE_indirect
	// values are resolved through it. Without it an indirect personality routine is kept as the
	// address of its pointer (CIE.PersonalityIndirect), and an indirect FDE address is an error.
	Deref func(addr uint64, size int) (uint64, error)
}

// CIE is a Common Information Entry: what the FDEs that refer to it share.
type CIE struct {
	Offset       uint64 // of the entry in its section
	Version      uint8
	Augmentation string
	CodeAlign    uint64
	DataAlign    int64
	RAColumn     uint64 // the column that holds the return address
	AddrSize     int
	SegSize      int
	FDEEncoding  byte // DW_EH_PE_* of FDE addresses (absptr unless 'R')
	LSDAEncoding byte // PEOmit unless 'L'
	// Personality is the personality routine ('P'), or the address of a pointer to it when
	// PersonalityIndirect is set.
	Personality         uint64
	PersonalityIndirect bool
	Signal              bool // 'S': FDEs of this CIE describe signal frames
	hasAugData          bool // 'z'
	usable              bool // false for an augmentation this package cannot skip
	initial             []byte
	initialOff          uint64 // section offset of initial
	table               *Table
}

// FDE is a Frame Description Entry: the CFA program of one range of code.
type FDE struct {
	Offset     uint64 // of the entry in its section
	Start, End uint64 // link-time addresses covered, End exclusive
	LSDA       uint64 // language-specific data area ('L'), 0 if none
	CIE        *CIE
	insns      []byte
	insnOff    uint64 // section offset of insns
}

// maxOverlapScan bounds how many overlapping FDEs a lookup examines.
const maxOverlapScan = 64

// Table is the parsed contents of one .eh_frame or .debug_frame section: its FDEs sorted by
// address. It is immutable after parsing and safe for concurrent use.
type Table struct {
	section string
	cfg     Config
	fdes    []FDE    // sorted by Start
	maxEnd  []uint64 // maxEnd[i] = max(fdes[0..i].End), so lookups stay exact when FDEs overlap
	cies    []*CIE
	skipped int
}

// Len is the number of FDEs in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.fdes)
}

// FDE returns the i-th FDE in address order.
func (t *Table) FDE(i int) *FDE { return &t.fdes[i] }

// Skipped counts FDEs left out because their CIE has an augmentation this package does not know
// (without 'z', the size of such an FDE's fields is unknown) or because they cover no code.
func (t *Table) Skipped() int { return t.skipped }

// FDEFor returns the FDE whose range holds pc (a link-time address), or ErrNoFDE.
func (t *Table) FDEFor(pc uint64) (*FDE, error) {
	if t == nil {
		return nil, ErrNoFDE
	}
	i := sort.Search(len(t.fdes), func(i int) bool { return t.fdes[i].Start > pc }) - 1
	// Walk back over the entries that start at or below pc while one of them could still end
	// above it. Compilers never nest FDEs, so this looks at a single entry; the bound keeps
	// crafted tables from making every lookup linear.
	for n := 0; i >= 0 && t.maxEnd[i] > pc && n < maxOverlapScan; i, n = i-1, n+1 {
		if pc < t.fdes[i].End {
			return &t.fdes[i], nil
		}
	}
	return nil, ErrNoFDE
}

// ParseEHFrame parses a .eh_frame section. cfg.Bases.Section must be the section's address.
// Parsing stops at a zero terminator; bytes after it are ignored.
func ParseEHFrame(data []byte, cfg Config) (*Table, error) {
	return parse(data, cfg, true)
}

// ParseDebugFrame parses a .debug_frame section (CIE versions 1, 3 and 4).
func ParseDebugFrame(data []byte, cfg Config) (*Table, error) {
	return parse(data, cfg, false)
}

// entry is one CIE or FDE located by its length field.
type entry struct {
	off     uint64 // of the length field
	body    []byte // after the CIE id / CIE pointer, bounded by the length
	bodyOff uint64
	idSize  int
	id      uint64
	idPos   uint64
	cie     bool
}

func parse(data []byte, cfg Config, eh bool) (*Table, error) {
	section := "debug_frame"
	if eh {
		section = "eh_frame"
	}
	if cfg.Order == nil {
		return nil, errors.New("cfi: Config.Order is not set")
	}
	if cfg.AddrSize != 4 && cfg.AddrSize != 8 {
		return nil, &DecodeError{Section: section, Msg: "address size must be 4 or 8"}
	}
	t := &Table{section: section, cfg: cfg}
	entries, err := split(data, section, cfg.Order, eh)
	if err != nil {
		return nil, err
	}
	cies := map[uint64]*CIE{}
	for i := range entries {
		e := &entries[i]
		if !e.cie {
			continue
		}
		c, err := t.parseCIE(e, eh)
		if err != nil {
			return nil, err
		}
		cies[e.off] = c
		t.cies = append(t.cies, c)
	}
	nfde := len(entries) - len(cies)
	t.fdes = make([]FDE, 0, nfde)
	for i := range entries {
		e := &entries[i]
		if e.cie {
			continue
		}
		var cieOff uint64
		if eh {
			// A relative offset back from the CIE pointer field.
			if e.id == 0 || e.id > e.idPos {
				return nil, &DecodeError{Section: section, Offset: e.off, Msg: "FDE's CIE pointer points before the section"}
			}
			cieOff = e.idPos - e.id
		} else {
			cieOff = e.id
		}
		c := cies[cieOff]
		if c == nil {
			return nil, &DecodeError{Section: section, Offset: e.off, Msg: "FDE's CIE pointer does not point at a CIE"}
		}
		if !c.usable {
			t.skipped++
			continue
		}
		f, err := t.parseFDE(e, c, eh)
		if err != nil {
			return nil, err
		}
		if f.End == f.Start {
			t.skipped++
			continue
		}
		t.fdes = append(t.fdes, f)
	}
	sort.SliceStable(t.fdes, func(i, j int) bool { return t.fdes[i].Start < t.fdes[j].Start })
	t.maxEnd = make([]uint64, len(t.fdes))
	var m uint64
	for i := range t.fdes {
		m = max(m, t.fdes[i].End)
		t.maxEnd[i] = m
	}
	return t, nil
}

// split cuts a section into its entries, checking every length against the section.
func split(data []byte, section string, order binary.ByteOrder, eh bool) ([]entry, error) {
	var out []entry
	r := &reader{b: data, order: order, section: section}
	for r.left() > 0 {
		off := r.pos()
		length := uint64(r.u32())
		idSize := 4
		if length == 0xffffffff {
			length = r.u64()
			idSize = 8
		} else if length >= 0xfffffff0 {
			return nil, &DecodeError{Section: section, Offset: off, Msg: "reserved initial length value"}
		}
		if r.err != nil {
			return nil, r.err
		}
		if length == 0 {
			if eh {
				break // the zero terminator
			}
			continue // padding
		}
		bodyOff := r.pos()
		body := r.bytes(length, "entry")
		if r.err != nil {
			return nil, &DecodeError{Section: section, Offset: off, Msg: "entry length " + hex(length) + " overruns the section"}
		}
		br := &reader{b: body, base: bodyOff, order: order, section: section}
		e := entry{off: off, idSize: idSize, idPos: bodyOff}
		e.id = br.word(idSize)
		if br.err != nil {
			return nil, &DecodeError{Section: section, Offset: off, Msg: "entry too short for its CIE id"}
		}
		e.body, e.bodyOff = body[idSize:], bodyOff+uint64(idSize)
		if eh {
			e.cie = e.id == 0
		} else {
			e.cie = idSize == 4 && e.id == 0xffffffff || idSize == 8 && e.id == ^uint64(0)
		}
		out = append(out, e)
	}
	return out, nil
}

func (t *Table) parseCIE(e *entry, eh bool) (*CIE, error) {
	r := &reader{b: e.body, base: e.bodyOff, order: t.cfg.Order, section: t.section}
	c := &CIE{Offset: e.off, AddrSize: t.cfg.AddrSize, FDEEncoding: PEAbsptr, LSDAEncoding: PEOmit, usable: true, table: t}
	c.Version = r.u8()
	switch c.Version {
	case 1, 3, 4:
	default:
		if r.err == nil {
			return nil, &DecodeError{Section: t.section, Offset: e.off, Msg: "unsupported CIE version " + hex(uint64(c.Version))}
		}
	}
	c.Augmentation = r.cstring("CIE augmentation")
	if c.Version >= 4 {
		c.AddrSize = int(r.u8())
		c.SegSize = int(r.u8())
		if r.err == nil && (c.AddrSize != 4 && c.AddrSize != 8 || c.SegSize > 8) {
			return nil, &DecodeError{Section: t.section, Offset: e.off, Msg: "CIE address size " + hex(uint64(c.AddrSize)) + " / segment size " + hex(uint64(c.SegSize))}
		}
	}
	aug := c.Augmentation
	if strings.HasPrefix(aug, "eh") {
		// Old gcc: the address of the exception table follows.
		r.word(c.AddrSize)
		aug = aug[2:]
	}
	c.CodeAlign = r.uleb()
	c.DataAlign = r.sleb()
	if c.Version == 1 {
		c.RAColumn = uint64(r.u8())
	} else {
		c.RAColumn = r.uleb()
	}
	if r.err != nil {
		return nil, r.err
	}
	if strings.HasPrefix(aug, "z") {
		c.hasAugData = true
		n := r.uleb()
		ad := r.bytes(n, "CIE augmentation data")
		if r.err != nil {
			return nil, r.err
		}
		ar := &reader{b: ad, base: r.pos() - n, order: t.cfg.Order, section: t.section}
		ctx := &pointerCtx{bases: t.cfg.Bases, addrSize: c.AddrSize, deref: t.cfg.Deref}
	augLoop:
		for _, ch := range aug[1:] {
			switch ch {
			case 'R':
				c.FDEEncoding = ar.u8()
				if !validEncoding(c.FDEEncoding) || c.FDEEncoding == PEOmit {
					ar.failBack(1, "bad FDE pointer encoding %#x", c.FDEEncoding)
				}
			case 'L':
				c.LSDAEncoding = ar.u8()
				if !validEncoding(c.LSDAEncoding) {
					ar.failBack(1, "bad LSDA pointer encoding %#x", c.LSDAEncoding)
				}
			case 'P':
				enc := ar.u8()
				if !validEncoding(enc) || enc == PEOmit {
					ar.failBack(1, "bad personality pointer encoding %#x", enc)
					break augLoop
				}
				c.Personality, c.PersonalityIndirect = ar.pointer(enc, ctx)
			case 'S':
				c.Signal = true
			case 'B', 'G':
				// AArch64 pointer authentication with the B key, memory tagging: nothing to
				// read, nothing that changes where registers are saved.
			default:
				// Unknown, but 'z' says how long the data is: the FDEs stay readable.
				break augLoop
			}
		}
		if ar.err != nil {
			return nil, ar.err
		}
	} else if aug != "" {
		// Without 'z' the layout of this CIE's FDEs is unknown.
		c.usable = false
	}
	c.initialOff = r.pos()
	c.initial = e.body[r.off:]
	return c, nil
}

func (t *Table) parseFDE(e *entry, c *CIE, eh bool) (FDE, error) {
	r := &reader{b: e.body, base: e.bodyOff, order: t.cfg.Order, section: t.section}
	f := FDE{Offset: e.off, CIE: c}
	var start, length uint64
	if eh {
		ctx := &pointerCtx{bases: t.cfg.Bases, addrSize: c.AddrSize, deref: t.cfg.Deref}
		var ind bool
		start, ind = r.pointer(c.FDEEncoding, ctx)
		if ind {
			return FDE{}, &DecodeError{Section: t.section, Offset: e.off, Msg: "indirect FDE start address and no way to read it"}
		}
		length, _ = r.pointer(c.FDEEncoding&0x0f, ctx)
	} else {
		r.bytes(uint64(c.SegSize), "segment selector")
		start = r.word(c.AddrSize)
		length = r.word(c.AddrSize)
	}
	if r.err != nil {
		return FDE{}, r.err
	}
	f.Start = start
	f.End = truncate(start+length, c.AddrSize)
	if f.End < f.Start || length > 0 && f.End == f.Start {
		return FDE{}, &DecodeError{Section: t.section, Offset: e.off, Msg: "FDE range " + hex(start) + "+" + hex(length) + " wraps around"}
	}
	if c.hasAugData {
		n := r.uleb()
		ad := r.bytes(n, "FDE augmentation data")
		if r.err != nil {
			return FDE{}, r.err
		}
		if c.LSDAEncoding != PEOmit && n > 0 {
			ar := &reader{b: ad, base: r.pos() - n, order: t.cfg.Order, section: t.section}
			ctx := &pointerCtx{bases: t.cfg.Bases, addrSize: c.AddrSize, funcBase: start, deref: t.cfg.Deref}
			f.LSDA, _ = ar.pointer(c.LSDAEncoding, ctx)
			if ar.err != nil {
				return FDE{}, ar.err
			}
		}
	}
	f.insnOff = r.pos()
	f.insns = e.body[r.off:]
	return f, nil
}

func hex(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }
