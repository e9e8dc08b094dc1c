package symbolize

import (
	"bytes"
	"compress/gzip"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// dieValAny is v as the dynamic value debug/dwarf's Entry.Val gives.
func dieValAny(v dieVal) any {
	switch v.kind {
	case valUint64:
		return v.u
	case valInt64:
		return v.i
	case valOffset:
		return dwarf.Offset(v.u)
	case valString:
		return string(v.b)
	case valBool:
		return v.u != 0
	case valBytes:
		return v.b
	case valUint32:
		return uint32(v.u)
	}
	return nil
}

// compareDIEs reads every DIE of every unit of f with the DIE decoder and with debug/dwarf,
// side by side, and reports the first difference: offsets, tags, attributes, values and the
// ranges of code DIEs. Where debug/dwarf fails to decode an entry, the unit's comparison
// stops (the decoder is lazy: it may only fail on the values it is asked for). It returns the
// number of DIEs compared.
func compareDIEs(f *File) (int, error) {
	if f.dw == nil {
		return 0, nil
	}
	x := f.dw
	n := 0
	for _, u := range x.allUnits() {
		du, err := x.dieUnitOf(u)
		if err != nil {
			continue // debug/dwarf read the unit's entry; its table may still be unusable
		}
		r := du.reader()
		dr := x.data.Reader()
		dr.Seek(u.bounds.first)
		var d rawDIE
		for {
			e, err := dr.Next()
			if err != nil {
				break
			}
			if e == nil || (e.Offset >= u.bounds.end && e.Tag != 0) {
				if r.next(&d) {
					return n, fmt.Errorf("unit at %#x: decoder has a DIE at %#x past debug/dwarf's end", u.bounds.first, d.off)
				}
				if r.err != nil {
					return n, fmt.Errorf("unit at %#x: decoder fails at its end: %v", u.bounds.first, r.err)
				}
				break
			}
			if !r.next(&d) {
				return n, fmt.Errorf("DIE at %#x: decoder stops (%v)", e.Offset, r.err)
			}
			n++
			if d.offset() != e.Offset && e.Tag != 0 { // debug/dwarf's null entries have offset 0
				return n, fmt.Errorf("DIE at %#x: decoder at %#x", e.Offset, d.off)
			}
			if e.Tag == 0 {
				if d.ab != nil {
					return n, fmt.Errorf("DIE at %#x: decoder reads %v, not a null entry", e.Offset, d.ab.tag)
				}
				continue
			}
			if d.ab == nil || d.ab.tag != e.Tag || d.ab.children != e.Children || len(d.ab.attrs) != len(e.Field) {
				return n, fmt.Errorf("DIE at %#x: %v, decoder %+v", e.Offset, e, d.ab)
			}
			for i, fld := range e.Field {
				v := d.field(i)
				if d.ab.attrs[i].attr != fld.Attr || v.err != nil || !equalVal(fld.Val, dieValAny(v)) {
					return n, fmt.Errorf("DIE at %#x, %v: %#v, decoder %v %#v (%v)", e.Offset, fld.Attr, fld.Val, d.ab.attrs[i].attr, dieValAny(v), v.err)
				}
			}
			switch e.Tag {
			case dwarf.TagSubprogram, dwarf.TagInlinedSubroutine, dwarf.TagLexDwarfBlock:
				want, errW := x.data.Ranges(e)
				got, errG := x.dieRanges(&d, nil)
				if (errW != nil) != (errG != nil) || fmt.Sprint(want) != fmt.Sprint(got) {
					return n, fmt.Errorf("DIE at %#x: ranges %v (%v), decoder %v (%v)", e.Offset, want, errW, got, errG)
				}
			}
		}
	}
	return n, nil
}

func equalVal(a, b any) bool {
	if ab, ok := a.([]byte); ok {
		bb, ok := b.([]byte)
		return ok && bytes.Equal(ab, bb)
	}
	return a == b
}

// dieTestFiles are files whose DWARF the decoder is compared on: the fixtures (x86-64,
// AArch64, ARM), the corpus programs (C, C++, Go, Rust) and glibc's debug file.
func dieTestFiles(t testing.TB) map[string][]byte {
	files := fixtureBinaries(t)
	for _, p := range []string{"c-tailcalls/x86_64/c-tailcalls", "cpp-segv-template/x86_64/cpp-segv-template",
		"cpp-exception/x86_64/cpp-exception", "go-crash/x86_64/go-crash.gz", "rust-panic-abort/x86_64/rust-panic-abort.gz",
		"c-o2-inline/aarch64/c-o2-inline", "go-crash/armhf/go-crash.gz"} {
		b, err := os.ReadFile(filepath.Join("../../../testdata/corpus", p))
		if err != nil {
			continue
		}
		if filepath.Ext(p) == ".gz" {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			require.NoError(t, err)
			b, err = io.ReadAll(zr)
			require.NoError(t, err)
		}
		files[p] = b
	}
	return files
}

// TestDIEDecoderMatchesDebugDwarf: the DIE decoder reads every DIE, attribute value and code
// range as debug/dwarf (and dwarfData.Ranges) does.
func TestDIEDecoderMatchesDebugDwarf(t *testing.T) {
	files := dieTestFiles(t)
	if _, debug := libcDebugFileOK(); debug != "" {
		b, err := os.ReadFile(debug)
		require.NoError(t, err)
		files["libc.debug"] = b
	}
	for name, b := range files {
		t.Run(name, func(t *testing.T) {
			f, err := NewFile(bytes.NewReader(b))
			require.NoError(t, err)
			defer f.Close()
			n, err := compareDIEs(f)
			require.NoError(t, err)
			require.Greater(t, n, 100, "DIEs compared")
			t.Logf("%d DIEs", n)
		})
	}
}

// libcDebugFileOK is libcDebugFile without skipping.
func libcDebugFileOK() (lib, debug string) {
	for _, lib = range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"} {
		f, err := Open(lib)
		if err != nil {
			continue
		}
		id := f.BuildID()
		f.Close()
		if len(id) < 3 {
			continue
		}
		debug = filepath.Join("/usr/lib/debug/.build-id", id[:2], id[2:]+".debug")
		if _, err := os.Stat(debug); err == nil {
			return lib, debug
		}
	}
	return "", ""
}

// FuzzDIE feeds whole ELF files to the DIE decoder and debug/dwarf side by side: the decoder
// must not panic, and where debug/dwarf decodes an entry the decoder must read the same.
func FuzzDIE(f *testing.F) {
	for _, b := range dieTestFiles(f) {
		if len(b) < 1<<20 { // the small programs: the big ones make each run seconds long
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := NewFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		defer file.Close()
		if _, err := compareDIEs(file); err != nil {
			t.Fatal(err)
		}
		probe(t, file) // the walks over the decoder
	})
}

// dieUnitFromBytes makes a dieUnit for the first unit of info (32-bit DWARF 2-5), with the
// abbreviation table at the offset its header gives; ok is false when the header is unusable.
func dieUnitFromBytes(abbrev, info, str []byte) (*dieUnit, *abbrevTable, bool) {
	c := &cursor{b: info, order: binary.LittleEndian}
	length := int(c.u32())
	version := int(c.u16())
	var off uint64
	addrSize := 0
	switch {
	case version >= 2 && version <= 4:
		off, addrSize = uint64(c.u32()), int(c.u8())
	case version == 5:
		c.u8()
		addrSize = int(c.u8())
		off = uint64(c.u32())
	default:
		return nil, nil, false
	}
	if c.err != nil || length < 0 || length > len(info)-4 || off >= uint64(len(abbrev)) || addrSize < 1 || addrSize > 8 || c.off > 4+length {
		return nil, nil, false
	}
	t, err := parseAbbrevTable(abbrev[off:])
	if err != nil {
		return nil, nil, false
	}
	return &dieUnit{info: info[:4+length], base: 0, first: c.off, end: 4 + length, version: version, offSize: 4,
		addrSize: addrSize, order: binary.LittleEndian, abbrevs: t, str: str}, t, true
}

// FuzzDIEUnit feeds one unit's .debug_abbrev, .debug_info and .debug_str to the decoder and
// to debug/dwarf: the decoder must not panic, and while debug/dwarf decodes entries the
// decoder must read the same DIEs and values. Skipping children must end.
func FuzzDIEUnit(f *testing.F) {
	for _, b := range fixtureBinaries(f) {
		ef, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			f.Fatal(err)
		}
		var secs [3][]byte
		for i, name := range []string{".debug_abbrev", ".debug_info", ".debug_str"} {
			if s := ef.Section(name); s != nil {
				secs[i], _ = s.Data()
			}
		}
		if len(secs[1]) > 4 {
			n := int(binary.LittleEndian.Uint32(secs[1])) + 4
			f.Add(secs[0], secs[1][:min(n, len(secs[1]))], secs[2])
		}
	}
	f.Fuzz(func(t *testing.T, abbrev, info, str []byte) {
		du, _, ok := dieUnitFromBytes(abbrev, info, str)
		if !ok {
			return
		}
		// Every DIE and value, and skipping from every DIE.
		r := du.reader()
		var d rawDIE
		for n := 0; r.next(&d) && n < 1<<16; n++ {
			if d.ab == nil {
				continue
			}
			for i := range d.ab.attrs {
				d.field(i)
			}
			if n >= 64 {
				continue // skipping from each DIE is quadratic: the first ones are enough
			}
			r2 := &dieReader{u: du, off: r.off}
			var d2 rawDIE
			d2 = d
			d2.r = r2
			r2.pos, r2.frm = append([]int32(nil), r.pos...), append([]uint32(nil), r.frm...)
			r2.skipChildren(&d2)
			if r2.err == nil && r2.off < r.off {
				t.Fatalf("skipping the children of %#x went back to %#x", d.off, r2.off)
			}
		}
		data, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, str)
		if err != nil {
			return
		}
		dr := data.Reader()
		r = du.reader()
		for n := 0; n < 1<<16; n++ {
			e, err := dr.Next()
			if err != nil || e == nil || (e.Offset >= dwarf.Offset(du.end) && e.Tag != 0) {
				return
			}
			if !r.next(&d) {
				t.Fatalf("DIE at %#x: decoder stops (%v)", e.Offset, r.err)
			}
			if e.Tag == 0 {
				if d.ab != nil {
					t.Fatalf("DIE at %#x: decoder reads a DIE, debug/dwarf a null entry", d.off)
				}
				continue
			}
			if d.off != int(e.Offset) || d.ab == nil || d.ab.tag != e.Tag || d.ab.children != e.Children || len(d.ab.attrs) != len(e.Field) {
				t.Fatalf("DIE at %#x: %v, decoder at %#x %+v", e.Offset, e, d.off, d.ab)
			}
			for i, fld := range e.Field {
				v := d.field(i)
				if !equalVal(fld.Val, dieValAny(v)) {
					t.Fatalf("DIE at %#x, %v: %#v, decoder %#v (%v)", e.Offset, fld.Attr, fld.Val, dieValAny(v), v.err)
				}
			}
		}
	})
}
