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
// from its address table, and only .debug_info up to that unit's end is
// read; the unit's own ranges (DW_AT_ranges, low/high pc) then decide, as
// they do for gdb, among the units the table names. Without .debug_aranges,
// and for small files, every unit's ranges are read, as gdb does.
//
// Reading DIEs: debug/dwarf wants .debug_info and .debug_abbrev whole, and
// parses the header and abbreviation table of every unit it is given: most
// of the cost of a big file. So it is given the units read so far, with
// every run of units not yet needed ("inactive") disguised as one unit: the
// header of the run's first unit is patched (section.patch) to span the run
// and to point at an empty abbreviation table (offset len(.debug_abbrev),
// the zero byte after the section). Each activation makes a new *dwarf.Data
// (data), which covers every unit the previous one did.
type dwarfIndex struct {
	data    dwarfData
	sec     *debugSections
	order   binary.ByteOrder
	atZero  bool     // some executable section starts at address 0
	foreign sync.Map // dwarf.Offset -> *declInfo, DIEs read outside a unit walk
	names   *budget  // bytes of names and paths the unit indexes may keep

	mu        sync.Mutex   // guards the fields below and the unit headers in .debug_info
	bounds    []unitBounds // every unit header read so far, in section order
	scanned   int          // .debug_info bytes covered by bounds
	nActive   int          // active units
	allActive bool         // every unit is read and active
	stale     bool         // data lacks active units

	indexOnce sync.Once
	indexErr  error
	noAranges bool        // index every unit even with .debug_aranges (tests)
	byAranges bool        // ranges are .debug_aranges' (else every unit's own)
	ranges    []unitRange // sorted by lo
	rangesMax []uint64    // rangesMax[i] = max(ranges[:i+1].hi)
}

// dwarfData reads DIEs of the active units (the latest *dwarf.Data).
type dwarfData struct{ p atomic.Pointer[dwarf.Data] }

func (d *dwarfData) get() *dwarf.Data {
	if v := d.p.Load(); v != nil {
		return v
	}
	return emptyData
}

// Reader returns a reader over every active unit.
func (d *dwarfData) Reader() *dwarf.Reader { return d.get().Reader() }

// Ranges returns the address ranges of e (see dwarf.Data.Ranges).
func (d *dwarfData) Ranges(e *dwarf.Entry) ([][2]uint64, error) { return d.get().Ranges(e) }

// emptyData has one unit without entries.
var emptyData = func() *dwarf.Data {
	d, err := dwarf.New([]byte{0}, nil, nil, []byte{7, 0, 0, 0, 4, 0, 0, 0, 0, 0, 8}, nil, nil, nil, nil)
	if err != nil {
		panic(err)
	}
	return d
}()

// unitBounds locates one unit of .debug_info.
type unitBounds struct {
	hdr   dwarf.Offset // offset of the unit header
	first dwarf.Offset // offset of the unit's first DIE
	end   dwarf.Offset // offset just past the unit

	abbrev   uint64 // the header's abbreviation table offset
	abbrevAt int    // where that field is in .debug_info
	offSize  int    // 4 or 8 (64-bit DWARF)
	active   bool   // readable: its header as written
	head     int    // when its header is patched to span a run of inactive units: the run's end
	read     bool   // the unit's own entry was read
	u        *unit  // the compile or partial unit, once read
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

	once  sync.Once
	state *unitState
	err   error
}

type unitRange struct {
	lo, hi uint64
	hdr    dwarf.Offset // header of the unit
}

func newDwarfIndex(ds *debugSections, order binary.ByteOrder, atZero bool) (*dwarfIndex, error) {
	x := &dwarfIndex{sec: ds, order: order, atZero: atZero, names: newBudget(baseNameBudget + 8*ds.loaded)}
	if ds.info.len() <= eagerBytes {
		// Small: index every unit now, so that broken DWARF fails the open.
		x.indexOnce.Do(func() { x.indexErr = x.buildIndex(false) })
		if x.indexErr != nil {
			return nil, x.indexErr
		}
	}
	return x, nil
}

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
			return nil
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.activateAll(); err != nil {
		return err
	}
	all := make([]int, len(x.bounds))
	for i := range all {
		all[i] = i
	}
	if err := x.activate(all); err != nil {
		return err
	}
	var rs []unitRange
	for _, b := range x.bounds {
		if b.u != nil {
			for _, rg := range b.u.ranges {
				rs = append(rs, unitRange{rg[0], rg[1], b.hdr})
			}
		}
	}
	x.setRanges(rs)
	return nil
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

// scanNext reads the unit header at x.scanned and the whole unit, and points
// the header at the empty abbreviation table. false at the end of the
// section. x.mu is held.
func (x *dwarfIndex) scanNext() (bool, error) {
	size := x.sec.info.len()
	off := x.scanned
	if off >= size {
		return false, nil
	}
	b, err := x.sec.info.ensure(off + 64)
	if err != nil {
		return false, err
	}
	c := &cursor{b: b, off: off, order: x.order, what: ".debug_info"}
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
	if length > uint64(size-c.off) {
		return false, fmt.Errorf(".debug_info at %#x: unit length %#x exceeds section", off, length)
	}
	end := c.off + int(length)
	if b, err = x.sec.info.ensure(end); err != nil {
		return false, err
	}
	c.b = b[:end]
	ub := unitBounds{hdr: dwarf.Offset(off), end: dwarf.Offset(end), offSize: offSize}
	version := c.u16()
	switch {
	case version >= 2 && version <= 4:
		ub.abbrevAt = c.off
		ub.abbrev = c.uint(offSize)
		c.u8() // address size
	case version == 5:
		utype := c.u8()
		c.u8() // address size
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
	ub.first = dwarf.Offset(c.off)
	x.bounds = append(x.bounds, ub)
	x.scanned = end
	return true, nil
}

// setHeader writes a unit length and an abbreviation offset into b's
// header. x.mu is held: headers are read under it only.
func (x *dwarfIndex) setHeader(b *unitBounds, length, abbrev uint64) {
	field := func(v uint64) []byte {
		f := make([]byte, b.offSize)
		if b.offSize == 8 {
			x.order.PutUint64(f, v)
		} else {
			x.order.PutUint32(f, uint32(v))
		}
		return f
	}
	lenAt := int(b.hdr)
	if b.offSize == 8 {
		lenAt += 4 // after the 0xffffffff escape
	}
	x.sec.info.patch(lenAt, field(length))
	x.sec.info.patch(b.abbrevAt, field(abbrev))
}

// lengthSize is the size of the unit length field (with its 64-bit escape).
func (b *unitBounds) lengthSize() uint64 {
	if b.offSize == 8 {
		return 12
	}
	return 4
}

// disguise writes every header as data must see it: active units as they
// are, each run of inactive ones as one unit with no entries (at most
// 4 GiB: 32-bit lengths). It returns where the units data will see start.
// x.mu is held.
func (x *dwarfIndex) disguise() []dwarf.Offset {
	sentinel := uint64(x.sec.abbrev.len())
	var firsts []dwarf.Offset
	for i := 0; i < len(x.bounds); {
		b := &x.bounds[i]
		firsts = append(firsts, b.first)
		if b.active {
			if b.head != 0 {
				x.setHeader(b, uint64(b.end-b.hdr)-b.lengthSize(), b.abbrev)
				b.head = 0
			}
			i++
			continue
		}
		j := i + 1
		for j < len(x.bounds) && !x.bounds[j].active && (b.offSize == 8 || x.bounds[j].end-b.hdr < 0xfffffff0) {
			j++
		}
		// Headers inside the run are not read; a stale head field there
		// only means "patched", which is what it is.
		if end := int(x.bounds[j-1].end); b.head != end {
			x.setHeader(b, uint64(end-int(b.hdr))-b.lengthSize(), sentinel)
			b.head = end
		}
		i = j
	}
	return firsts
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

// activate makes the units at the given indexes of x.bounds readable and
// reads their own entries. x.mu is held.
func (x *dwarfIndex) activate(idx []int) error {
	changed := false
	for _, i := range idx {
		b := &x.bounds[i]
		if b.active {
			continue
		}
		if err := x.needAbbrevTable(b.abbrev); err != nil {
			return err
		}
		b.active, changed = true, true
		x.nActive++
	}
	if x.nActive > maxActiveUnits && !x.allActive {
		// Each new *dwarf.Data parses the table of every active unit: past a
		// few dozen units, read everything once instead.
		if err := x.activateAll(); err != nil {
			return err
		}
	}
	if changed || x.stale {
		if err := x.sec.whole(); err != nil {
			return err
		}
		if err := x.newData(); err != nil {
			return err
		}
	}
	d := x.data.get()
	for _, i := range idx {
		b := &x.bounds[i]
		if b.read || b.first >= b.end {
			continue
		}
		u, err := x.readUnit(d, *b)
		if err != nil {
			return err
		}
		b.read, b.u = true, u
	}
	return nil
}

// maxActiveUnits is how many units are made readable one by one before
// all of them are.
const maxActiveUnits = 48

// activateAll reads all of .debug_info and .debug_abbrev and makes every
// unit readable. x.mu is held.
func (x *dwarfIndex) activateAll() error {
	x.sec.abbrev.prefetch(x.sec.abbrev.len())
	x.sec.line.prefetch(x.sec.line.len())
	for {
		more, err := x.scanNext()
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	if _, err := x.sec.abbrev.all(); err != nil {
		return err
	}
	for i := range x.bounds {
		if b := &x.bounds[i]; !b.active {
			b.active = true
			x.nActive++
		}
	}
	x.allActive, x.stale = true, true
	return nil
}

// newData makes the *dwarf.Data over every unit scanned. x.mu is held.
func (x *dwarfIndex) newData() error {
	ds := x.sec
	firsts := x.disguise()
	str, _ := ds.str.all()
	ranges, _ := ds.ranges.all()
	d, err := dwarf.New(ds.abbrev.withSentinel(), nil, nil, ds.info.avail()[:x.scanned], nil, nil, ranges, str)
	if err != nil {
		return fmt.Errorf("dwarf: %w", err)
	}
	for _, s := range []struct {
		name string
		sec  *section
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
	for _, off := range firsts {
		r.Seek(off)
	}
	x.data.p.Store(d)
	x.stale = false
	return nil
}

// needAbbrevTable reads .debug_abbrev up to the end of the table at off.
func (x *dwarfIndex) needAbbrevTable(off uint64) error {
	s := x.sec.abbrev
	if s == nil || off >= uint64(s.len()) {
		return nil // debug/dwarf reports it
	}
	need := int(off) + 4096
	for {
		b, err := s.ensure(need)
		if err != nil {
			return err
		}
		if abbrevTableComplete(b, int(off)) || len(b) >= s.len() {
			return nil
		}
		need = len(b) + max(len(b)-int(off), 4096)
	}
}

// abbrevTableComplete reports whether b holds the whole table at off.
func abbrevTableComplete(b []byte, off int) bool {
	c := &cursor{b: b, off: off}
	for {
		if c.uleb() == 0 {
			return c.err == nil
		}
		c.uleb() // tag
		c.u8()   // children
		for c.err == nil {
			attr, form := c.uleb(), c.uleb()
			if form == 0x21 { // DW_FORM_implicit_const
				c.sleb()
			}
			if attr == 0 && form == 0 {
				break
			}
		}
		if c.err != nil {
			return false
		}
	}
}

// readUnit reads a unit's own entry: nil for units other than compile and
// partial units.
func (x *dwarfIndex) readUnit(d *dwarf.Data, b unitBounds) (*unit, error) {
	r := d.Reader()
	r.Seek(b.first)
	e, err := r.Next()
	if err != nil {
		return nil, fmt.Errorf("unit at %#x: %w", b.first, err)
	}
	if e == nil || e.Offset != b.first {
		return nil, fmt.Errorf("unit at %#x: no entry", b.first)
	}
	if e.Tag != dwarf.TagCompileUnit && e.Tag != dwarf.TagPartialUnit {
		return nil, nil
	}
	u := &unit{bounds: b, stmtList: -1, addrSize: r.AddressSize()}
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

// unitFor returns the unit covering pc (nil when none does); with
// overlapping units the smallest range wins. Linear only in the number of
// ranges that overlap pc.
func (x *dwarfIndex) unitFor(pc uint64) (*unit, error) {
	if err := x.index(); err != nil {
		return nil, err
	}
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
	x.mu.Lock()
	defer x.mu.Unlock()
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
		if x.scanned <= int(h) {
			x.sec.abbrev.prefetch(int(float64(h)/float64(x.sec.info.len())*float64(x.sec.abbrev.len())) + 64<<10)
			x.sec.line.prefetch(int(float64(h)/float64(x.sec.info.len())*float64(x.sec.line.len())) + 64<<10)
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

// unitAt returns the unit holding the DIE at off, made readable; nil when
// off is in no compile unit.
func (x *dwarfIndex) unitAt(off dwarf.Offset) *unit {
	if x.index() != nil {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.scanThrough(off) != nil {
		return nil
	}
	i := x.boundsIndex(off)
	if i < 0 || off < x.bounds[i].first {
		return nil
	}
	if x.activate([]int{i}) != nil {
		return nil
	}
	return x.bounds[i].u
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

// lineEnv returns what the unit's line program needs, with .debug_line read
// through the end of that program.
func (x *dwarfIndex) lineEnv(u *unit) (*lineEnv, error) {
	if err := x.sec.whole(); err != nil {
		return nil, err
	}
	line, err := x.sec.line.ensure(int(min(u.stmtList, int64(x.sec.line.len()))) + 12)
	if err != nil {
		return nil, err
	}
	if off := int(u.stmtList); off+4 <= len(line) {
		n := uint64(x.order.Uint32(line[off:]))
		hdr := 4
		if n == 0xffffffff && off+12 <= len(line) {
			n, hdr = x.order.Uint64(line[off+4:]), 12
		}
		if n < uint64(x.sec.line.len()) {
			if line, err = x.sec.line.ensure(off + hdr + int(n)); err != nil {
				return nil, err
			}
		}
	}
	strOffsets, _ := x.sec.strOffsets.all()
	return &lineEnv{
		line: line, lineStr: x.sec.lineStrS, str: x.sec.strS, strOffsets: strOffsets,
		order: x.order, names: x.names, compDir: u.compDir, strOffsetsBase: u.strOffsetsBase, cuAddrSize: u.addrSize,
	}, nil
}

// pastEnd reports a read error past the end of u: the reader went on into
// the next unit, which is not active (see dwarfIndex).
func pastEnd(err error, u *unit) bool {
	var de dwarf.DecodeError
	return errors.As(err, &de) && de.Offset >= u.bounds.end
}
