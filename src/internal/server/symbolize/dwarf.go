package symbolize

import (
	"debug/dwarf"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"
)

// dwarfIndex is built once per file: unit boundaries and the sorted address
// ranges of every compile unit. Line tables and function trees are built per
// unit on first use (see unitState).
type dwarfIndex struct {
	data      *dwarf.Data
	sec       *debugSections
	order     binary.ByteOrder
	atZero    bool // some executable section starts at address 0
	bounds    []unitBounds
	units     []*unit
	ranges    []unitRange // sorted by lo
	rangesMax []uint64    // rangesMax[i] = max(ranges[:i+1].hi)
	foreign   sync.Map    // dwarf.Offset -> *declInfo, DIEs read outside a unit walk
	names     *budget     // bytes of names and paths the unit indexes may keep
	sites     sync.Map    // *unit -> *unitSites, built on first use (callsites.go)
	// cxxTypeNames caches gdb's names of C++ types: dwarf.Offset -> string
	// ("" for an unnamed type).
	cxxTypeNames sync.Map
}

// unitBounds locates one unit of .debug_info.
type unitBounds struct {
	first dwarf.Offset // offset of the unit's first DIE
	end   dwarf.Offset // offset just past the unit
}

// unit is a compile (or partial) unit.
type unit struct {
	bounds         unitBounds
	name, compDir  string
	lang           int64
	stmtList       int64 // -1 when absent
	strOffsetsBase uint64
	addrSize       int
	low            uint64 // lowest address of its ranges

	once  sync.Once
	state *unitState
	err   error
}

type unitRange struct {
	lo, hi uint64
	u      *unit
}

// scanUnits walks the unit headers of .debug_info (DWARF 2-5).
func scanUnits(info []byte, order binary.ByteOrder) ([]unitBounds, error) {
	var out []unitBounds
	for off := 0; off < len(info); {
		c := &cursor{b: info, off: off, order: order, what: ".debug_info"}
		length := uint64(c.u32())
		offSize := 4
		if length == 0xffffffff {
			length = c.u64()
			offSize = 8
		} else if length >= 0xfffffff0 {
			return nil, fmt.Errorf(".debug_info at %#x: reserved unit length %#x", off, length)
		}
		if c.err != nil {
			return nil, c.err
		}
		if length > uint64(c.left()) {
			return nil, fmt.Errorf(".debug_info at %#x: unit length %#x exceeds section", off, length)
		}
		end := c.off + int(length)
		c.b = info[:end]
		version := c.u16()
		switch {
		case version >= 2 && version <= 4:
			c.uint(offSize) // abbrev offset
			c.u8()          // address size
		case version == 5:
			utype := c.u8()
			c.u8()          // address size
			c.uint(offSize) // abbrev offset
			switch utype {
			case 0x02, 0x06: // type, split_type: signature, type offset
				c.u64()
				c.uint(offSize)
			case 0x04, 0x05: // skeleton, split_compile: dwo id
				c.u64()
			}
		default:
			return nil, fmt.Errorf(".debug_info at %#x: unsupported version %d", off, version)
		}
		if c.err != nil {
			return nil, c.err
		}
		out = append(out, unitBounds{first: dwarf.Offset(c.off), end: dwarf.Offset(end)})
		off = end
	}
	return out, nil
}

func newDwarfIndex(ds *debugSections, order binary.ByteOrder, atZero bool) (*dwarfIndex, error) {
	data, err := dwarf.New(ds.abbrev, nil, nil, ds.info, ds.line, nil, ds.ranges, ds.str)
	if err != nil {
		return nil, fmt.Errorf("dwarf: %w", err)
	}
	for name, b := range map[string][]byte{
		".debug_addr": ds.addr, ".debug_line_str": ds.lineStr,
		".debug_str_offsets": ds.strOffsets, ".debug_rnglists": ds.rngLists,
	} {
		if b != nil {
			if err := data.AddSection(name, b); err != nil {
				return nil, fmt.Errorf("dwarf %s: %w", name, err)
			}
		}
	}
	bounds, err := scanUnits(ds.info, order)
	if err != nil {
		return nil, err
	}
	x := &dwarfIndex{data: data, sec: ds, order: order, atZero: atZero, bounds: bounds,
		names: newBudget(baseNameBudget + 8*ds.loaded)}
	r := data.Reader()
	for _, b := range bounds {
		if b.first >= b.end {
			continue
		}
		r.Seek(b.first)
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("unit at %#x: %w", b.first, err)
		}
		if e == nil || e.Offset != b.first {
			return nil, fmt.Errorf("unit at %#x: no entry", b.first)
		}
		if e.Tag != dwarf.TagCompileUnit && e.Tag != dwarf.TagPartialUnit {
			continue
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
		rs, err := data.Ranges(e)
		if err != nil {
			return nil, fmt.Errorf("unit at %#x: ranges: %w", b.first, err)
		}
		u.low = ^uint64(0)
		for _, rg := range x.keepRanges(rs) {
			x.ranges = append(x.ranges, unitRange{rg[0], rg[1], u})
			u.low = min(u.low, rg[0])
		}
		if u.low == ^uint64(0) {
			u.low = 0
		}
		x.units = append(x.units, u)
	}
	sort.SliceStable(x.ranges, func(i, j int) bool { return x.ranges[i].lo < x.ranges[j].lo })
	x.rangesMax = make([]uint64, len(x.ranges))
	var m uint64
	for i, rg := range x.ranges {
		m = max(m, rg.hi)
		x.rangesMax[i] = m
	}
	return x, nil
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

// unitFor returns the unit covering pc; with overlapping units the smallest
// range wins. Linear only in the number of ranges that overlap pc.
func (x *dwarfIndex) unitFor(pc uint64) *unit {
	i := sort.Search(len(x.ranges), func(i int) bool { return x.ranges[i].lo > pc }) - 1
	var best *unitRange
	for ; i >= 0 && x.rangesMax[i] > pc; i-- {
		r := &x.ranges[i]
		if pc < r.hi && (best == nil || r.hi-r.lo < best.hi-best.lo) {
			best = r
		}
	}
	if best == nil {
		return nil
	}
	return best.u
}

// boundsOf returns the unit holding the DIE at off.
func (x *dwarfIndex) boundsOf(off dwarf.Offset) (unitBounds, bool) {
	i := sort.Search(len(x.bounds), func(i int) bool { return x.bounds[i].end > off })
	if i == len(x.bounds) || off < x.bounds[i].first {
		return unitBounds{}, false
	}
	return x.bounds[i], true
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
