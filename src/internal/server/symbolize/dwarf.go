package symbolize

import (
	"cmp"
	"debug/dwarf"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

// dwarfIndex finds the compile unit of an address and reads units on
// demand. Line tables and function trees are built per unit on first use
// (see unitState).
//
// Finding the unit: with .debug_aranges (what gcc emits), the unit comes
// from its address table, and .debug_info is only read through to that
// unit (see stream: what is in front of it is inflated, not kept); the
// unit's own ranges (DW_AT_ranges, low/high pc) then decide, as they do for
// gdb, among the units the table names. Without .debug_aranges, and for
// small files, every unit's ranges are read, as gdb does.
//
// Reading DIEs: debug/dwarf wants .debug_info and .debug_abbrev whole and
// parses the header and abbreviation table of every unit it is given. So it
// is given a compact copy: the units in use ("active"), each with its
// abbreviation table, appended as they become active. Offsets (DIE offsets,
// references, unit bounds) are offsets in that copy; they are the file's
// own when every unit was made active in order (full mode). Full mode is
// used without .debug_aranges, for small files, and when some abbreviation
// table has forms holding .debug_info offsets (DW_FORM_ref_addr: LTO, dwz,
// Go), which only the file's own offsets satisfy. Each activation makes a
// new *dwarf.Data (data), which covers every unit the previous one did, at
// the same offsets; past maxActiveUnits, every unit is made active at once
// (each new Data parses the table of every active unit).
type dwarfIndex struct {
	data    dwarfData
	sec     *debugSections
	order   binary.ByteOrder
	atZero  bool     // some executable section starts at address 0
	foreign sync.Map // dwarf.Offset -> *declInfo, DIEs read outside a unit walk
	abbrevs sync.Map // .debug_abbrev offset -> *abbrevTable (die.go)
	names   *budget  // bytes of names and paths the unit indexes may keep

	sites sync.Map // *unit -> *unitSites, built on first use (callsites.go)
	// cxxTypeNames caches gdb's names of C++ types: dwarf.Offset -> string
	// ("" for an unnamed type).
	cxxTypeNames sync.Map

	indexOnce sync.Once
	indexErr  error
	noAranges bool // index every unit even with .debug_aranges (tests)

	mu      sync.Mutex   // guards the fields below
	bounds  []unitBounds // every unit header read so far, in section order
	scanned int          // .debug_info bytes covered by bounds

	cinfo, cabbrev []byte            // what data reads: the active units and their tables
	tableAt        map[uint64]uint64 // .debug_abbrev offset -> offset in cabbrev
	active         []int             // indexes in bounds of the active units, in cinfo order
	allActive      bool              // every unit is active
	full           bool              // ... in section order, from the start: offsets are the file's
	offsetForms    chan bool         // some table has forms holding .debug_info offsets (sent once)

	byAranges bool        // ranges are .debug_aranges' (else every unit's own)
	ranges    []unitRange // sorted by lo
	rangesMax []uint64    // rangesMax[i] = max(ranges[:i+1].hi)
}

// dwarfData reads DIEs of the active units (the latest *dwarf.Data).
type dwarfData struct {
	p atomic.Pointer[dwarf.Data]
	x *dwarfIndex
}

func (d *dwarfData) get() *dwarf.Data {
	if v := d.p.Load(); v != nil {
		return v
	}
	return emptyData
}

// Reader returns a reader over every active unit.
func (d *dwarfData) Reader() *dwarf.Reader { return d.get().Reader() }

// Ranges returns the address ranges of e, as dwarf.Data.Ranges does. For
// DWARF 2-4 range lists it reads .debug_ranges itself with the unit's base
// address read once (dwarf.Data.Ranges reads the unit's own entry again at
// every call: most of the cost of a unit with many inlined calls).
func (d *dwarfData) Ranges(e *dwarf.Entry) ([][2]uint64, error) {
	data := d.get()
	f := e.AttrField(dwarf.AttrRanges)
	if f == nil || d.x == nil || e.Tag == dwarf.TagCompileUnit {
		return data.Ranges(e)
	}
	b, ok := d.x.activeUnit(e.Offset)
	if !ok {
		return data.Ranges(e)
	}
	var off int64
	switch v := f.Val.(type) {
	case int64:
		off = v
	case uint64: // rnglistx, as an offset already
		if b.version < 5 {
			return data.Ranges(e)
		}
		off = int64(v)
	default:
		return data.Ranges(e)
	}
	var ret [][2]uint64
	low, lowOK := e.Val(dwarf.AttrLowpc).(uint64)
	if f := e.AttrField(dwarf.AttrHighpc); f != nil && lowOK {
		switch v := f.Val.(type) {
		case uint64:
			if f.Class == dwarf.ClassAddress {
				ret = append(ret, [2]uint64{low, v})
			}
		case int64:
			if f.Class == dwarf.ClassConstant {
				ret = append(ret, [2]uint64{low, low + uint64(v)})
			}
		}
	}
	return d.x.rangeList(data, b, off, f.Class == dwarf.ClassRangeListPtr, ret)
}

// rangeList appends the ranges of the range list at off (of .debug_rnglists or
// .debug_ranges, by the unit's version; listPtr: the attribute's class is
// dwarf.ClassRangeListPtr) to ret.
func (x *dwarfIndex) rangeList(data *dwarf.Data, b activeRef, off int64, listPtr bool, ret [][2]uint64) ([][2]uint64, error) {
	if b.version >= 5 {
		if rl, _ := x.sec.rngLists.all(); rl != nil {
			return x.rangeList5(data, b, off, rl, ret)
		}
		if !listPtr {
			return ret, nil
		}
	}
	ranges, _ := x.sec.ranges.all()
	if ranges == nil {
		return ret, nil
	}
	base, _, err := x.unitBase(data, b)
	if err != nil {
		return nil, err
	}
	if off < 0 || off > int64(len(ranges)) {
		return nil, fmt.Errorf("invalid range offset %d (max %d)", off, len(ranges))
	}
	c := &cursor{b: ranges, off: int(off), order: x.order, what: ".debug_ranges"}
	top := ^uint64(0) >> (64 - 8*uint(b.addrSize))
	for c.left() >= 2*b.addrSize {
		lo, hi := c.uint(b.addrSize), c.uint(b.addrSize)
		switch {
		case lo == 0 && hi == 0:
			return ret, nil
		case lo == top:
			base = hi
		default:
			ret = append(ret, [2]uint64{base + lo, base + hi})
		}
	}
	return ret, nil
}

// emptyData has one unit without entries.
var emptyData = func() *dwarf.Data {
	d, err := dwarf.New([]byte{0}, nil, nil, []byte{7, 0, 0, 0, 4, 0, 0, 0, 0, 0, 8}, nil, nil, nil, nil)
	if err != nil {
		panic(err)
	}
	return d
}()

// unitBounds locates one unit: in .debug_info (hdr, first, end), and,
// once active, in the compact copy (cfirst, cend).
type unitBounds struct {
	hdr   dwarf.Offset // offset of the unit header
	first dwarf.Offset // offset of the unit's first DIE
	end   dwarf.Offset // offset just past the unit

	abbrev   uint64 // the header's abbreviation table offset
	abbrevAt int    // where that field is, from hdr
	offSize  int    // 4 or 8 (64-bit DWARF)
	version  int
	addrSize int

	base *unitBase // the unit's base address for range lists, once read

	active       bool
	cfirst, cend dwarf.Offset
	read         bool  // the unit's own entry was read
	u            *unit // the compile or partial unit, once read
}

// unit is a compile (or partial) unit.
type unit struct {
	bounds         unitBounds
	name, compDir  string
	lang           int64
	stmtList       int64 // -1 when absent
	strOffsetsBase uint64
	addrSize       int
	low            uint64      // lowest address of its ranges
	ranges         [][2]uint64 // its ranges, without empty and discarded ones

	// For the DIE decoder: the unit's bounds as made active, the compact copy through its
	// end, and its abbreviation table's bytes onwards (die.go).
	active      unitBounds
	info, table []byte

	once  sync.Once
	state *unitState
	err   error
}

type unitBase struct {
	once     sync.Once
	v        uint64
	addrBase uint64
	err      error
}

type unitRange struct {
	lo, hi uint64
	hdr    dwarf.Offset // header of the unit
}

func newDwarfIndex(ds *debugSections, order binary.ByteOrder, atZero bool) (*dwarfIndex, error) {
	x := &dwarfIndex{sec: ds, order: order, atZero: atZero, names: newBudget(baseNameBudget + 8*ds.loaded)}
	x.data.x = x
	if ds.info.len() <= eagerIndexBytes {
		// Small: index every unit now, so that broken DWARF fails the open.
		x.indexOnce.Do(func() { x.indexErr = x.buildIndex(false) })
		if x.indexErr != nil {
			return nil, x.indexErr
		}
	}
	return x, nil
}

// eagerIndexBytes: files with at most this much .debug_info are indexed
// at open (a variable for tests).
var eagerIndexBytes = eagerBytes

// index builds the unit index on first use.
func (x *dwarfIndex) index() error {
	x.indexOnce.Do(func() { x.indexErr = x.buildIndex(!x.noAranges) })
	return x.indexErr
}

func (x *dwarfIndex) buildIndex(useAranges bool) error {
	go x.sec.whole() // strings and range lists, while .debug_info is read
	if useAranges && x.sec.aranges != nil {
		if rs := x.readAranges(); len(rs) > 0 {
			x.byAranges = true
			x.setRanges(rs)
			x.offsetForms = make(chan bool, 1)
			go func() { x.offsetForms <- x.anyOffsetForms() }()
			return nil
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.activateAll()
}

// rangesOfAll indexes the ranges of every unit (full mode). x.mu is held.
func (x *dwarfIndex) rangesOfAll() {
	var rs []unitRange
	for _, b := range x.bounds {
		if b.u != nil {
			for _, rg := range b.u.ranges {
				rs = append(rs, unitRange{rg[0], rg[1], b.hdr})
			}
		}
	}
	x.setRanges(rs)
}

func (x *dwarfIndex) setRanges(rs []unitRange) {
	slices.SortStableFunc(rs, func(a, b unitRange) int { return cmp.Compare(a.lo, b.lo) })
	x.ranges = rs
	x.rangesMax = make([]uint64, len(rs))
	var m uint64
	for i, rg := range rs {
		m = max(m, rg.hi)
		x.rangesMax[i] = m
	}
}

// readAranges reads .debug_aranges; nil when it is unusable (then every
// unit is read instead).
func (x *dwarfIndex) readAranges() []unitRange {
	b, err := x.sec.aranges.all()
	if err != nil {
		return nil
	}
	var out []unitRange
	for off := 0; off < len(b); {
		c := &cursor{b: b, off: off, order: x.order, what: ".debug_aranges"}
		length := uint64(c.u32())
		offSize := 4
		if length == 0xffffffff {
			length, offSize = c.u64(), 8
		} else if length >= 0xfffffff0 {
			return nil
		}
		if c.err != nil || length > uint64(c.left()) {
			return nil
		}
		end := c.off + int(length)
		c.b = b[:end]
		version := c.u16()
		cu := c.uint(offSize)
		addrSize := int(c.u8())
		segSize := c.u8()
		if c.err != nil || version != 2 || segSize != 0 || (addrSize != 4 && addrSize != 8) || cu > uint64(x.sec.info.len()) {
			return nil
		}
		// Tuples start at a multiple of their size from the set's start.
		if rem := (c.off - off) % (2 * addrSize); rem != 0 {
			c.bytes(2*addrSize - rem)
		}
		for c.left() >= 2*addrSize {
			lo, n := c.uint(addrSize), c.uint(addrSize)
			if lo == 0 && n == 0 {
				break
			}
			hi := lo + n
			if hi < lo {
				hi = ^uint64(0)
			}
			if lo >= hi || (lo == 0 && !x.atZero) {
				continue
			}
			out = append(out, unitRange{lo, hi, dwarf.Offset(cu)})
		}
		if c.err != nil {
			return nil
		}
		off = end
	}
	return out
}

// scanNext reads the unit header at x.scanned. false at the end of the
// section. x.mu is held.
func (x *dwarfIndex) scanNext() (bool, error) {
	size := x.sec.info.len()
	off := x.scanned
	if off >= size {
		return false, nil
	}
	b, err := x.sec.info.read(off, 64)
	if err != nil {
		return false, err
	}
	c := &cursor{b: b, order: x.order, what: ".debug_info", base: off}
	length := uint64(c.u32())
	offSize := 4
	if length == 0xffffffff {
		length = c.u64()
		offSize = 8
	} else if length >= 0xfffffff0 {
		return false, fmt.Errorf(".debug_info at %#x: reserved unit length %#x", off, length)
	}
	if c.err != nil {
		return false, c.err
	}
	if length > uint64(size-off-c.off) {
		return false, fmt.Errorf(".debug_info at %#x: unit length %#x exceeds section", off, length)
	}
	end := off + c.off + int(length)
	c.b = b[:min(len(b), end-off)]
	ub := unitBounds{hdr: dwarf.Offset(off), end: dwarf.Offset(end), offSize: offSize}
	version := c.u16()
	ub.version = int(version)
	switch {
	case version >= 2 && version <= 4:
		ub.abbrevAt = c.off
		ub.abbrev = c.uint(offSize)
		ub.addrSize = int(c.u8())
	case version == 5:
		utype := c.u8()
		ub.addrSize = int(c.u8())
		ub.abbrevAt = c.off
		ub.abbrev = c.uint(offSize)
		switch utype {
		case 0x02, 0x06: // type, split_type: signature, type offset
			c.u64()
			c.uint(offSize)
		case 0x04, 0x05: // skeleton, split_compile: dwo id
			c.u64()
		}
	default:
		return false, fmt.Errorf(".debug_info at %#x: unsupported version %d", off, version)
	}
	if c.err != nil {
		return false, c.err
	}
	if ub.addrSize < 1 || ub.addrSize > 8 {
		return false, fmt.Errorf(".debug_info at %#x: address size %d", off, ub.addrSize)
	}
	ub.base = &unitBase{}
	ub.first = dwarf.Offset(off + c.off)
	x.bounds = append(x.bounds, ub)
	x.scanned = end
	return true, nil
}

// scanThrough reads unit headers until the unit holding off is known.
// x.mu is held.
func (x *dwarfIndex) scanThrough(off dwarf.Offset) error {
	for x.scanned <= int(off) {
		more, err := x.scanNext()
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// boundsIndex returns the index of the unit holding off, or -1. x.mu is held.
func (x *dwarfIndex) boundsIndex(off dwarf.Offset) int {
	i := sort.Search(len(x.bounds), func(i int) bool { return x.bounds[i].end > off })
	if i == len(x.bounds) || off < x.bounds[i].hdr {
		return -1
	}
	return i
}

// maxActiveUnits is how many units are made active one by one before all
// of them are.
const maxActiveUnits = 48

// activate makes the units at the given indexes of x.bounds readable and
// reads their own entries. x.mu is held.
func (x *dwarfIndex) activate(idx []int) error {
	if x.offsetForms != nil {
		offsets := <-x.offsetForms
		x.offsetForms = nil
		if offsets && len(x.active) == 0 {
			// The file's offsets are needed: every unit, in order.
			if err := x.activateAll(); err != nil {
				return err
			}
			x.byAranges = false
			x.rangesOfAll()
			return nil
		}
	}
	changed := false
	for _, i := range idx {
		if x.bounds[i].active {
			continue
		}
		if err := x.copyUnit(i); err != nil {
			return err
		}
		changed = true
	}
	if len(x.active) > maxActiveUnits && !x.allActive {
		if err := x.activateRest(); err != nil {
			return err
		}
	}
	if changed {
		if err := x.newData(); err != nil {
			return err
		}
	}
	return x.readUnits(idx)
}

// anyOffsetForms reports whether some abbreviation table of .debug_abbrev
// has forms holding .debug_info offsets (or cannot be read: then too). It
// reads the section whole and keeps it (glibc's: 1 MB): the tables of the
// units in use are then read from memory, not inflated a second time.
func (x *dwarfIndex) anyOffsetForms() bool {
	b, err := x.sec.abbrev.all()
	if err != nil {
		return true
	}
	return offsetFormsIn(func(fn func([]byte) error) error { return fn(b) })
}

// offsetFormsIn is anyOffsetForms over the pieces chunks gives.
func offsetFormsIn(chunks func(func([]byte) error) error) bool {
	var carry []byte // a table cut by the end of a piece
	found := errors.New("found")
	err := chunks(func(b []byte) error {
		if old := len(carry); old > 0 {
			// Finish the cut table with as little of this piece as it takes.
			for k := min(len(b), 4096); ; k = min(len(b), 4*k) {
				carry = append(carry[:old], b[:k]...)
				end, offsets, ok := abbrevTableEnd(carry)
				if ok {
					if offsets {
						return found
					}
					b, carry = b[end-old:], carry[:0]
					break
				}
				if k == len(b) {
					return nil // all of this piece is in carry: the table goes on
				}
			}
		}
		for len(b) > 0 {
			end, offsets, ok := abbrevTableEnd(b)
			if !ok {
				carry = append(carry[:0], b...)
				return nil
			}
			if offsets {
				return found
			}
			b = b[end:]
		}
		return nil
	})
	return err != nil || len(carry) > 0
}

// activateRest makes every unit not active yet active, in section order
// after the others. x.mu is held.
func (x *dwarfIndex) activateRest() error { return x.copyEveryUnit(true) }

// copyEveryUnit copies the units scanned so far (only the inactive ones when inactiveOnly),
// then each further unit as soon as its header is read, .debug_info forward. x.mu is held.
func (x *dwarfIndex) copyEveryUnit(inactiveOnly bool) error {
	for i := range x.bounds {
		if !inactiveOnly || !x.bounds[i].active {
			if err := x.copyUnit(i); err != nil {
				return err
			}
		}
	}
	for {
		more, err := x.scanNext()
		if err != nil {
			return err
		}
		if !more {
			break
		}
		if err := x.copyUnit(len(x.bounds) - 1); err != nil {
			return err
		}
	}
	x.allActive = true
	return nil
}

// copyUnit appends unit i and its abbreviation table to the compact copy.
// x.mu is held.
func (x *dwarfIndex) copyUnit(i int) error {
	b := &x.bounds[i]
	table, offsets, err := x.abbrevTable(b.abbrev)
	if err != nil {
		return err
	}
	if offsets && !x.full {
		// anyOffsetForms said no: the section changed under us.
		return fmt.Errorf("unit at %#x: references by .debug_info offset", b.hdr)
	}
	start := int(b.hdr) // full: the copy is the section
	if !x.full {
		start = len(x.cinfo)
		x.cinfo, err = x.sec.info.appendTo(x.cinfo, int(b.hdr), int(b.end-b.hdr))
		if err != nil {
			x.cinfo = x.cinfo[:start]
			return err
		}
		if len(x.cinfo)-start != int(b.end-b.hdr) {
			x.cinfo = x.cinfo[:start]
			return fmt.Errorf(".debug_info at %#x: unit cut short", b.hdr)
		}
	}
	if x.tableAt == nil {
		x.tableAt = map[uint64]uint64{}
	}
	at, ok := x.tableAt[b.abbrev]
	if !ok {
		at = uint64(len(x.cabbrev))
		x.cabbrev = append(x.cabbrev, table...)
		x.tableAt[b.abbrev] = at
	}
	f := x.cinfo[start+b.abbrevAt:]
	if b.offSize == 8 {
		x.order.PutUint64(f, at)
	} else {
		x.order.PutUint32(f, uint32(at))
	}
	delta := dwarf.Offset(start) - b.hdr
	b.active, b.cfirst, b.cend = true, b.first+delta, b.end+delta
	x.active = append(x.active, i)
	return nil
}

// activateAll reads every unit, in section order, and makes all active:
// the compact copy is then .debug_info itself. No unit is active yet.
// x.mu is held.
func (x *dwarfIndex) activateAll() error {
	x.full = true
	// The copy is the section itself: read it whole, and give each unit
	// header the offset of its table in the copy of .debug_abbrev.
	info, err := x.sec.info.all()
	if err != nil {
		return err
	}
	x.cinfo = info
	if err := x.copyEveryUnit(false); err != nil {
		return err
	}
	all := make([]int, len(x.bounds))
	for i := range all {
		all[i] = i
	}
	if err := x.newData(); err != nil {
		return err
	}
	if err := x.readUnits(all); err != nil {
		return err
	}
	if !x.byAranges {
		x.rangesOfAll()
	}
	return nil
}

// readUnits reads the own entries of units not read yet. x.mu is held.
func (x *dwarfIndex) readUnits(idx []int) error {
	d := x.data.get()
	for _, i := range idx {
		b := &x.bounds[i]
		if b.read || b.cfirst >= b.cend {
			continue
		}
		u, err := x.readUnit(d, *b)
		if err != nil {
			return err
		}
		if u != nil {
			// What the DIE decoder needs, so that it reads without x.mu (die.go). The unit's
			// bytes in the copy never change once it is active.
			u.active = *b
			u.info = x.cinfo[:b.cend:b.cend]
			if at, ok := x.tableAt[b.abbrev]; ok && at <= uint64(len(x.cabbrev)) {
				u.table = x.cabbrev[at:len(x.cabbrev):len(x.cabbrev)]
			}
		}
		b.read, b.u = true, u
	}
	return nil
}

// newData makes the *dwarf.Data over the compact copy. x.mu is held.
func (x *dwarfIndex) newData() error {
	ds := x.sec
	if err := ds.whole(); err != nil {
		return err
	}
	str, _ := ds.str.all()
	ranges, _ := ds.ranges.all()
	d, err := dwarf.New(x.cabbrev, nil, nil, x.cinfo, nil, nil, ranges, str)
	if err != nil {
		return fmt.Errorf("dwarf: %w", err)
	}
	for _, s := range []struct {
		name string
		sec  *stream
	}{
		{".debug_addr", ds.addr}, {".debug_line_str", ds.lineStr},
		{".debug_str_offsets", ds.strOffsets}, {".debug_rnglists", ds.rngLists},
	} {
		if s.sec != nil {
			b, _ := s.sec.all()
			if err := d.AddSection(s.name, b); err != nil {
				return fmt.Errorf("dwarf %s: %w", s.name, err)
			}
		}
	}
	// debug/dwarf reads a DWARF 5 unit's bases (str_offsets_base...) on the
	// first seek into it and stores them: do that here, before the Data is
	// shared, so that concurrent readers only read.
	r := d.Reader()
	for _, i := range x.active {
		r.Seek(x.bounds[i].cfirst)
	}
	x.data.p.Store(d)
	return nil
}

// abbrevTable returns the abbreviation table at off, read through its end,
// and whether its forms hold .debug_info offsets.
func (x *dwarfIndex) abbrevTable(off uint64) ([]byte, bool, error) {
	s := x.sec.abbrev
	if s == nil || off >= uint64(s.len()) {
		return nil, false, fmt.Errorf("abbreviation table at %#x: out of range", off)
	}
	for n := 1024; ; n *= 4 {
		b, err := s.read(int(off), n)
		if err != nil {
			return nil, false, err
		}
		if end, offsets, ok := abbrevTableEnd(b); ok {
			return b[:end], offsets, nil
		}
		if len(b) < n {
			return nil, false, fmt.Errorf("abbreviation table at %#x: cut short", off)
		}
	}
}

// abbrevTableEnd returns the length of the table b starts with, and whether
// it uses forms holding .debug_info offsets (or forms given in the data);
// false when b holds only part of it. (A loop of its own rather than a
// cursor: every table of a big file goes through it.)
func abbrevTableEnd(b []byte) (end int, offsets, ok bool) {
	i := 0
	uleb := func() (uint64, bool) {
		var v uint64
		for shift := uint(0); i < len(b); shift += 7 {
			c := b[i]
			i++
			if shift < 64 {
				v |= uint64(c&0x7f) << shift
			}
			if c&0x80 == 0 {
				return v, true
			}
		}
		return 0, false
	}
	for {
		code, ok := uleb()
		if !ok {
			return 0, false, false
		}
		if code == 0 {
			return i, offsets, true
		}
		if _, ok := uleb(); !ok || i >= len(b) { // tag, then the children byte
			return 0, false, false
		}
		i++
		for {
			attr, ok1 := uleb()
			form, ok2 := uleb()
			if !ok1 || !ok2 {
				return 0, false, false
			}
			switch form {
			case 0x21: // DW_FORM_implicit_const: its value follows
				if _, ok := uleb(); !ok {
					return 0, false, false
				}
			case 0x10, 0x16, 0x1f20: // DW_FORM_ref_addr, DW_FORM_indirect, DW_FORM_GNU_ref_alt
				offsets = true
			}
			if attr == 0 && form == 0 {
				break
			}
		}
	}
}

// readUnit reads a unit's own entry: nil for units other than compile and
// partial units.
func (x *dwarfIndex) readUnit(d *dwarf.Data, b unitBounds) (*unit, error) {
	r := d.Reader()
	r.Seek(b.cfirst)
	e, err := r.Next()
	if err != nil {
		return nil, fmt.Errorf("unit at %#x: %w", b.first, err)
	}
	if e == nil || e.Offset != b.cfirst {
		return nil, fmt.Errorf("unit at %#x: no entry", b.first)
	}
	if e.Tag != dwarf.TagCompileUnit && e.Tag != dwarf.TagPartialUnit {
		return nil, nil
	}
	// The unit's bounds, for the readers of data, are those in the copy.
	u := &unit{bounds: unitBounds{hdr: b.hdr, first: b.cfirst, end: b.cend}, stmtList: -1, addrSize: r.AddressSize()}
	u.name, _ = e.Val(dwarf.AttrName).(string)
	u.compDir, _ = e.Val(dwarf.AttrCompDir).(string)
	if len(u.name) > maxSymbolName || len(u.compDir) > maxSymbolName || !x.names.take(len(u.name)+len(u.compDir)) {
		return nil, fmt.Errorf("unit at %#x: names over budget", b.first)
	}
	u.lang, _ = e.Val(dwarf.AttrLanguage).(int64)
	if v, ok := e.Val(dwarf.AttrStmtList).(int64); ok && v >= 0 {
		u.stmtList = v
	}
	if v, ok := e.Val(dwarf.AttrStrOffsetsBase).(int64); ok && v >= 0 {
		u.strOffsetsBase = uint64(v)
	}
	rs, err := d.Ranges(e)
	if err != nil {
		return nil, fmt.Errorf("unit at %#x: ranges: %w", b.first, err)
	}
	u.ranges = x.keepRanges(rs)
	u.low = ^uint64(0)
	for _, rg := range u.ranges {
		u.low = min(u.low, rg[0])
	}
	if u.low == ^uint64(0) {
		u.low = 0
	}
	return u, nil
}

// keepRanges drops empty ranges and, like gdb, ranges at address 0 when no
// section lives there (code the linker discarded).
func (x *dwarfIndex) keepRanges(rs [][2]uint64) [][2]uint64 {
	out := rs[:0:0]
	for _, r := range rs {
		if r[0] >= r[1] || (r[0] == 0 && !x.atZero) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// unitFor returns the unit covering pc, nil when none does or it cannot be
// read (see unitForPC).
func (x *dwarfIndex) unitFor(pc uint64) *unit {
	u, _ := x.unitForPC(pc)
	return u
}

// unitForPC returns the unit covering pc (nil when none does); with
// overlapping units the smallest range wins. Linear only in the number of
// ranges that overlap pc.
func (x *dwarfIndex) unitForPC(pc uint64) (*unit, error) {
	if err := x.index(); err != nil {
		return nil, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for {
		var hdrs []dwarf.Offset
		var best *unitRange
		i := sort.Search(len(x.ranges), func(i int) bool { return x.ranges[i].lo > pc }) - 1
		for ; i >= 0 && x.rangesMax[i] > pc; i-- {
			r := &x.ranges[i]
			if pc >= r.hi {
				continue
			}
			if best == nil || r.hi-r.lo < best.hi-best.lo {
				best = r
			}
			hdrs = append(hdrs, r.hdr)
		}
		if best == nil {
			return nil, nil
		}
		if !x.byAranges {
			if j := x.boundsIndex(best.hdr); j >= 0 {
				return x.bounds[j].u, nil
			}
			return nil, nil
		}
		// The address table names the candidates; their own ranges decide.
		slices.Sort(hdrs)
		var idx []int
		for k, h := range hdrs {
			if k > 0 && h == hdrs[k-1] {
				continue
			}
			if err := x.scanThrough(h); err != nil {
				return nil, err
			}
			if j := x.boundsIndex(h); j >= 0 && x.bounds[j].hdr == h {
				idx = append(idx, j)
			}
		}
		if err := x.activate(idx); err != nil {
			return nil, err
		}
		if !x.byAranges {
			continue // tables need the file's offsets: every unit was read instead
		}
		var u *unit
		var size uint64
		for _, j := range idx {
			cand := x.bounds[j].u
			if cand == nil {
				continue
			}
			for _, rg := range cand.ranges {
				if pc >= rg[0] && pc < rg[1] && (u == nil || rg[1]-rg[0] < size) {
					u, size = cand, rg[1]-rg[0]
				}
			}
		}
		return u, nil
	}
}

// activeUnit returns what range lists need of the active unit holding off
// (an offset in the compact copy); false when none holds it.
func (x *dwarfIndex) activeUnit(off dwarf.Offset) (activeRef, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := sort.Search(len(x.active), func(k int) bool { return x.bounds[x.active[k]].cend > off })
	if k == len(x.active) || off < x.bounds[x.active[k]].cfirst {
		return activeRef{}, false
	}
	b := &x.bounds[x.active[k]]
	return activeRef{first: b.first, cfirst: b.cfirst, version: b.version, addrSize: b.addrSize, base: b.base}, true
}

// activeRef is what range lists need of an active unit.
type activeRef struct {
	first, cfirst     dwarf.Offset
	version, addrSize int
	base              *unitBase
}

// unitBase returns the base address of range lists in unit b (its entry
// pc, else its low pc, else 0: as dwarf.Data.Ranges takes it) and its
// DW_AT_addr_base.
func (x *dwarfIndex) unitBase(d *dwarf.Data, b activeRef) (base, addrBase uint64, err error) {
	b.base.once.Do(func() {
		r := d.Reader()
		r.Seek(b.cfirst)
		cu, err := r.Next()
		if err != nil || cu == nil {
			b.base.err = fmt.Errorf("unit at %#x: %v", b.first, err)
			return
		}
		if v, ok := cu.Val(dwarf.AttrEntrypc).(uint64); ok {
			b.base.v = v
		} else if v, ok := cu.Val(dwarf.AttrLowpc).(uint64); ok {
			b.base.v = v
		}
		if v, ok := cu.Val(dwarf.AttrAddrBase).(int64); ok {
			b.base.addrBase = uint64(v)
		}
	})
	return b.base.v, b.base.addrBase, b.base.err
}

// rangeList5 reads a DWARF 5 range list at off of .debug_rnglists (rl), as
// dwarf.Data.Ranges does.
func (x *dwarfIndex) rangeList5(d *dwarf.Data, b activeRef, off int64, rl []byte, ret [][2]uint64) ([][2]uint64, error) {
	if off < 0 || off > int64(len(rl)) {
		return nil, fmt.Errorf("invalid rnglist offset %d (max %d)", off, len(rl))
	}
	base, addrBase, err := x.unitBase(d, b)
	if err != nil {
		return nil, err
	}
	addrs, _ := x.sec.addr.all()
	addrAt := func(idx uint64) (uint64, error) {
		p := idx*uint64(b.addrSize) + addrBase
		if p/uint64(b.addrSize) < idx || p+uint64(b.addrSize) < p || p+uint64(b.addrSize) > uint64(len(addrs)) {
			return 0, errors.New("debug_addr index out of range")
		}
		c := &cursor{b: addrs, off: int(p), order: x.order}
		return c.uint(b.addrSize), nil
	}
	c := &cursor{b: rl, off: int(off), order: x.order, what: ".debug_rnglists"}
	for {
		switch c.u8() {
		case 0: // DW_RLE_end_of_list (also what a cut-short list reads)
			if c.err != nil {
				return nil, c.err
			}
			return ret, nil
		case 1: // DW_RLE_base_addressx
			if base, err = addrAt(c.uleb()); err != nil {
				return nil, err
			}
		case 2: // DW_RLE_startx_endx
			i, j := c.uleb(), c.uleb()
			lo, err := addrAt(i)
			if err != nil {
				return nil, err
			}
			hi, err := addrAt(j)
			if err != nil {
				return nil, err
			}
			ret = append(ret, [2]uint64{lo, hi})
		case 3: // DW_RLE_startx_length
			i, n := c.uleb(), c.uleb()
			lo, err := addrAt(i)
			if err != nil {
				return nil, err
			}
			ret = append(ret, [2]uint64{lo, lo + n})
		case 4: // DW_RLE_offset_pair
			lo, hi := c.uleb(), c.uleb()
			ret = append(ret, [2]uint64{base + lo, base + hi})
		case 5: // DW_RLE_base_address
			base = c.uint(b.addrSize)
		case 6: // DW_RLE_start_end
			lo, hi := c.uint(b.addrSize), c.uint(b.addrSize)
			ret = append(ret, [2]uint64{lo, hi})
		case 7: // DW_RLE_start_length
			lo, n := c.uint(b.addrSize), c.uleb()
			ret = append(ret, [2]uint64{lo, lo + n})
		}
	}
}

// allUnits makes every unit readable and returns the compile units, in
// section order (nil when the DWARF cannot be read).
func (x *dwarfIndex) allUnits() []*unit {
	if x.index() != nil {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.scanThrough(dwarf.Offset(x.sec.info.len())) != nil {
		return nil
	}
	idx := make([]int, len(x.bounds))
	for i := range idx {
		idx[i] = i
	}
	if x.activate(idx) != nil {
		return nil
	}
	var out []*unit
	for _, b := range x.bounds {
		if b.u != nil {
			out = append(out, b.u)
		}
	}
	return out
}

// boundsOf returns the bounds (first and end in the offsets data reads) of
// the unit holding the DIE at off.
func (x *dwarfIndex) boundsOf(off dwarf.Offset) (unitBounds, bool) {
	if u := x.unitAt(off); u != nil {
		return u.bounds, true
	}
	return unitBounds{}, false
}

// unitAt returns the unit holding the DIE at off (an offset in the compact
// copy, as every offset data gives), nil when no active unit holds it.
func (x *dwarfIndex) unitAt(off dwarf.Offset) *unit {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := sort.Search(len(x.active), func(k int) bool { return x.bounds[x.active[k]].cend > off })
	if k == len(x.active) {
		return nil
	}
	b := &x.bounds[x.active[k]]
	if off < b.cfirst {
		return nil
	}
	return b.u
}

// stateOf builds (once) and returns the unit's lines and functions.
func (x *dwarfIndex) stateOf(u *unit) (*unitState, error) {
	u.once.Do(func() {
		u.state, u.err = x.buildUnit(u)
		if u.err != nil {
			u.err = fmt.Errorf("compile unit %q at %#x: %w", u.name, u.bounds.first, u.err)
		}
	})
	return u.state, u.err
}

// lineEnv returns what the unit's line program needs, with the program
// read from .debug_line (env.line starts at its offset).
func (x *dwarfIndex) lineEnv(u *unit) (*lineEnv, error) {
	if err := x.sec.whole(); err != nil {
		return nil, err
	}
	off := int(min(u.stmtList, int64(x.sec.line.len())))
	line, err := x.sec.line.read(off, 12)
	if err != nil {
		return nil, err
	}
	if len(line) >= 4 {
		n := uint64(x.order.Uint32(line))
		hdr := 4
		if n == 0xffffffff && len(line) >= 12 {
			n, hdr = x.order.Uint64(line[4:]), 12
		}
		if n < uint64(x.sec.line.len()) {
			if line, err = x.sec.line.read(off, hdr+int(n)); err != nil {
				return nil, err
			}
		}
	}
	strOffsets, _ := x.sec.strOffsets.all()
	return &lineEnv{
		line: line, lineBase: uint64(off), lineStr: x.sec.lineStrS, str: x.sec.strS, strOffsets: strOffsets,
		order: x.order, names: x.names, compDir: u.compDir, strOffsetsBase: u.strOffsetsBase, cuAddrSize: u.addrSize,
	}, nil
}

// pastEnd reports a read error past the end of u: the reader went on into
// the next unit, which is not active (see dwarfIndex).
func pastEnd(err error, u *unit) bool {
	if err == nil {
		return false
	}
	var de dwarf.DecodeError
	return errors.As(err, &de) && de.Offset >= u.bounds.end
}
